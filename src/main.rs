//! `entrypoint`: PID 1 for the OpenClaw gateway on a Hugging Face Docker Space (see `lib.rs`).

fn main() {
    std::process::exit(openclaw_space::cli::main());
}
