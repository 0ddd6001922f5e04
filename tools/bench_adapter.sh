# Sourced by tools/bench_gpu.sh and tools/bench_device.sh: which adapter a benchmark ran on,
# and whether GPU rows may be recorded on it.

# The adapter named in the JSON line `webjudge bench` prints first (read to the end, so the
# bench is never ended by a closed pipe).
bench_adapter() {
    sed -n '1s/.*"adapter":"\([^"]*\)".*/\1/p'
}

# Whether ADAPTER is a GPU: not a software adapter (lavapipe, SwiftShader) nor none, unless
# WEBJUDGE_BENCH_SOFTWARE=1 (to try a script where no GPU is).
gpu_adapter() {
    [[ ${WEBJUDGE_BENCH_SOFTWARE:-0} == 1 ]] || ! grep -qiE 'llvmpipe|lavapipe|swiftshader|^$' <<<"$1"
}
