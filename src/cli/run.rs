//! `edgewatch run`: the daemon, with its signals.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::config::Purpose;
use crate::runtime::daemon;

use super::{exit_code, load};

/// Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads.
pub fn run(path: &Path, seams: crate::runtime::seams::Seams) -> ExitCode {
    let config = match load(path, Purpose::Run) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal while stopping exits at once.
        if let Err(e) = signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
        {
            eprintln!("edgewatch: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    }
    // SIGHUP: re-read the file; thresholds apply from the next frame.
    let reload = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone()) {
        eprintln!("edgewatch: cannot install the SIGHUP handler: {e}");
        return ExitCode::FAILURE;
    }
    match daemon::run(path, config, stop, reload, seams) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            exit_code(path, &e)
        }
    }
}
