//! `edgewatch record`: a replay file from a camera or from still images.

use std::path::PathBuf;
use std::process::ExitCode;

use super::EXIT_CONFIG;

#[derive(clap::Args)]
pub struct RecordArgs {
    /// Camera to record from (/dev/videoN or /dev/v4l/by-id/...).
    #[arg(long, required_unless_present = "images", conflicts_with = "images")]
    pub device: Option<PathBuf>,
    /// Still images to turn into a stream instead (all one size).
    #[arg(long, num_args = 1..)]
    pub images: Vec<PathBuf>,
    /// Pixel format: auto, mjpeg, yuyv, grey, rgb3 (images: default yuyv).
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Frame width to ask the camera for.
    #[arg(long, default_value_t = 1920)]
    pub width: u32,
    /// Frame height to ask the camera for.
    #[arg(long, default_value_t = 1080)]
    pub height: u32,
    /// Frame rate (camera: asked for; images: spacing of the frames).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Frames to record from the camera.
    #[arg(long, default_value_t = 100)]
    pub frames: u64,
    /// The replay file to write.
    #[arg(long, short)]
    pub out: PathBuf,
}

/// Records a replay file from a camera or from still images.
pub fn record(args: RecordArgs) -> ExitCode {
    use crate::source::camera::FormatChoice;
    use crate::source::pixels::PixelFormat;
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
        return match crate::source::record::from_images(&args.images, format, fps, &args.out) {
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
fn record_device(args: RecordArgs, format: crate::source::camera::FormatChoice) -> ExitCode {
    let cfg = crate::source::camera::CameraConfig {
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
        stream: crate::source::stream_keys::StreamKeys::default(),
    };
    let mut opener = crate::source::camera::V4l2Opener::new(&cfg);
    match crate::source::record::from_device(&mut opener, args.frames, &args.out) {
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
fn record_device(_: RecordArgs, _: crate::source::camera::FormatChoice) -> ExitCode {
    eprintln!(
        "edgewatch: built without camera support (cargo feature `camera`); only --images works"
    );
    ExitCode::FAILURE
}
