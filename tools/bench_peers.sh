#!/usr/bin/env bash
# webjudge next to llama.cpp on the same adapter and the same GGUF (the SmolLM2 test model, or
# the GGUF given, e.g. a K-quant of it):
# `webjudge bench` and llama.cpp's Vulkan backend (npm node-llama-cpp 3.21.1, prebuilt)
# run alternately RUNS times; the best run of each is appended to BENCH.md's peer table,
# with webjudge's ratio to llama.cpp.
# Usage: tools/bench_peers.sh [PROMPT_TOKENS] [DECODE_TOKENS] [RUNS] [NOTE] [GGUF]
set -euo pipefail
cd "$(dirname "$0")/.."

PROMPT=${1:-256}
DECODE=${2:-64}
RUNS=${3:-2}
NOTE=${4:-}
GGUF=${5:-}
source tools/peers/common.sh
# llama.cpp's Vulkan backend hides CPU-type devices (lavapipe) unless told to use device 0.
export GGML_VK_VISIBLE_DEVICES=${GGML_VK_VISIBLE_DEVICES:-0}

prepare_webjudge
install_peer node-llama-cpp@3.21.1
cp tools/peers/llamacpp_bench.mjs tools/peers/prompt.mjs "$PEERS/"
# A copy, so a build during the runs cannot change what is measured.
cp "$WEBJUDGE_RELEASE" "$PEERS/webjudge"

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for run in $(seq "$RUNS"); do
    echo "run $run/$RUNS: webjudge" >&2
    # The first line is the JSON; sed reads on to the end (head would close the pipe early, and
    # webjudge's exit by SIGPIPE would end this script).
    "$PEERS/webjudge" bench --model "$MODEL" --prompt-tokens "$PROMPT" --decode-tokens "$DECODE" 2>/dev/null \
        | sed -n '1{s/^/{"engine": "webjudge", "result": /; s/$/}/; p}' >> "$results"
    echo "run $run/$RUNS: llama.cpp" >&2
    (cd "$PEERS" && node llamacpp_bench.mjs "$gguf" "$PROMPT" "$DECODE") | tail -1 \
        | sed 's/^/{"engine": "llama.cpp", "result": /; s/$/}/' >> "$results"
done

tools/peers/record_peers.py "$results" BENCH.md llama.cpp "$NOTE"
