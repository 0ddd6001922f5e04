#!/usr/bin/env bash
# Batched decoding against one sequence at a time, in one run on the same adapter:
# `webjudge generate --prompts` over tools/bench/prompts8.jsonl (8 chat prompts of different
# lengths) with --batch 1 and --batch N, alternating RUNS times; the best run of each is
# appended to BENCH.md's batching table with its throughput ratio to --batch 1, and the
# greedy ids of the two are compared prompt by prompt.
# Usage: tools/bench_batch.sh [BATCH] [MAX_TOKENS] [RUNS] [NOTE]
set -euo pipefail
cd "$(dirname "$0")/.."

BATCH=${1:-8}
MAX_TOKENS=${2:-64}
RUNS=${3:-2}
NOTE=${4:-}
PROMPTS=tools/bench/prompts8.jsonl
source tools/peers/common.sh
prepare_webjudge
mkdir -p "$PEERS"
# A copy, so a build during the runs cannot change what is measured.
cp "$WEBJUDGE_RELEASE" "$PEERS/webjudge"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for run in $(seq "$RUNS"); do
    for batch in 1 "$BATCH"; do
        echo "run $run/$RUNS: --batch $batch" >&2
        "$PEERS/webjudge" generate --model "$MODEL" --prompts "$PROMPTS" --chat --json \
            --max-tokens "$MAX_TOKENS" --batch "$batch" 2> "$out/adapter" > "$out/batch$batch-run$run.jsonl"
    done
done

python3 - "$out" "$BATCH" "$NOTE" "$MAX_TOKENS" <<'PY'
import datetime, glob, json, sys
out, batch, note, max_tokens = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def runs(b):
    for path in sorted(glob.glob(f"{out}/batch{b}-run*.jsonl")):
        lines = [json.loads(l) for l in open(path)]
        yield lines[-1]["summary"], [l["ids"] for l in lines[:-1]]
best = {b: max(runs(b), key=lambda r: r[0]["tok_s"]) for b in (1, batch)}
same = sum(a == b for a, b in zip(best[1][1], best[batch][1]))
adapter = next(l for l in open(f"{out}/adapter") if l.startswith("adapter: "))[len("adapter: "):].split(" (Vulkan")[0].strip()
rows = []
for b in (1, batch):
    s = best[b][0]
    ratio = s["tok_s"] / best[1][0]["tok_s"]
    rows.append(f"| {datetime.date.today()} | {adapter} | {s['sequences']} | {s['batch']} | {max_tokens} | {s['generated_tokens']} | "
                f"{s['seconds']:.1f} | {s['tok_s']:.2f} | {ratio:.2f}x | {same}/{len(best[1][1])} | {note} |")
text = open("BENCH.md").read()
header = "| date | adapter | prompts | batch | max tokens | generated | seconds | tok/s | vs batch 1 | same ids as batch 1 | note |"
if header not in text:
    sys.exit("BENCH.md has no batching table")
lines = text.split("\n")
# After the last row of the table that follows the header.
at = lines.index(header)
while at + 1 < len(lines) and lines[at + 1].startswith("| "):
    at += 1
lines[at + 1:at + 1] = rows
open("BENCH.md", "w").write("\n".join(lines))
print("\n".join(rows))
PY
