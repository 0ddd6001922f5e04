#!/usr/bin/env bash
# Builds the wasm package the page imports: www/pkg/webjudge.js, webjudge_bg.wasm and
# webjudge.d.ts (not committed), with gzip and brotli copies of the wasm beside it.
# wasm-bindgen must be the CLI matching Cargo.lock's wasm-bindgen crate (tools/install_deps.sh
# installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

locked=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
installed=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [[ "$installed" != "$locked" ]]; then
    echo "error: wasm-bindgen CLI ${installed:-missing}, Cargo.lock has $locked: run tools/install_deps.sh" >&2
    exit 1
fi

cargo build --lib --release --target wasm32-unknown-unknown
wasm-bindgen --target web --out-dir www/pkg "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/webjudge.wasm"
# wasm-opt (Debian's binaryen) shrinks the module when present; the build works without it.
if command -v wasm-opt >/dev/null 2>&1; then
    wasm-opt -O2 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
        --enable-mutable-globals --enable-reference-types --enable-multivalue \
        www/pkg/webjudge_bg.wasm -o www/pkg/webjudge_bg.wasm
fi
# Copies for servers that send them as they are to a browser that accepts the encoding
# (webjudge serve, Caddy's precompressed, nginx's gzip_static). Browsers ask for brotli over
# https (Chromium also on http://127.0.0.1, a secure context), else gzip. -k keeps the wasm and
# gives each copy its time: webjudge serve never sends a copy older than the wasm. brotli is
# optional.
rm -f www/pkg/webjudge_bg.wasm.gz www/pkg/webjudge_bg.wasm.br
gzip -9 -k www/pkg/webjudge_bg.wasm
if command -v brotli >/dev/null 2>&1; then
    brotli -q 11 -k www/pkg/webjudge_bg.wasm
fi
ls -l www/pkg/webjudge_bg.wasm* >&2
