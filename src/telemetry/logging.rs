//! Logging: to the systemd journal with structured fields when stderr is the
//! journal's stream, else human-readable `tracing` lines on stderr.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the logger. `EDGEWATCH_LOG` (or `RUST_LOG`) sets the filter,
/// e.g. `debug` or `edgewatch=debug,rumqttc=info`; default `info`.
///
/// Under systemd (`JOURNAL_STREAM` names the file stderr is) events go to
/// journald natively: `MESSAGE`, `PRIORITY`, and each event field as its own
/// journal field — `SOURCE`, `STAGE`, `FRAME_ID` — so
/// `journalctl -u edgewatch FRAME_ID=in-3f2a…` finds one frame's story.
pub fn init_logging() {
    let filter = || {
        let spec = std::env::var("EDGEWATCH_LOG")
            .or_else(|_| std::env::var("RUST_LOG"))
            .unwrap_or_else(|_| "info".into());
        EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info"))
    };
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                // syslog's convention: routine events are "informational"
                // (6); tracing-journald would make them "notice" (5).
                let priorities = tracing_journald::PriorityMappings {
                    info: tracing_journald::Priority::Informational,
                    ..tracing_journald::PriorityMappings::new()
                };
                let journal = journal
                    .with_field_prefix(None)
                    .with_priority_mappings(priorities)
                    .with_syslog_identifier("edgewatch".into());
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(journal)
                    .try_init();
                return;
            }
            Err(e) => eprintln!("edgewatch: cannot reach journald ({e}); logging to stderr"),
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// systemd sets `JOURNAL_STREAM=DEV:INODE` for the stream it connected;
/// stderr is the journal only if it is still that very file (a shell
/// redirect in `ExecStart=` would make it something else).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}
