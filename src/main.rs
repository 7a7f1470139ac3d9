//! The `edgewatch` command line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use clap::{Parser, Subcommand};

use edgewatch::config::{Config, ConfigError, Purpose};
use edgewatch::frame::FrameMeta;
use edgewatch::infer::detector::Detector;
use edgewatch::sink::payload::Message;
use edgewatch::{daemon, setup};

/// Big buffers on huge pages, returned to the system when freed (hugepages.rs).
#[global_allocator]
static ALLOC: edgewatch::hugepages::HugePageAlloc = edgewatch::hugepages::HugePageAlloc;

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
        Command::Run { config } => run(&config),
        Command::Detect {
            config,
            images,
            print_plan,
        } => detect(&config, &images, print_plan),
        Command::CheckConfig { file, detect } => check_config(&file, detect),
        Command::BuildEngine { config } => build_engine(&config),
        Command::Cameras => cameras(),
        Command::Record(args) => record(args),
        Command::RtspReader { .. } => rtsp_reader(),
    }
}

fn build_engine(path: &Path) -> ExitCode {
    let config = match load(path, Purpose::Detect) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if config.model.backend != edgewatch::infer::Backend::Tensorrt {
        eprintln!(
            "edgewatch: {}: model.backend is \"{}\"; set model.backend = \"tensorrt\" to build an engine",
            path.display(),
            config.model.backend.name()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    #[cfg(feature = "tensorrt")]
    {
        match edgewatch::tensorrt_startup::build_engine(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("edgewatch: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(feature = "tensorrt"))]
    {
        // `load` already refused backend = "tensorrt" in this build.
        ExitCode::from(EXIT_CONFIG)
    }
}

#[cfg(feature = "rtsp")]
fn rtsp_reader() -> ExitCode {
    ExitCode::from(edgewatch::source::rtsp_child::serve() as u8)
}

#[cfg(not(feature = "rtsp"))]
fn rtsp_reader() -> ExitCode {
    eprintln!("edgewatch: built without RTSP support (cargo feature `rtsp`)");
    ExitCode::FAILURE
}

#[cfg(feature = "camera")]
fn cameras() -> ExitCode {
    print!("{}", edgewatch::source::camera::list());
    ExitCode::SUCCESS
}

#[cfg(not(feature = "camera"))]
fn cameras() -> ExitCode {
    eprintln!("edgewatch: built without camera support (cargo feature `camera`); rebuild with it to list cameras");
    ExitCode::FAILURE
}

#[derive(clap::Args)]
struct RecordArgs {
    /// Camera to record from (/dev/videoN or /dev/v4l/by-id/...).
    #[arg(long, required_unless_present = "images", conflicts_with = "images")]
    device: Option<PathBuf>,
    /// Still images to turn into a stream instead (all one size).
    #[arg(long, num_args = 1..)]
    images: Vec<PathBuf>,
    /// Pixel format: auto, mjpeg, yuyv, grey, rgb3 (images: default yuyv).
    #[arg(long, default_value = "auto")]
    format: String,
    /// Frame width to ask the camera for.
    #[arg(long, default_value_t = 1920)]
    width: u32,
    /// Frame height to ask the camera for.
    #[arg(long, default_value_t = 1080)]
    height: u32,
    /// Frame rate (camera: asked for; images: spacing of the frames).
    #[arg(long)]
    fps: Option<f64>,
    /// Frames to record from the camera.
    #[arg(long, default_value_t = 100)]
    frames: u64,
    /// The replay file to write.
    #[arg(long, short)]
    out: PathBuf,
}

fn record(args: RecordArgs) -> ExitCode {
    use edgewatch::source::camera::FormatChoice;
    use edgewatch::source::pixels::PixelFormat;
    let choice: FormatChoice = match args.format.parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edgewatch record: --format {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !args.images.is_empty() {
        let format = match choice {
            FormatChoice::Auto | FormatChoice::Yuyv => PixelFormat::Yuyv,
            FormatChoice::Mjpeg => PixelFormat::Mjpeg,
            FormatChoice::Grey => PixelFormat::Grey,
            FormatChoice::Rgb3 => PixelFormat::Rgb3,
        };
        let fps = args.fps.unwrap_or(1.0);
        return match edgewatch::source::record::from_images(&args.images, format, fps, &args.out) {
            Ok((w, h)) => {
                eprintln!(
                    "wrote {}: {} frame(s), {format} {w}x{h}, {fps} fps",
                    args.out.display(),
                    args.images.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("edgewatch record: {e}");
                ExitCode::FAILURE
            }
        };
    }
    record_device(args, choice)
}

#[cfg(feature = "camera")]
fn record_device(args: RecordArgs, format: edgewatch::source::camera::FormatChoice) -> ExitCode {
    let cfg = edgewatch::source::camera::CameraConfig {
        name: "record".into(),
        device: args
            .device
            .expect("clap requires --device without --images"),
        format,
        width: args.width,
        height: args.height,
        fps: args.fps,
        every_nth: 1,
        buffers: 4,
        frame_timeout_s: 5,
        reconnect_max_s: 10,
        stream: edgewatch::source::stream_keys::StreamKeys::default(),
    };
    let mut opener = edgewatch::source::camera::V4l2Opener::new(&cfg);
    match edgewatch::source::record::from_device(&mut opener, args.frames, &args.out) {
        Ok(granted) => {
            eprintln!(
                "wrote {}: {} frame(s), {granted}",
                args.out.display(),
                args.frames
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edgewatch record: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "camera"))]
fn record_device(_: RecordArgs, _: edgewatch::source::camera::FormatChoice) -> ExitCode {
    eprintln!(
        "edgewatch: built without camera support (cargo feature `camera`); only --images works"
    );
    ExitCode::FAILURE
}

/// Exit status for a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;

fn load(path: &Path, purpose: Purpose) -> Result<Config, ExitCode> {
    Config::load(path, purpose).map_err(|e: ConfigError| {
        eprintln!("{e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn run(path: &Path) -> ExitCode {
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
    match daemon::run(path, config, stop, reload) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            exit_code(path, &e)
        }
    }
}

/// Says why start-up failed, on one line, and gives the exit status.
fn start_error(config: &Path, e: &anyhow::Error) -> ExitCode {
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
fn exit_code(config: &Path, e: &anyhow::Error) -> ExitCode {
    if let Some(edgewatch::infer::InferError::Load { reason, .. }) = e
        .chain()
        .find_map(|c| c.downcast_ref::<edgewatch::infer::InferError>())
    {
        eprintln!(
            "config error: {}: key `model.path`: {}",
            model_path_place(config),
            edgewatch::frame::one_line(reason)
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

fn detect(path: &Path, images: &[PathBuf], print_plan: bool) -> ExitCode {
    let config = match load(path, Purpose::Detect) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if print_plan {
        let note = config
            .plan_fitted
            .as_deref()
            .map(|n| format!("{n}\n"))
            .unwrap_or_default();
        match config.memory_plan() {
            Ok(plan) if images.is_empty() => println!("{note}{plan}"),
            Ok(plan) => eprintln!("{note}{plan}"),
            Err(e) => {
                eprintln!("edgewatch: {}: {}", e.key, e.reason);
                return ExitCode::from(2);
            }
        }
        if images.is_empty() {
            return ExitCode::SUCCESS;
        }
    }
    let (model, plan) = match setup::load_model(&config) {
        Ok(m) => m,
        Err(e) => return start_error(path, &e),
    };
    let workers = plan.workers;
    let settings = match setup::detector_settings(&config, plan.max_pixels, &model) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("edgewatch: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let next = AtomicUsize::new(0);
    quiet_panics();
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, Result<String, String>)>();
    let workers = workers.min(images.len()).max(1);
    let failed = std::thread::scope(|scope| {
        for _ in 0..workers {
            let engine = match model.engines.engine() {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("edgewatch: {e}");
                    return usize::MAX;
                }
            };
            let mut detector = Detector::new(engine, settings.clone());
            let (tx, next, model, config, settings) =
                (tx.clone(), &next, &model, &config, &settings);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(image) = images.get(i) else { break };
                // A panic costs this image only: it is one stderr line and
                // a non-zero exit, and every other image still gets its
                // message. The engine may be mid-run: a fresh one follows.
                let detected = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    edgewatch::workers::injected_panic(Some(image));
                    detector.detect_file(image)
                }));
                let detected = match detected {
                    Ok(d) => d,
                    Err(_) => {
                        let why = last_panic();
                        if let Ok(engine) = model.engines.engine() {
                            detector = Detector::new(engine, settings.clone());
                        }
                        let _ = tx.send((
                            i,
                            Err(format!(
                                "internal error, the image was not processed ({why}); please report it with this image"
                            )),
                        ));
                        continue;
                    }
                };
                let out = detected
                    .map(|result| {
                        let file = std::fs::metadata(image).ok();
                        let captured_at = file
                            .as_ref()
                            .and_then(|m| m.modified().ok())
                            .unwrap_or_else(SystemTime::now);
                        let size = file.map(|m| m.len()).unwrap_or(0);
                        let meta = FrameMeta {
                            source: "cli".into(),
                            seq: i as u64 + 1,
                            // As a folder source names it: the same file
                            // gets the same id on every run.
                            id: edgewatch::source::folder::stable_id("cli", image, size, captured_at),
                            captured_at,
                            path: Some(image.clone()),
                        };
                        Message::new(&config.device, &meta, &model.info, &result).to_json()
                    })
                    .map_err(|e| {
                        format!(
                            "{} (stage {})",
                            edgewatch::frame::one_line(&e.to_string()),
                            e.stage()
                        )
                    });
                if tx.send((i, out)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        // Print in input order as results arrive.
        let mut pending = BTreeMap::new();
        let mut printed = 0;
        let mut failed = 0;
        let stdout = std::io::stdout();
        for (i, out) in rx {
            pending.insert(i, out);
            while let Some(out) = pending.remove(&printed) {
                match out {
                    Ok(line) => {
                        let mut lock = stdout.lock();
                        let _ = writeln!(lock, "{line}");
                        let _ = lock.flush();
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("edgewatch: {}: {e}", images[printed].display());
                    }
                }
                printed += 1;
            }
        }
        failed
    });
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `FILE:LINE` of `model.path` in the configuration, as value errors say it.
fn model_path_place(config: &Path) -> String {
    let line = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| edgewatch::config_spans::Spans::new(&text).line("model.path"));
    match line {
        Some(l) => format!("{}:{l}", config.display()),
        None => config.display().to_string(),
    }
}

thread_local! {
    /// The last panic on this thread, one line with its place.
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Panics are reported by `detect` as one line per image: the hook only
/// keeps the message and where it happened for that line.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        // "panicked at FILE:LINE:COL:\nmessage" on one line.
        let text = edgewatch::frame::one_line(&info.to_string().replacen(":\n", ": ", 1));
        LAST_PANIC.with(|l| *l.borrow_mut() = text);
    }));
}

fn last_panic() -> String {
    LAST_PANIC.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// Every check the daemon (or `detect`) makes at start-up, then one frame
/// through the engine; "ok" is the last line, printed only when all passed.
fn check_config(path: &Path, detect_only: bool) -> ExitCode {
    let purpose = if detect_only {
        Purpose::Detect
    } else {
        Purpose::Run
    };
    let c = match load(path, purpose) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(note) = &c.plan_fitted {
        println!("{note}");
    }
    // Loading the model shows what only the file can: a layout that does
    // not fit the family, labels that do not fit the classes.
    let (model, plan) = match setup::load_model(&c) {
        Ok(m) => m,
        Err(e) => return start_error(path, &e),
    };
    println!("{plan}");
    let settings = match setup::detector_settings(&c, plan.max_pixels, &model) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("edgewatch: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    println!(
        "model: {}, {} label(s) ({}), labels from {}, input {}",
        model.head,
        model.labels.len(),
        model
            .labels
            .iter()
            .take(5)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        model.label_origin,
        match model.head {
            edgewatch::infer::model::Head::Db => "dynamic".to_string(),
            _ => format!("{}x{}", model.input.0, model.input.1),
        }
    );
    println!("{}", scaling_note(plan.max_pixels, c.tiling.min_text_px));
    // One grey 1080p frame through the engine: a model that loads but does
    // not run (an operator the backend lacks) fails here, not on the first
    // real frame.
    let engine = match model.engines.engine() {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "config error: {}: key `model.path`: {}",
                model_path_place(path),
                edgewatch::frame::one_line(&e.to_string())
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut detector = Detector::new(engine, settings);
    let frame = image::RgbImage::from_pixel(1920, 1080, image::Rgb([128, 128, 128]));
    let started = std::time::Instant::now();
    if let Err(e) = detector.detect_rgb(frame) {
        eprintln!(
            "config error: {}: key `model.path`: one frame did not run: {}",
            model_path_place(path),
            edgewatch::frame::one_line(&e.to_string())
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Some(choice) = &c.model.backend_choice {
        println!("{choice}");
    }
    println!(
        "one 1920x1080 frame ran on {} in {} ms",
        model.engines.label(),
        started.elapsed().as_millis()
    );
    println!(
        "{}: ok — device {}, model {} (family {}, backend {}), tiling {}, {} source(s){}",
        path.display(),
        c.device,
        c.model.path.display(),
        c.model.family.name(),
        c.model.backend.name(),
        c.tiling.mode.name(),
        c.sources.len(),
        c.mqtt
            .as_ref()
            .map(|m| format!(", broker {}", edgewatch::sink::mqtt::redacted(&m.url)))
            .unwrap_or_default()
    );
    ExitCode::SUCCESS
}

/// What a frame larger than `max_pixels` becomes: decoded scaled down
/// (JPEG, PNG, TIFF), so its text must be taller to survive.
fn scaling_note(max_pixels: u64, min_text_px: f32) -> String {
    let a4_400dpi = 3307u64 * 4677;
    let f = edgewatch::infer::scaled_decode::shrink_factor(3307, 4677, max_pixels);
    format!(
        "frames over {:.1} MP are decoded scaled down (JPEG by 1/2, 1/4 or 1/8; PNG and TIFF by a whole factor){}",
        max_pixels as f64 / 1e6,
        match f {
            Some(f) if a4_400dpi > max_pixels => format!(
                ": a 400-dpi A4 scan ({:.1} MP) is seen at 1/{f}, so text under {:.0} px in the scan may be missed",
                a4_400dpi as f64 / 1e6,
                min_text_px * f as f32
            ),
            _ => String::new(),
        }
    )
}
