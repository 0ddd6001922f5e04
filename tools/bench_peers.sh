#!/usr/bin/env bash
# webjudge next to llama.cpp on the same adapter and the same GGUF (the SmolLM2 test model):
# `webjudge bench` and llama.cpp's Vulkan backend (npm node-llama-cpp 3.21.1, prebuilt)
# run alternately RUNS times; the best run of each is appended to BENCH.md's peer table,
# with webjudge's ratio to llama.cpp.
# Usage: tools/bench_peers.sh [PROMPT_TOKENS] [DECODE_TOKENS] [RUNS] [NOTE]
set -euo pipefail
cd "$(dirname "$0")/.."

PROMPT=${1:-256}
DECODE=${2:-64}
RUNS=${3:-2}
NOTE=${4:-}
PEERS=target/peers
MODEL=target/models/smollm2-135m-instruct
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/webjudge-runtime-$(id -u)}
mkdir -p -m 700 "$XDG_RUNTIME_DIR"
# llama.cpp's Vulkan backend hides CPU-type devices (lavapipe) unless told to use device 0.
export GGML_VK_VISIBLE_DEVICES=${GGML_VK_VISIBLE_DEVICES:-0}

gguf=$(tools/fetch_test_model.sh)
cargo build --release --quiet
[[ -f $MODEL/manifest.json ]] || target/release/webjudge convert "$gguf" --out "$MODEL"
if [[ ! -d $PEERS/node_modules/node-llama-cpp ]]; then
    mkdir -p "$PEERS"
    (cd "$PEERS" && echo '{"private": true, "type": "module"}' > package.json && npm i -E --no-audit --no-fund node-llama-cpp@3.21.1 >&2)
fi
cp tools/peers/llamacpp_bench.mjs "$PEERS/"
# A copy, so a build during the runs cannot change what is measured.
cp target/release/webjudge "$PEERS/webjudge"

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for run in $(seq "$RUNS"); do
    echo "run $run/$RUNS: webjudge" >&2
    "$PEERS/webjudge" bench --model "$MODEL" --prompt-tokens "$PROMPT" --decode-tokens "$DECODE" 2>/dev/null \
        | head -1 | sed 's/^/{"engine": "webjudge", "result": /; s/$/}/' >> "$results"
    echo "run $run/$RUNS: llama.cpp" >&2
    (cd "$PEERS" && node llamacpp_bench.mjs "$gguf" "$PROMPT" "$DECODE") | tail -1 \
        | sed 's/^/{"engine": "llama.cpp", "result": /; s/$/}/' >> "$results"
done

python3 - "$results" "$NOTE" BENCH.md <<'PYEOF'
import datetime, json, sys
results, note, bench_md = sys.argv[1:4]
runs = [json.loads(line) for line in open(results) if line.strip()]
best = {}
for run in runs:
    r = run["result"]
    b = best.setdefault(run["engine"], dict(r))
    b["prefill_tok_s"] = max(b["prefill_tok_s"], r["prefill_tok_s"])
    b["decode_tok_s"] = max(b["decode_tok_s"], r["decode_tok_s"])
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
peer = best["llama.cpp"]
rows = []
for engine in ["webjudge", "llama.cpp"]:
    r = best[engine]
    name = engine if engine == "webjudge" else r["engine"]
    ratio = lambda key: f"{r[key] / peer[key]:.2f}x"
    rows.append(f"| {date} | {r['adapter']} | {name} | {r['prompt_tokens']} | {r['prefill_tok_s']:.2f} | "
                f"{r['decode_tokens']} | {r['decode_tok_s']:.2f} | {ratio('prefill_tok_s')} | {ratio('decode_tok_s')} | "
                f"best of {len(runs) // 2} alternating runs; {note} |")
# The rows go after the last row of the peer table.
lines = open(bench_md).read().splitlines()
header = next(i for i, line in enumerate(lines) if line.startswith("| date | adapter | engine |"))
end = header
while end < len(lines) and lines[end].startswith("|"):
    end += 1
lines[end:end] = rows
open(bench_md, "w").write("\n".join(lines) + "\n")
print("\n".join(rows))
PYEOF
