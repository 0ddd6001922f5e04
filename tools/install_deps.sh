#!/usr/bin/env bash
# Install what building and testing webjudge needs on a Debian machine (run as root).
# Idempotent: installs only what is missing. With --native, only what the native build and its
# tests need (`make check`): no browser, no wasm tools.
set -euo pipefail

native_only=false
[[ "${1:-}" == "--native" ]] && native_only=true

packages=(mesa-vulkan-drivers libvulkan1 python3 python3-pip ca-certificates curl)
# chromium and chromium-driver: the browser tests (tools/test_wasm.sh, tests/browser/); brotli:
# the web build's brotli copy of the wasm (tools/build_web.sh).
$native_only || packages+=(chromium chromium-driver brotli)
need_apt=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# pip may come from pyenv rather than Debian; either serves tools/fetch_test_model.sh.
if python3 -m pip --version >/dev/null 2>&1; then
    need_apt=("${need_apt[@]/python3-pip}")
fi
if [[ -n "${need_apt[*]// /}" ]]; then
    echo "installing: ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq ${need_apt[@]} >&2
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust with rustup (https://rustup.rs) and retry" >&2
    exit 1
fi
$native_only && exit 0
# The library also builds for the browser; `make test` checks that it does.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown >&2
fi
# wasm-bindgen's CLI (www/pkg/ and the browser tests' runner) must be exactly the version of
# the wasm-bindgen crate in Cargo.lock. `--locked` fails on some registry mirrors.
wasm_bindgen=$(grep -A1 '^name = "wasm-bindgen"$' "$(dirname "$0")/../Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')
if [[ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wasm_bindgen" ]]; then
    cargo install wasm-bindgen-cli --version "=$wasm_bindgen" >&2
fi
