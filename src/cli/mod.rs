//! The command line: [`main`] parses it and dispatches to one file per
//! command. What the commands share is here: loading the config and the one
//! place that turns an error into an exit status. `src/main.rs` calls
//! [`main`] with no seams; a test binary calls it with its own engine.

pub mod build_engine;
pub mod cameras;
pub mod check_config;
pub mod detect;
pub mod record;
pub mod rtsp_reader;
pub mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, Purpose};
use crate::runtime::daemon;
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
    if !is_load_error(e) {
        eprintln!("edgewatch: {e:#}");
    }
    exit_code(config, e)
}

fn is_load_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<crate::infer::InferError>(),
            Some(crate::infer::InferError::Load { .. })
        )
    })
}

/// A model that does not fit its configured family, labels that do not fit
/// the model, or a model file that does not load are configuration errors
/// (2); anything else is 1. An unloadable model is also said in the config
/// errors' own format, naming `model.path`.
pub fn exit_code(config: &Path, e: &anyhow::Error) -> ExitCode {
    if let Some(crate::infer::InferError::Load { reason, .. }) = e
        .chain()
        .find_map(|c| c.downcast_ref::<crate::infer::InferError>())
    {
        eprintln!(
            "config error: {}: key `model.path`: {}",
            model_path_place(config),
            crate::base::text::one_line(reason)
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let config_error = e.chain().any(|c| {
        c.is::<daemon::ConfigRejected>()
            || matches!(
                c.downcast_ref::<crate::infer::InferError>(),
                Some(crate::infer::InferError::Layout { .. })
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
        .and_then(|text| crate::base::config_spans::Spans::new(&text).line("model.path"));
    match line {
        Some(l) => format!("{}:{l}", config.display()),
        None => config.display().to_string(),
    }
}
