//! The `edgewatch` command line.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::record::RecordArgs;

/// Big buffers on huge pages, returned to the system when freed (hugepages.rs).
#[global_allocator]
static ALLOC: edgewatch::runtime::hugepages::HugePageAlloc =
    edgewatch::runtime::hugepages::HugePageAlloc;

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    edgewatch::telemetry::init_logging();
    match cli.command {
        Command::Run { config } => cli::run::run(&config),
        Command::Detect {
            config,
            images,
            print_plan,
        } => cli::detect::detect(&config, &images, print_plan),
        Command::CheckConfig { file, detect } => cli::check_config::check_config(&file, detect),
        Command::BuildEngine { config } => cli::build_engine::build_engine(&config),
        Command::Cameras => cli::cameras::cameras(),
        Command::Record(args) => cli::record::record(args),
        Command::RtspReader { .. } => cli::rtsp_reader::rtsp_reader(),
    }
}
