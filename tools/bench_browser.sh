#!/usr/bin/env bash
# webjudge next to llama.cpp in the browser: in one headless Chromium (WebGPU on SwiftShader),
# webjudge's Judge.generate and wllama (npm @wllama/wllama 3.8.1, llama.cpp in wasm) on the
# same GGUF (the SmolLM2 test model), the same prompt and greedy decoding, run alternately RUNS
# times in one page (tests/browser/bench.mjs). The best run of each is added to BENCH.md's
# browser table with webjudge's ratio to wllama, then webjudge's decode profile from
# judge.profile in the same page.
# Usage: tools/bench_browser.sh [PROMPT_TOKENS] [DECODE_TOKENS] [RUNS] [NOTE]
set -euo pipefail
cd "$(dirname "$0")/.."

PROMPT=${1:-64}
DECODE=${2:-16}
RUNS=${3:-2}
NOTE=${4:-}
source tools/peers/common.sh

prepare_webjudge
tools/build_web.sh >/dev/null
install_peer @wllama/wllama@3.8.1
if [[ ! -d tests/browser/node_modules/playwright-core ]]; then
    (cd tests/browser && npm ci --no-audit --no-fund >&2)
fi

results=$(mktemp)
profile=$(mktemp)
trap 'rm -f "$results" "$profile"' EXIT
agreement=$(WEBJUDGE_BIN="$WEBJUDGE_RELEASE" WEBJUDGE_GGUF="$gguf" WLLAMA_ESM="$PEERS/node_modules/@wllama/wllama/esm" NOTE="$NOTE" \
    node tests/browser/bench.mjs "$PROMPT" "$DECODE" "$RUNS" "$results" "$profile" | tail -1)
echo "$agreement" >&2
note="$agreement${NOTE:+; $NOTE}"
tools/peers/record_peers.py "$results" BENCH.md wllama "$note" "$profile"
