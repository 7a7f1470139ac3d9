//! The commands, one file each; `main.rs` parses and dispatches. What they
//! share is here: loading the config and the one place that turns an error
//! into an exit status.

pub mod build_engine;
pub mod cameras;
pub mod check_config;
pub mod detect;
pub mod record;
pub mod rtsp_reader;
pub mod run;

use std::path::Path;
use std::process::ExitCode;

use edgewatch::config::{Config, ConfigError, Purpose};
use edgewatch::runtime::daemon;

/// Exit status for a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;

pub fn load(path: &Path, purpose: Purpose) -> Result<Config, ExitCode> {
    Config::load(path, purpose).map_err(|e: ConfigError| {
        eprintln!("{e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Says why start-up failed, on one line, and gives the exit status.
pub fn start_error(config: &Path, e: &anyhow::Error) -> ExitCode {
    if !is_load_error(e) {
        eprintln!("edgewatch: {e:#}");
    }
    exit_code(config, e)
}

fn is_load_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<edgewatch::infer::InferError>(),
            Some(edgewatch::infer::InferError::Load { .. })
        )
    })
}

/// A model that does not fit its configured family, labels that do not fit
/// the model, or a model file that does not load are configuration errors
/// (2); anything else is 1. An unloadable model is also said in the config
/// errors' own format, naming `model.path`.
pub fn exit_code(config: &Path, e: &anyhow::Error) -> ExitCode {
    if let Some(edgewatch::infer::InferError::Load { reason, .. }) = e
        .chain()
        .find_map(|c| c.downcast_ref::<edgewatch::infer::InferError>())
    {
        eprintln!(
            "config error: {}: key `model.path`: {}",
            model_path_place(config),
            edgewatch::base::text::one_line(reason)
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let config_error = e.chain().any(|c| {
        c.is::<daemon::ConfigRejected>()
            || matches!(
                c.downcast_ref::<edgewatch::infer::InferError>(),
                Some(edgewatch::infer::InferError::Layout { .. })
            )
    });
    if config_error {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}

/// `FILE:LINE` of `model.path` in the configuration, as value errors say it.
pub fn model_path_place(config: &Path) -> String {
    let line = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| edgewatch::base::config_spans::Spans::new(&text).line("model.path"));
    match line {
        Some(l) => format!("{}:{l}", config.display()),
        None => config.display().to_string(),
    }
}
