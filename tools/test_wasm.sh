#!/usr/bin/env bash
# The browser tests (tests/web.rs) in headless Chromium with WebGPU on SwiftShader,
# through wasm-bindgen-test-runner and chromedriver (flags in webdriver.json). Serves the
# test model with the browser suites' fault-injecting server (tests/browser/server.mjs, Node)
# for the loader tests and stops it on exit.
#   tools/test_wasm.sh [MODEL_DIR] [-- extra test-runner arguments, e.g. a test name]
set -euo pipefail
cd "$(dirname "$0")/.."

model=${1:-target/models/smollm2-135m-instruct}
shift || true
[[ "${1:-}" == "--" ]] && shift
if [[ ! -f "$model/manifest.json" ]]; then
    echo "error: no converted test model in $model (make model)" >&2
    exit 1
fi
locked=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
if [[ "$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}')" != "$locked" ]]; then
    echo "error: wasm-bindgen-test-runner must be version $locked (Cargo.lock): run tools/install_deps.sh" >&2
    exit 1
fi

port=${WEBJUDGE_TEST_PORT:-8932}
node tests/browser/server.mjs --port "$port" --model "$model" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/log" >/dev/null && break
    sleep 0.1
done

# A fresh browser profile per run (chromedriver creates one), so the Cache API starts empty.
export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-1800}
export WEBJUDGE_TEST_SERVER="http://127.0.0.1:$port"
# --release: the same dependency builds as tools/build_web.sh's (the dev profile would compile
# every crate for wasm32 a second time); only the test's own dev-dependencies are added.
cargo test --release --target wasm32-unknown-unknown --test web -- "$@"
