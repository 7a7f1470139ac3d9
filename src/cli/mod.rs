//! The command line: [`main`] parses it and dispatches to one file per
//! command. What the commands share is here: loading the config and the one
//! place that turns an error into an exit status. `src/main.rs` calls
//! [`main`] with no seams; a test binary calls it with its own engine.

pub(crate) mod build_engine;
pub(crate) mod cameras;
pub(crate) mod check_config;
pub(crate) mod detect;
pub(crate) mod record;
pub(crate) mod rtsp_reader;
pub(crate) mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, Issue, Purpose};
use crate::runtime::seams::Seams;
use record::RecordArgs;

#[derive(Parser)]
#[command(
    name = "edgewatch",
    version = concat!(env!("CARGO_PKG_VERSION"), env!("EDGEWATCH_BACKENDS")),
    about = "Inference daemon for the edge: folders and cameras -> ONNX detection -> MQTT"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: watch the sources, publish detections to MQTT.
    Run {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Detect on image files; prints one JSON message per image, in order.
    Detect {
        /// Configuration file (only [model], [decode] are needed).
        #[arg(long, short)]
        config: PathBuf,
        /// Images to process.
        #[arg(required_unless_present = "print_plan")]
        images: Vec<PathBuf>,
        /// Show how memory_budget_mb is split (stdout without images, else stderr).
        #[arg(long)]
        print_plan: bool,
    },
    /// Check a configuration as the daemon starts it: every problem, one
    /// line each (FILE:LINE: key), exit 2; then the model is loaded, one
    /// frame runs, and "ok" is the last line.
    CheckConfig {
        /// Configuration file.
        file: PathBuf,
        /// For a file used with `edgewatch detect`: [[source]] is not
        /// required. Whatever the file has is checked either way, the model
        /// is loaded and one frame is run through it.
        #[arg(long)]
        detect: bool,
    },
    /// Build the TensorRT engine for a configuration ahead of time (first
    /// boot, package post-install), with progress and its memory needs.
    BuildEngine {
        /// Configuration file (model.backend = "tensorrt").
        #[arg(long)]
        config: PathBuf,
    },
    /// List V4L2 cameras with their stable paths, formats, sizes and rates.
    Cameras,
    /// Record a replay file from a camera, or from still images.
    Record(RecordArgs),
    /// One RTSP source's reader, started by the daemon (source/rtsp_child.rs).
    #[command(name = "rtsp-reader", hide = true)]
    RtspReader {
        /// The source's name, so that `ps` tells readers apart.
        source: String,
    },
}

/// Parses the command line and runs the command; `seams` are
/// `Seams::default()` except in tests.
pub fn main(seams: Seams) -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init_logging();
    match cli.command {
        Command::Run { config } => run::run(&config, seams),
        Command::Detect {
            config,
            images,
            print_plan,
        } => detect::detect(&config, &images, print_plan, seams),
        Command::CheckConfig { file, detect } => check_config::check_config(&file, detect),
        Command::BuildEngine { config } => build_engine::build_engine(&config),
        Command::Cameras => cameras::cameras(),
        Command::Record(args) => record::record(args),
        Command::RtspReader { .. } => rtsp_reader::rtsp_reader(),
    }
}

/// Exit status for a configuration that cannot be used.
pub const EXIT_CONFIG: u8 = 2;

pub fn load(path: &Path, purpose: Purpose) -> Result<Config, ExitCode> {
    Config::load(path, purpose).map_err(|e: ConfigError| {
        eprintln!("{e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Says why start-up failed, on one line, and gives the exit status.
pub fn start_error(config: &Path, e: &anyhow::Error) -> ExitCode {
    if issue_in(e).is_none() {
        eprintln!("edgewatch: {e:#}");
    }
    exit_code(config, e)
}

/// The configuration issue behind `e`, if the operator's config is what
/// must change.
fn issue_in(e: &anyhow::Error) -> Option<&Issue> {
    e.chain().find_map(|c| c.downcast_ref::<Issue>())
}

/// The one classification of failures: an [`Issue`] anywhere in the chain
/// (a model that does not load or fit its family, labels that do not fit
/// the model, an outbox another daemon holds) is a configuration error,
/// said in the config errors' own format and exit status 2; anything else
/// is 1.
pub fn exit_code(config: &Path, e: &anyhow::Error) -> ExitCode {
    match issue_in(e) {
        Some(issue) => {
            let mut issue = issue.clone();
            issue.reason = crate::base::text::one_line(&issue.reason);
            issue.line = key_line(config, &issue.key);
            eprintln!(
                "{}",
                ConfigError {
                    file: config.to_path_buf(),
                    issues: vec![issue],
                }
            );
            ExitCode::from(EXIT_CONFIG)
        }
        None => ExitCode::FAILURE,
    }
}

/// Where `key` sits in the configuration file, when it is there.
fn key_line(config: &Path, key: &str) -> Option<usize> {
    let text = std::fs::read_to_string(config).ok()?;
    crate::base::config_spans::Spans::new(&text).line(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn only_an_issue_under_any_context_makes_a_config_error() {
        let deep: anyhow::Result<()> = Err(Issue::new("mqtt.outbox", "in use by pid 7").into());
        let deep = deep
            .context("starting the sink")
            .context("starting")
            .unwrap_err();
        assert_eq!(issue_in(&deep).map(|i| i.key.as_str()), Some("mqtt.outbox"));
        let other = anyhow::anyhow!("broker unreachable").context("starting");
        assert!(issue_in(&other).is_none());
        let run_failure: anyhow::Error = crate::infer::InferError::Run {
            shape: [1, 3, 8, 8],
            reason: "out of memory".into(),
        }
        .into();
        assert!(issue_in(&run_failure).is_none());
    }
}
