//! Logging: human lines (default) or JSON lines on stderr, one subscriber for the process.

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Install the global subscriber; `filter` uses tracing's syntax (`info`, `debug`, ...).
pub fn init(format: LogFormat, filter: &str) {
    let mut filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // The hf store does its own retries with hf-hub's switched off, so hf-hub logs every
    // retryable answer as an ERROR "retry exhausted"; the store logs those itself, once.
    if !filter.to_string().contains("hf_hub") {
        if let Ok(d) = "hf_hub::retry=off".parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colour codes only for a person at a terminal, never in container logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
