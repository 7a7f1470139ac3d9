//! V4L2 cameras: negotiation, memory-mapped streaming, device listing.
//!
//! What can be checked without a camera (config, format choice, the
//! streaming loop through replay files) is tested here and in
//! `tests/it/camera_replay.rs`; the ioctls themselves need a device.

use crate::base::issue::Issue;
use std::path::PathBuf;

use serde::Deserialize;

use super::pixels::PixelFormat;

/// `format` in a camera source: one format, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatChoice {
    /// MJPEG for frames over 640×480 (USB 2 cannot carry them raw at
    /// speed), else YUYV; then RGB3, then GREY.
    #[default]
    Auto,
    /// Motion JPEG.
    Mjpeg,
    /// YUYV 4:2:2.
    Yuyv,
    /// 8-bit grey.
    Grey,
    /// Packed RGB.
    Rgb3,
}

impl FormatChoice {
    /// The formats to try, best first, for a frame of this size.
    pub fn preference(self, width: u32, height: u32) -> Vec<PixelFormat> {
        match self {
            FormatChoice::Auto if width as u64 * height as u64 > 640 * 480 => vec![
                PixelFormat::Mjpeg,
                PixelFormat::Yuyv,
                PixelFormat::Rgb3,
                PixelFormat::Grey,
            ],
            FormatChoice::Auto => vec![
                PixelFormat::Yuyv,
                PixelFormat::Mjpeg,
                PixelFormat::Rgb3,
                PixelFormat::Grey,
            ],
            FormatChoice::Mjpeg => vec![PixelFormat::Mjpeg],
            FormatChoice::Yuyv => vec![PixelFormat::Yuyv],
            FormatChoice::Grey => vec![PixelFormat::Grey],
            FormatChoice::Rgb3 => vec![PixelFormat::Rgb3],
        }
    }
}

impl std::str::FromStr for FormatChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<FormatChoice, String> {
        match s {
            "auto" => Ok(FormatChoice::Auto),
            "mjpeg" => Ok(FormatChoice::Mjpeg),
            "yuyv" => Ok(FormatChoice::Yuyv),
            "grey" => Ok(FormatChoice::Grey),
            "rgb3" => Ok(FormatChoice::Rgb3),
            other => Err(format!(
                "{other:?} is not one of auto, mjpeg, yuyv, grey, rgb3"
            )),
        }
    }
}

/// `[[source]] kind = "camera"`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Source name (topic segment).
    pub name: String,
    /// `/dev/videoN`, or better a `/dev/v4l/by-id/…` link, which names the
    /// same camera whichever port it is plugged into.
    pub device: PathBuf,
    /// Pixel format to ask for.
    #[serde(default)]
    pub format: FormatChoice,
    /// Frame width to ask for.
    #[serde(default = "d_width")]
    pub width: u32,
    /// Frame height to ask for.
    #[serde(default = "d_height")]
    pub height: u32,
    /// Frame rate asked of the camera, and the cap on inference.
    #[serde(default)]
    pub fps: Option<f64>,
    /// Take one frame in this many.
    #[serde(default = "d_every_nth")]
    pub every_nth: u32,
    /// Memory-mapped buffers queued in the driver.
    #[serde(default = "d_buffers")]
    pub buffers: u32,
    /// A camera that delivers nothing for this long is treated as unplugged
    /// and reopened.
    #[serde(default = "d_frame_timeout")]
    pub frame_timeout_s: u64,
    /// Longest wait between reconnect attempts.
    #[serde(default = "d_reconnect_max")]
    pub reconnect_max_s: u64,
    /// Events, motion, zones, masks and snapshots (`stream_keys`).
    #[serde(flatten)]
    pub stream: crate::source::stream_keys::StreamKeys,
}

fn d_width() -> u32 {
    1920
}
fn d_height() -> u32 {
    1080
}
fn d_every_nth() -> u32 {
    1
}
fn d_buffers() -> u32 {
    4
}
fn d_frame_timeout() -> u64 {
    5
}
fn d_reconnect_max() -> u64 {
    10
}

impl CameraConfig {
    pub(crate) fn resolve_paths(&mut self, _resolve: &dyn Fn(&mut PathBuf)) {
        // Device paths are absolute by nature; nothing is relative to the config.
    }

