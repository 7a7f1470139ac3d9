//! Logging: human-readable `tracing` lines on stderr, one per event.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the stderr logger. `EDGEWATCH_LOG` (or `RUST_LOG`) sets the
/// filter, e.g. `debug` or `edgewatch=debug,rumqttc=info`; default `info`.
pub fn init_logging() {
    let filter = std::env::var("EDGEWATCH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
