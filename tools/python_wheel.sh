#!/usr/bin/env bash
# Build the Python package's wheel (pyproject.toml: maturin, feature `python`; abi3, so one wheel
# serves every CPython >= 3.9 on this platform) with maturin from a build venv kept in the
# target directory. The last line printed is the wheel's path.
#   tools/python_wheel.sh [--dev]
# --dev: the dev profile, whose dependencies `cargo test` has already built (the tests' wheel);
# default: the release profile (`make python`).
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
profile=release
[[ "${1:-}" == "--dev" ]] && profile=dev
out="$target/wheels/$profile"
venv="$target/maturin-venv"
if [[ ! -x "$venv/bin/maturin" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r tools/python-requirements/build.txt >&2
fi
rm -rf "$out"
"$venv/bin/maturin" build --profile "$profile" --out "$out" >&2
ls "$out"/webjudge-*.whl
