# Shared by tools/bench_peers.sh and tools/bench_browser.sh, sourced from the repository root:
# where the peers and the test model live, and how they get there.
PEERS=target/peers
MODEL=target/models/smollm2-135m-instruct
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/webjudge-runtime-$(id -u)}
mkdir -p -m 700 "$XDG_RUNTIME_DIR"

# The release CLI, wherever cargo puts it (CARGO_TARGET_DIR).
WEBJUDGE_RELEASE=${CARGO_TARGET_DIR:-target}/release/webjudge

# Builds webjudge, converts the GGUF ($GGUF if set, else the test model's) if needed; sets
# $gguf to the GGUF's path and $MODEL to its model directory.
prepare_webjudge() {
    if [[ -n ${GGUF:-} ]]; then
        gguf=$GGUF
        MODEL=target/models/$(basename "$gguf" .gguf)
    else
        gguf=$(tools/fetch_test_model.sh)
    fi
    cargo build --release --quiet
    [[ -f $MODEL/manifest.json ]] || "$WEBJUDGE_RELEASE" convert "$gguf" --out "$MODEL"
}

# Installs one pinned npm package (name@version) into $PEERS, once; never committed.
install_peer() {
    local package=$1
    [[ -d $PEERS/node_modules/${package%@*} ]] && return
    mkdir -p "$PEERS"
    [[ -f $PEERS/package.json ]] || echo '{"private": true, "type": "module"}' > "$PEERS/package.json"
    (cd "$PEERS" && npm i -E --no-audit --no-fund "$package" >&2)
}
