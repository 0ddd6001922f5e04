#!/usr/bin/env bash
# The Python package's tests (tests/python/, docs/testing.md): the dev-profile wheel installed
# with pytest and Ray Data into a fresh virtual environment, run against the CLI of the same
# profile (which `cargo test --all-targets` builds), the test model's directory, and its GGUF
# (WEBJUDGE_TEST_GGUF, default: tools/fetch_test_model.sh's), which test_hub.py serves by URL.
#   tools/test_python.sh MODEL_DIR [PYTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

model=$(realpath "$1")
shift
target=${CARGO_TARGET_DIR:-target}
gguf=${WEBJUDGE_TEST_GGUF:-$(tools/fetch_test_model.sh | tail -n 1)}
wheel=$(tools/python_wheel.sh --dev | tail -n 1)
cargo build --bin webjudge
venv="$target/python-test-venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q -r tools/python-requirements/test.txt "$wheel"
WEBJUDGE_CLI="$(realpath "$target/debug/webjudge")" WEBJUDGE_TEST_MODEL="$model" WEBJUDGE_TEST_GGUF="$gguf" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider --durations=0 tests/python "$@"