    /// Problems, keyed within the source.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        if !self.device.is_absolute() {
            out.push(Issue::new(
                "device",
                format!(
                    "{} is not an absolute path; use /dev/videoN or /dev/v4l/by-id/… (`edgewatch cameras` lists them)",
                    self.device.display()
                ),
            ));
        }
        if self.width == 0 || self.height == 0 {
            out.push(Issue::new("width", "width and height must be above 0"));
        }
        if let Some(fps) = self.fps {
            if !(fps > 0.0 && fps.is_finite()) {
                out.push(Issue::new("fps", format!("{fps} is not a positive rate")));
            }
        }
        if self.every_nth == 0 {
            out.push(Issue::new("every_nth", "must be at least 1"));
        }
        if !(2..=32).contains(&self.buffers) {
            out.push(Issue::new(
                "buffers",
                format!("{} is outside 2..=32", self.buffers),
            ));
        }
        if self.frame_timeout_s == 0 {
            out.push(Issue::new("frame_timeout_s", "must be at least 1 second"));
        }
        if self.reconnect_max_s == 0 {
            out.push(Issue::new("reconnect_max_s", "must be at least 1 second"));
        }
        out
    }

    /// Bytes the stream holds outside the frame pool: the driver's mapped
    /// buffers, sized for the largest raw format at the asked size.
    pub fn mapped_bytes(&self) -> u64 {
        self.buffers as u64 * self.width as u64 * self.height as u64 * 3
    }
}

#[cfg(feature = "camera")]
pub use v4l2::{list, V4l2Opener};

#[cfg(feature = "camera")]
mod v4l2 {
    use std::io;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use v4l::buffer::Type;
    use v4l::capability::Flags;
    use v4l::frameinterval::FrameIntervalEnum;
    use v4l::framesize::FrameSizeEnum;
    use v4l::io::mmap::Stream as MmapStream;
    use v4l::io::traits::CaptureStream;
    use v4l::video::capture::Parameters;
    use v4l::video::Capture as _;
    use v4l::{Device, FourCC};

    use super::super::pixels::PixelFormat;
    use super::super::stream::{Capture, CaptureError, Granted, Open, RawFrame};
    use super::CameraConfig;

    /// Opens a V4L2 camera as its config says.
    pub struct V4l2Opener {
        cfg: CameraConfig,
    }

    impl V4l2Opener {
        /// An opener for `cfg`.
        pub fn new(cfg: &CameraConfig) -> V4l2Opener {
            V4l2Opener { cfg: cfg.clone() }
        }
    }

    impl Open for V4l2Opener {
        fn what(&self) -> String {
            self.cfg.device.display().to_string()
        }

