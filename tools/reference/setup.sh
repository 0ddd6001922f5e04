#!/usr/bin/env bash
# Create the reference virtualenv used to regenerate tests/golden and tests/fixtures.
# Usage: tools/reference/setup.sh   (prints the venv's python path last)
set -euo pipefail
VENV="${WEBJUDGE_CACHE:-$HOME/.cache/webjudge}/refvenv"
HERE="$(cd "$(dirname "$0")" && pwd)"
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet -r "$HERE/requirements.txt" >&2
echo "$VENV/bin/python"
