#!/usr/bin/env bash
# The page's tests: units.test.mjs (its modules and the wasm pairwiseMetrics under Node),
# serve.test.mjs (the page's wasm through `webjudge serve`), e2e.test.mjs (www/ end to end in
# headless Chromium with WebGPU on SwiftShader, driven by playwright-core against the system
# Chromium), package.test.mjs (the npm package installed, bundled with esbuild, Vite 7 and
# Vite 8 and run there, its declarations checked by tsc), families.test.mjs (the newer judges
# on tiny checkpoints of their bases, page against native CLI) and gguf.test.mjs (the test
# model's GGUF loaded by URL, served as the Hub serves it). Needs the native build and the
# converted test model (make builds both); builds only www/pkg/ when it is missing.
# Environment: WEBJUDGE_BIN, WEBJUDGE_MODEL, WEBJUDGE_NATIVE_FLAGS (see e2e.test.mjs).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export WEBJUDGE_BIN="${WEBJUDGE_BIN:-$REPO/target/release/webjudge}"
export WEBJUDGE_MODEL="${WEBJUDGE_MODEL:-$REPO/target/models/smollm2-135m-instruct}"

if [[ ! -x /usr/bin/chromium ]]; then
    echo "installing Chromium (apt)" >&2
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi
for package in playwright-core esbuild vite7 vite8 typescript; do
    if [[ ! -d "$HERE/node_modules/$package" ]]; then
        (cd "$HERE" && npm ci --no-audit --no-fund)
        break
    fi
done
if [[ ! -f "$REPO/www/pkg/webjudge.js" ]]; then
    "$REPO/tools/build_web.sh"
fi
if [[ ! -x "$WEBJUDGE_BIN" ]]; then
    echo "error: no native CLI at $WEBJUDGE_BIN (cargo build --release; or name a dev build in WEBJUDGE_BIN, as make test does)" >&2
    exit 1
fi
if [[ ! -f "$WEBJUDGE_MODEL/manifest.json" ]]; then
    echo "error: no test model at $WEBJUDGE_MODEL; make it with" >&2
    echo "  $WEBJUDGE_BIN convert \"\$(tools/fetch_test_model.sh)\" --out $WEBJUDGE_MODEL" >&2
    exit 1
fi

cd "$HERE"
exec node --test --test-concurrency=1 --test-reporter=spec units.test.mjs serve.test.mjs e2e.test.mjs families.test.mjs package.test.mjs gguf.test.mjs