        fn open(&mut self) -> Result<Box<dyn Capture>, CaptureError> {
            let what = self.what();
            let open_err = |e: io::Error| CaptureError::Open {
                what: what.clone(),
                reason: e.to_string(),
            };
            let unusable = |reason: String| CaptureError::Unusable {
                what: what.clone(),
                reason,
            };
            let dev = Device::with_path(&self.cfg.device).map_err(open_err)?;
            let caps = dev.query_caps().map_err(open_err)?;
            if !caps.capabilities.contains(Flags::VIDEO_CAPTURE)
                || !caps.capabilities.contains(Flags::STREAMING)
            {
                return Err(unusable(format!(
                    "{} ({}) is not a streaming capture device; `edgewatch cameras` lists those that are",
                    caps.card, caps.driver
                )));
            }
            let offered: Vec<[u8; 4]> = dev
                .enum_formats()
                .map_err(open_err)?
                .iter()
                .map(|d| d.fourcc.repr)
                .collect();
            let wanted = self.cfg.format.preference(self.cfg.width, self.cfg.height);
            let Some(format) = wanted.iter().copied().find(|f| {
                offered
                    .iter()
                    .any(|o| PixelFormat::from_fourcc(*o) == Some(*f))
            }) else {
                return Err(unusable(format!(
                    "offers {}, none of {} asked for; set `format` to one it offers",
                    fourccs(&offered),
                    wanted
                        .iter()
                        .map(|f| f.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            let code = offered
                .iter()
                .find(|o| PixelFormat::from_fourcc(**o) == Some(format))
                .copied()
                .unwrap_or(format.fourcc());
            let mut fmt = dev.format().map_err(open_err)?;
            fmt.width = self.cfg.width;
            fmt.height = self.cfg.height;
            fmt.fourcc = FourCC::new(&code);
            let fmt = dev.set_format(&fmt).map_err(open_err)?;
            let Some(granted_format) = PixelFormat::from_fourcc(fmt.fourcc.repr) else {
                return Err(unusable(format!(
                    "granted {} instead of {format}",
                    fourccs(&[fmt.fourcc.repr])
                )));
            };
            let mut fps = None;
            if let Some(want) = self.cfg.fps {
                // Cameras take whole rates; the inference cap keeps the exact one.
                let params = Parameters::with_fps(want.ceil().max(1.0) as u32);
                if let Ok(p) = dev.set_params(&params) {
                    fps = rate(p.interval.numerator, p.interval.denominator);
                }
            } else if let Ok(p) = dev.params() {
                fps = rate(p.interval.numerator, p.interval.denominator);
            }
            let granted = Granted {
                format: granted_format,
                width: fmt.width,
                height: fmt.height,
                fps,
            };
            let stream = MmapStream::with_buffers(&dev, Type::VideoCapture, self.cfg.buffers)
                .map_err(open_err)?;
            let mut stream = stream;
            stream.set_timeout(Duration::from_secs(self.cfg.frame_timeout_s));
            let row = granted_format.frame_bytes(fmt.width, 1).map(|b| b as u32);
            Ok(Box::new(V4l2Capture {
                what,
                granted,
                stride: fmt.stride,
                row,
                packed: Vec::new(),
                stream,
                _dev: dev,
                timeout: self.cfg.frame_timeout_s,
            }))
        }
    }

    struct V4l2Capture {
        what: String,
        granted: Granted,
        /// Bytes per line the driver uses (may include padding).
        stride: u32,
        /// Bytes per line without padding (raw formats).
        row: Option<u32>,
        /// Rows with the padding removed, when there is padding.
        packed: Vec<u8>,
        stream: MmapStream<'static>,
        _dev: Device,
        timeout: u64,
    }

    impl Capture for V4l2Capture {
        fn granted(&self) -> Granted {
            self.granted
        }

        fn next_frame(&mut self) -> Result<RawFrame<'_>, CaptureError> {
            let (buf, meta) = match CaptureStream::next(&mut self.stream) {
                Ok(x) => x,
                Err(e) => {
                    let reason = if e.kind() == io::ErrorKind::TimedOut {
                        format!("no frame for {} s", self.timeout)
                    } else {
                        e.to_string()
                    };
                    return Err(CaptureError::Lost {
                        what: self.what.clone(),
                        reason,
                    });
                }
            };
            let used = (meta.bytesused as usize).min(buf.len());
            let data = if used == 0 { buf } else { &buf[..used] };
            match self.row {
                Some(row) if self.stride > row => {
                    self.packed.clear();
                    for line in data
                        .chunks(self.stride as usize)
                        .take(self.granted.height as usize)
                    {
                        self.packed
                            .extend_from_slice(&line[..(row as usize).min(line.len())]);
                    }
                    Ok(RawFrame { data: &self.packed })
                }
                _ => Ok(RawFrame { data }),
            }
        }
    }

    fn rate(num: u32, den: u32) -> Option<f64> {
        (num > 0 && den > 0).then(|| den as f64 / num as f64)
    }

    /// A rate as cameras state them: whole rates bare, others (7.5, 0.5) with
    /// their fraction.
    fn rate_text(r: f64) -> String {
        if (r - r.round()).abs() < 0.005 {
            format!("{r:.0}")
        } else {
            format!("{r:.1}")
        }
    }

    fn fourccs(codes: &[[u8; 4]]) -> String {
        codes
            .iter()
            .map(|c| String::from_utf8_lossy(c).trim().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `/dev/v4l/by-id` links pointing at `dev`.
    fn by_id(dev: &Path) -> Vec<PathBuf> {
        let Ok(target) = dev.canonicalize() else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir("/dev/v4l/by-id") else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.canonicalize().ok().as_deref() == Some(target.as_path()))
            .collect();
        out.sort();
        out
    }

    /// A report of every V4L2 device: name, stable paths, and for capture
    /// devices each format with its sizes and rates.
    pub fn list() -> String {
        let mut nodes = v4l::context::enum_devices();
        nodes.sort_by_key(|n| n.index());
        if nodes.is_empty() {
            return "no V4L2 devices found (no /dev/video*); check the camera is plugged in and its driver loaded (dmesg)\n".into();
        }
        let mut out = String::new();
        for node in nodes {
            let path = node.path().to_path_buf();
            out.push_str(&format!("{}", path.display()));
            for link in by_id(&path) {
                out.push_str(&format!("  ({})", link.display()));
            }
            out.push('\n');
            let dev = match Device::with_path(&path) {
                Ok(d) => d,
                Err(e) => {
                    out.push_str(&format!(
                        "  cannot open: {e} (permissions? add the user to the video group)\n"
                    ));
                    continue;
                }
            };
            let caps = match dev.query_caps() {
                Ok(c) => c,
                Err(e) => {
                    out.push_str(&format!("  cannot query: {e}\n"));
                    continue;
                }
            };
            out.push_str(&format!(
                "  {} [{}, {}]\n",
                caps.card, caps.driver, caps.bus
            ));
            if !caps.capabilities.contains(Flags::VIDEO_CAPTURE) {
                out.push_str("  not a capture device (metadata or output node)\n");
                continue;
            }
            for desc in dev.enum_formats().unwrap_or_default() {
                let usable = if PixelFormat::from_fourcc(desc.fourcc.repr).is_some() {
                    ""
                } else {
                    " (not supported by edgewatch)"
                };
                out.push_str(&format!(
                    "  {} {}{usable}\n",
                    fourccs(&[desc.fourcc.repr]),
                    desc.description
                ));
                for size in dev.enum_framesizes(desc.fourcc).unwrap_or_default() {
                    match size.size {
                        FrameSizeEnum::Discrete(d) => {
                            let rates: Vec<String> = dev
                                .enum_frameintervals(desc.fourcc, d.width, d.height)
                                .unwrap_or_default()
                                .into_iter()
                                .filter_map(|i| match i.interval {
                                    FrameIntervalEnum::Discrete(f) => {
                                        rate(f.numerator, f.denominator).map(rate_text)
                                    }
                                    FrameIntervalEnum::Stepwise(s) => Some(format!(
                                        "{}-{}",
                                        rate_text(
                                            rate(s.max.numerator, s.max.denominator).unwrap_or(0.0)
                                        ),
                                        rate_text(
                                            rate(s.min.numerator, s.min.denominator).unwrap_or(0.0)
                                        )
                                    )),
                                })
                                .collect();
                            out.push_str(&format!(
                                "    {}x{} @ {} fps\n",
                                d.width,
                                d.height,
                                rates.join(", ")
                            ));
                        }
                        FrameSizeEnum::Stepwise(s) => out.push_str(&format!(
                            "    {}x{} to {}x{}\n",
                            s.min_width, s.min_height, s.max_width, s.max_height
                        )),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> Result<CameraConfig, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn defaults_and_validation() {
        let c = config("name = \"cam0\"\ndevice = \"/dev/video0\"").unwrap();
        assert_eq!((c.width, c.height, c.buffers), (1920, 1080, 4));
        assert_eq!(c.format, FormatChoice::Auto);
        assert!(c.validate().is_empty());
        let c = config("name = \"c\"\ndevice = \"video0\"\nfps = 0\nevery_nth = 0\nbuffers = 1")
            .unwrap();
        let keys: Vec<String> = c.validate().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["device", "fps", "every_nth", "buffers"]);
        let e = config("name = \"c\"\ndevice = \"/dev/video0\"\nformat = \"h264\"").unwrap_err();
        assert!(e.to_string().contains("h264"), "{e}");
    }

    #[test]
    fn auto_prefers_mjpeg_for_large_frames_and_yuyv_for_small() {
        assert_eq!(
            FormatChoice::Auto.preference(1920, 1080)[0],
            PixelFormat::Mjpeg
        );
        assert_eq!(
            FormatChoice::Auto.preference(640, 480)[0],
            PixelFormat::Yuyv
        );
        assert_eq!(
            FormatChoice::Grey.preference(1920, 1080),
            [PixelFormat::Grey]
        );
    }

    #[cfg(feature = "camera")]
    #[test]
    fn a_missing_device_is_an_open_error_to_retry() {
        use super::super::stream::{CaptureError, Open};
        let c =
            config("name = \"c\"\ndevice = \"/dev/v4l/by-id/usb-nothing-video-index0\"").unwrap();
        let e = V4l2Opener::new(&c).open().err().unwrap();
        assert!(matches!(e, CaptureError::Open { .. }), "{e}");
        assert!(e.to_string().contains("usb-nothing"), "{e}");
    }

    #[cfg(feature = "camera")]
    #[test]
    fn a_file_that_is_no_camera_is_refused_with_its_path() {
        use super::super::stream::{CaptureError, Open};
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("video9");
        std::fs::write(&fake, b"").unwrap();
        let mut c = config("name = \"c\"\ndevice = \"/dev/video0\"").unwrap();
        c.device = fake;
        let e = V4l2Opener::new(&c).open().err().unwrap();
        // ENOTTY from the first ioctl: retried, as a device mid-replug can do that.
        assert!(matches!(e, CaptureError::Open { .. }), "{e}");
        assert!(e.to_string().contains("video9"), "{e}");
    }
}
