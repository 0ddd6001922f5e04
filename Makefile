# The README's set-up commands: `make demo` (build, fetch the default model, serve the page),
# `make check` (the fast tier of tests), `make test` (every test, as CI runs it),
# `make package` (the npm package) and `make python` (the Python wheel). Each installs what it
# needs first.

CACHE ?= $(or $(WEBJUDGE_CACHE),$(HOME)/.cache/webjudge)
DEMO_MODEL := target/models/smollm2-135m-instruct
PORT ?= 8080

# Vulkan's loader complains on every start without one.
export XDG_RUNTIME_DIR ?= /tmp/webjudge-runtime-$(shell id -u)

# The test model's GGUF for the tests, fetched and verified once into the cache.
TEST_GGUF := WEBJUDGE_TEST_GGUF="$$(tools/fetch_test_model.sh $(CACHE))"

.PHONY: demo check test test-python deps native-deps web model package python

# What the native build and its tests need; deps adds the browser and the wasm tools.
native-deps:
	tools/timed.sh tools/install_deps.sh --native
	mkdir -p -m 700 $(XDG_RUNTIME_DIR)

deps: native-deps
	tools/timed.sh tools/install_deps.sh

# The wasm package the page imports (www/pkg/, not committed).
web: deps
	tools/timed.sh tools/build_web.sh

# The npm package `webjudge` (nothing is published): target/package/webjudge-<version>.tgz.
# esbuild, which bundles its single-script build, is pinned in tests/browser/'s package-lock.
package: web
	test -d tests/browser/node_modules/esbuild || (cd tests/browser && npm ci --no-audit --no-fund)
	node tools/build_package.mjs

# The Python package `webjudge` (pyproject.toml): an abi3 wheel in target/wheels/release/.
python: native-deps
	tools/python_wheel.sh

$(DEMO_MODEL)/manifest.json: | deps
	cargo build --release
	target/release/webjudge convert "$$(tools/fetch_test_model.sh $(CACHE))" --out $(DEMO_MODEL)

model: $(DEMO_MODEL)/manifest.json

demo: web model
	cargo build --release
	target/release/webjudge serve --port $(PORT) --model $(DEMO_MODEL)

# The fast tier: every native test but those marked `#[ignore = "full tier: make test"]`
# (the same tests as plain `cargo test`).
check: native-deps
	$(TEST_GGUF) cargo test --all-targets

# The full tier: the fast tier's ignored tests included, the Python package's (the test
# model's directory), then the wasm and browser suites, which run the CLI and www/pkg/: build
# both fresh. The suites run the dev build of the CLI, which `cargo test` builds anyway: a
# release build would compile every crate a second time. tools/timed.sh says how long each
# step took, so CI's log shows where its time goes.
TEST_BIN := target/debug/webjudge

test: deps web
	tools/timed.sh cargo build --bin webjudge
	test -f $(DEMO_MODEL)/manifest.json || \
		$(TEST_BIN) convert "$$(tools/fetch_test_model.sh $(CACHE))" --out $(DEMO_MODEL)
	$(TEST_GGUF) tools/timed.sh cargo test --all-targets -- --include-ignored
	tools/timed.sh tools/test_python.sh $(DEMO_MODEL)
	tools/timed.sh tools/test_wasm.sh
	WEBJUDGE_BIN=$(CURDIR)/$(TEST_BIN) tools/timed.sh tests/browser/run.sh

# The Python package's tests alone (make test runs them too): minutes of generation on lavapipe.
test-python: native-deps model
	tools/test_python.sh $(DEMO_MODEL)
