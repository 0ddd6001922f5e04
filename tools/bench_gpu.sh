#!/usr/bin/env bash
# The whole native benchmark on a machine with a real GPU, in one command with a time limit:
# build, fetch and convert the test model, `webjudge bench` (with --profile) recorded in
# BENCH.md, then the llama.cpp comparison on the same GPU (tools/bench_peers.sh). Needs Rust,
# Python with pip (for the test model) and Node.js with npm (for llama.cpp).
# Usage: tools/bench_gpu.sh [TIMEOUT_SECONDS]   (default 540; rows go to BENCH.md)
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT=${1:-540}
MODEL=target/models/smollm2-135m-instruct
deadline=$((SECONDS + LIMIT))
left() { echo $((deadline - SECONDS)); }

timeout "$(left)" cargo build --release --quiet
gguf=$(timeout "$(left)" tools/fetch_test_model.sh)
[[ -f $MODEL/manifest.json ]] || timeout "$(left)" target/release/webjudge convert "$gguf" --out "$MODEL"
timeout "$(left)" target/release/webjudge bench --model "$MODEL" --prompt-tokens 256 --decode-tokens 64 \
    --repeats 200 --profile --record BENCH.md --note "tools/bench_gpu.sh"
# Vulkan device 0 is the GPU wgpu picks first (a real one before lavapipe).
timeout "$(left)" tools/bench_peers.sh 256 64 3 "tools/bench_gpu.sh"
