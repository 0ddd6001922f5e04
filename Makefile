# The README's two set-up commands: `make demo` (build, fetch the default model, serve the
# page) and `make test` (every test). Both install what they need first.

CACHE ?= $(or $(WEBJUDGE_CACHE),$(HOME)/.cache/webjudge)
DEMO_MODEL := target/models/smollm2-135m-instruct
PORT ?= 8080

# Vulkan's loader complains on every start without one.
export XDG_RUNTIME_DIR ?= /tmp/webjudge-runtime-$(shell id -u)

.PHONY: demo test deps web model

deps:
	tools/install_deps.sh
	mkdir -p -m 700 $(XDG_RUNTIME_DIR)

# The wasm package the page imports (www/pkg/, not committed).
web: deps
	tools/build_web.sh

$(DEMO_MODEL)/manifest.json: | deps
	cargo build --release
	target/release/webjudge convert "$$(tools/fetch_test_model.sh $(CACHE))" --out $(DEMO_MODEL)

model: $(DEMO_MODEL)/manifest.json

demo: web model
	cargo build --release
	target/release/webjudge serve --port $(PORT) --model $(DEMO_MODEL)

# The browser tests run the release CLI and www/pkg/: build both fresh.
test: deps model web
	cargo build --release
	WEBJUDGE_TEST_GGUF="$$(tools/fetch_test_model.sh $(CACHE))" cargo test --all-targets
	tools/test_wasm.sh
	tests/browser/run.sh
