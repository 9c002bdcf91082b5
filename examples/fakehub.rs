//! Standalone fake Hugging Face Hub, for poking at by hand or from another language:
//!
//! ```text
//! cargo run --example fakehub -- --port 8099 --cas-dir /tmp/cas [--transfer xet|basic|none] \
//!     [--token hf_write] [--read-token hf_read] [--repo owner/name[:private]]...
//! ```
//! Prints `endpoint=http://127.0.0.1:PORT` on the first line of stdout, then serves until
//! killed (Ctrl-C / SIGTERM).
#[path = "../tests/support/fakehub/mod.rs"]
mod fakehub;

use clap::Parser;

#[derive(Parser)]
#[command(about = "A fake Hugging Face Hub on 127.0.0.1 (tests/support/fakehub)")]
struct Args {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Directory handed to xet clients as casUrl local:///DIR.
    #[arg(long)]
    cas_dir: std::path::PathBuf,
    /// What the LFS batch endpoint answers: xet, basic or none.
    #[arg(long, default_value = "xet")]
    transfer: fakehub::Transfer,
    /// Tokens with write access (repeatable).
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// Tokens with read access only (repeatable).
    #[arg(long = "read-token")]
    read_tokens: Vec<String>,
    /// Dataset repos to create up front: owner/name or owner/name:private (repeatable).
    #[arg(long = "repo")]
    repos: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let hub = fakehub::FakeHub::start(fakehub::Config {
        transfer: args.transfer,
        cas_dir: args.cas_dir,
        port: args.port,
    })
    .await;
    for t in &args.tokens {
        hub.add_token(t, fakehub::Access::Write);
    }
    for t in &args.read_tokens {
        hub.add_token(t, fakehub::Access::Read);
    }
    for r in &args.repos {
        let (id, private) = match r.strip_suffix(":private") {
            Some(id) => (id, true),
            None => (r.as_str(), false),
        };
        hub.create_repo(fakehub::RepoType::Dataset, id, private);
    }
    println!("endpoint={}", hub.endpoint());
    use std::io::Write as _;
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
