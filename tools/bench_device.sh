#!/usr/bin/env bash
# The GPU benchmark on a machine that can fetch nothing (the `device` tool's lent GPU: no
# network, no Rust, no Vulkan loader, a 15-minute budget), at Auto-J-13B's real shapes.
#   tools/bench_device.sh prepare   here, with network: the release CLI and the Vulkan loader's
#                                   packages into .device/ (ignored), which the run carries
#   tools/bench_device.sh run OUT   there, with .device carried: a synthetic Auto-J-13B GGUF
#                                   (tools/synthetic_gguf.py: its shapes and q4_1 types, random
#                                   weights), then `webjudge bench` on it: --profile on each
#                                   matvec path with the GPU's default 512-token prefill chunk,
#                                   and prefill in chunks of 128; rows go to OUT/BENCH.md (a copy
#                                   of this one), logs to OUT/
# Each phase's seconds go to stderr. To try it where no GPU is: WEBJUDGE_BENCH_SOFTWARE=1 (a
# software adapter gets rows too) and WEBJUDGE_BENCH_SHAPES=tiny (synthetic_gguf.py's shapes).
# tools/bench_gpu.sh is the same where a machine can build and download (it adds the llama.cpp
# comparison, which cannot be carried: node-llama-cpp's Vulkan build alone is 81 MB).
# The device call, after prepare: run with carry [".device"], timeout_s 600, command
#   tools/bench_device.sh run "$OUT"
# Budget: the 8.28 GB file is written once (45 s on 2 cores here) and loaded three times (about
# 100 s each on 2 cores with lavapipe, less on 16); the GPU's work is seconds: 6 minutes at most.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/bench_adapter.sh

DEVICE=.device
case ${1:-} in
prepare)
    cargo build --release --quiet
    mkdir -p "$DEVICE/gl"
    cp "${CARGO_TARGET_DIR:-target}/release/webjudge" "$DEVICE/webjudge"
    # The loader and what it needs, amd64 whatever this machine is (the device tool's recipe).
    lists=$(mktemp -d)
    apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists="$lists" -oAPT::Sandbox::User=root)
    mkdir -p "$lists/partial"
    apt-get "${apt[@]}" update -qq
    (cd "$DEVICE/gl" && apt-get "${apt[@]}" download -qq libvulkan1)
    rm -rf "$lists"
    du -sh "$DEVICE" >&2
    ;;
run)
    OUT=${2:?usage: tools/bench_device.sh run OUT}
    for deb in "$DEVICE"/gl/*.deb; do dpkg -x "$deb" /; done
    ldconfig
    # The NVIDIA driver's Vulkan ICD where the image mounts it.
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [[ -f $icd ]] && export VK_DRIVER_FILES=$icd
    if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2; fi
    export XDG_RUNTIME_DIR=/tmp/webjudge-runtime
    mkdir -p -m 700 "$XDG_RUNTIME_DIR"
    cp BENCH.md "$OUT/BENCH.md"
    # phase NAME LOG COMMAND...: runs COMMAND with its output in OUT/LOG, its seconds on stderr.
    phase() {
        local name=$1 log=$OUT/$2 started=$SECONDS
        shift 2
        "$@" >"$log" 2>&1 || { tail -20 "$log" >&2; return 1; }
        echo "bench_device.sh: $name took $((SECONDS - started)) s ($log)" >&2
    }
    # One short unrecorded run on a tiny model names the adapter (a software one gets no rows)
    # before the big model is written.
    tiny=/tmp/tiny-synthetic.q4_1.gguf
    python3 tools/synthetic_gguf.py tiny "$tiny" 2>/dev/null
    adapter=$("$DEVICE/webjudge" bench --model "$tiny" --prompt-tokens 1 --decode-tokens 1 --repeats 1 \
        2>"$OUT/check.log" | bench_adapter)
    echo "bench_device.sh: adapter ${adapter:-none}" >&2
    if ! gpu_adapter "$adapter"; then
        echo "bench_device.sh: no GPU adapter (${adapter:-none}; see $OUT/check.log)" >&2
        exit 1
    fi
    shapes=${WEBJUDGE_BENCH_SHAPES:-autoj-13b}
    gguf=/tmp/$shapes-synthetic.q4_1.gguf
    phase "synthetic $shapes GGUF" synthetic.log python3 tools/synthetic_gguf.py "$shapes" "$gguf"
    bench() {
        "$DEVICE/webjudge" bench --model "$gguf" --context 2048 "$@"
    }
    for matvec in exact int8; do
        phase "bench --profile --matvec $matvec" "profile-$matvec.log" bench --prompt-tokens 1024 \
            --decode-tokens 64 --repeats 100 --profile --matvec "$matvec" --record "$OUT/BENCH.md" \
            --note="tools/bench_device.sh; synthetic $shapes q4_1; --matvec $matvec"
    done
    phase "bench --prefill-chunk 128" chunk-128.log bench --prompt-tokens 1024 --decode-tokens 8 \
        --repeats 10 --prefill-chunk 128 --record "$OUT/BENCH.md" \
        --note="tools/bench_device.sh; synthetic $shapes q4_1; prefill chunk 128"
    ;;
*)
    sed -n '2,19p' "$0" >&2
    exit 2
    ;;
esac
