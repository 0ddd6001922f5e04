# The README's two set-up commands: `make demo` (build, fetch the default model, run it)
# and `make test` (every test). Both install what they need first.

CACHE ?= $(or $(WEBJUDGE_CACHE),$(HOME)/.cache/webjudge)
DEMO_MODEL := target/models/smollm2-135m-instruct
DEMO_PROMPT := What makes a good code review? Answer in three sentences.

# Vulkan's loader complains on every start without one.
export XDG_RUNTIME_DIR ?= /tmp/webjudge-runtime-$(shell id -u)

.PHONY: demo test deps

deps:
	tools/install_deps.sh
	mkdir -p -m 700 $(XDG_RUNTIME_DIR)

$(DEMO_MODEL)/manifest.json: | deps
	cargo build --release
	target/release/webjudge convert "$$(tools/fetch_test_model.sh $(CACHE))" --out $(DEMO_MODEL)

demo: deps $(DEMO_MODEL)/manifest.json
	cargo build --release
	target/release/webjudge generate --model $(DEMO_MODEL) --max-tokens 128 --chat --prompt "$(DEMO_PROMPT)"

test: deps
	cargo build --lib --target wasm32-unknown-unknown
	WEBJUDGE_TEST_GGUF="$$(tools/fetch_test_model.sh $(CACHE))" cargo test --all-targets
