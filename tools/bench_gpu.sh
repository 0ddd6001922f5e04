#!/usr/bin/env bash
# The whole native benchmark on a machine with a real GPU, in one command with a time limit:
# build, fetch and convert the test model, `webjudge bench` (with --profile: where a decode
# step's and a prefill chunk's time goes, kernel by kernel, and the decode layer's dispatch
# count) on each matvec path and prefill in chunks of 128 and 512 tokens, each recorded in
# BENCH.md, then the llama.cpp comparison on the same GPU
# (tools/bench_peers.sh). Needs Rust, Python with pip (for the test model), Node.js with npm
# (for llama.cpp) and a Vulkan driver. Each phase's seconds are printed to stderr, so a slow
# machine shows where the time went.
# Usage: tools/bench_gpu.sh [TIMEOUT_SECONDS]   (default 470: under 8 minutes; rows go to BENCH.md)
# A software adapter (lavapipe, SwiftShader) is refused before anything is recorded, unless
# WEBJUDGE_BENCH_SOFTWARE=1 (to try the script where no GPU is).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/bench_adapter.sh

LIMIT=${1:-470}
MODEL=target/models/smollm2-135m-instruct
WEBJUDGE=${CARGO_TARGET_DIR:-target}/release/webjudge
deadline=$((SECONDS + LIMIT))
left() { echo $((deadline - SECONDS)); }
phase() {
    local name=$1 started=$SECONDS
    shift
    timeout "$(left)" "$@"
    echo "bench_gpu.sh: $name took $((SECONDS - started)) s ($(left) s left)" >&2
}

phase build cargo build --release --quiet
gguf=$(timeout "$(left)" tools/fetch_test_model.sh | tail -1)
[[ -f $MODEL/manifest.json ]] || phase convert "$WEBJUDGE" convert "$gguf" --out "$MODEL"
# One short unrecorded run names the adapter wgpu picks.
adapter=$(timeout "$(left)" "$WEBJUDGE" bench --model "$MODEL" --prompt-tokens 1 --decode-tokens 1 \
    --repeats 1 2>/dev/null | bench_adapter)
echo "bench_gpu.sh: adapter $adapter" >&2
if ! gpu_adapter "$adapter"; then
    echo "bench_gpu.sh: wgpu picked a software adapter (${adapter:-none}): no GPU rows recorded" >&2
    exit 1
fi
# Both matvec paths, each recorded: the int8 one (x quantized to 8 bits, packed integer dot
# products; docs/quantization.md) becomes the default on a GPU only where this shows it faster.
for matvec in exact int8; do
    phase "bench --profile --matvec $matvec" "$WEBJUDGE" bench --model "$MODEL" --prompt-tokens 256 \
        --decode-tokens 64 --repeats 200 --profile --matvec "$matvec" --record BENCH.md \
        --note "tools/bench_gpu.sh; --matvec $matvec"
done
# The prefill chunk: a CPU adapter's 128 tokens against a GPU's default 512, over 1024 tokens.
for chunk in 128 512; do
    phase "bench --prefill-chunk $chunk" "$WEBJUDGE" bench --model "$MODEL" --prompt-tokens 1024 \
        --decode-tokens 8 --repeats 20 --prefill-chunk "$chunk" --record BENCH.md \
        --note="tools/bench_gpu.sh; prefill chunk $chunk"
done
# Vulkan device 0 is the GPU wgpu picks first (a real one before lavapipe).
phase "llama.cpp comparison" tools/bench_peers.sh 256 64 3 "tools/bench_gpu.sh"
