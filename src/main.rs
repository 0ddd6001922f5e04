//! The `webjudge` command line: convert checkpoints, generate, judge, benchmark, serve.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

// The library is the product on the web; the binary has nothing to do there.
#[cfg(target_arch = "wasm32")]
fn main() {}
