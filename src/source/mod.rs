//! Frame sources. Each `[[source]]` table becomes one source.

use crate::base::issue::Issue;
pub(crate) mod camera;
pub(crate) mod folder;
pub(crate) mod latest;
pub(crate) mod motion;
pub(crate) mod pixels;
pub(crate) mod record;
pub(crate) mod replay;
pub(crate) mod rtsp;
#[cfg(feature = "rtsp")]
pub(crate) mod rtsp_child;
pub mod stream;
pub(crate) mod stream_keys;

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;

use camera::CameraConfig;
use folder::{FolderConfig, FolderJob};
use latest::FrameTicket;
use rtsp::RtspConfig;

pub use latest::{FramePool, LatestFrame};
pub use pixels::{without_huffman_tables, Converter, PixelFormat};
pub use record::encode_frame;
pub use replay::{ReplayConfig, ReplayHeader, ReplayOpener, ReplayWriter};
pub use stream_keys::StreamKeys;

/// Pooled frames a stream holds beyond one per worker: the slot and the
/// frame being converted.
pub const STREAM_SPARE_FRAMES: u64 = 2;

/// What a `[[source]]` table builds: how its frames reach the workers.
pub enum Built {
    /// A watched folder: each file is one job, straight to the workers.
    Folder(FolderConfig),
    /// A stream (camera, RTSP, replay): opened, read and reopened by
    /// [`stream::run`], its newest frame in a slot.
    Stream(Box<StreamPlan>),
}

/// A stream source, ready to run: what opens it and how it is paced.
pub struct StreamPlan {
    /// Opens the device, the RTSP reader or the file, again after a failure.
    pub opener: Box<dyn stream::Open>,
    /// Pace, reconnect delays, size cap and motion gate.
    pub settings: stream::StreamSettings,
    /// How its detections become events.
    pub scene: crate::events::config::SceneConfig,
    /// With no frame inferred for this long, its objects end.
    pub silent_after: std::time::Duration,
}

/// Why a source could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// This binary lacks the cargo feature the source kind needs.
    #[error("source {name}: this edgewatch was built without {what} (cargo feature `{feature}`); rebuild with it{hint}")]
    NotBuiltIn {
        /// The source's name.
        name: String,
        /// What is missing, in words.
        what: &'static str,
        /// The cargo feature.
        feature: &'static str,
        /// What else to do.
        hint: &'static str,
    },
}

/// Work for the inference workers.
pub enum Job {
    /// A claimed file: done or failed, it moves on.
    File(FolderJob),
    /// A claim on a camera's newest frame.
    Frame(FrameTicket),
}

/// One `[[source]]` table, told apart by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// A watched folder.
    Folder(FolderConfig),
    /// A V4L2 camera.
    Camera(CameraConfig),
    /// A recorded camera stream, played back.
    Replay(ReplayConfig),
    /// An RTSP/IP camera.
    Rtsp(RtspConfig),
}

impl SourceConfig {
    /// Builds what runs this source: a folder as it is, a stream with its
    /// opener and settings. `max_pixels` is the largest frame the memory
    /// plan admits. A camera missing at start-up is not an error here: it
    /// is retried until it is plugged in.
    pub fn build(&self, max_pixels: u64) -> Result<Built, BuildError> {
        let settings = |fps: Option<f64>, every_nth: u32, reconnect_max: std::time::Duration| {
            stream::StreamSettings {
                name: self.name().to_string(),
                fps,
                every_nth,
                reconnect_min: stream::RECONNECT_MIN,
                reconnect_max,
                max_pixels,
                motion: self.motion_settings(),
            }
        };
        let secs = std::time::Duration::from_secs;
        match self {
            SourceConfig::Folder(f) => Ok(Built::Folder(f.clone())),
            SourceConfig::Camera(c) => {
                #[cfg(feature = "camera")]
                {
                    Ok(Built::Stream(Box::new(StreamPlan {
                        opener: Box::new(camera::V4l2Opener::new(c)),
                        settings: settings(c.fps, c.every_nth, secs(c.reconnect_max_s)),
                        scene: c.stream.scene(),
                        silent_after: self.silent_after(),
                    })))
                }
                #[cfg(not(feature = "camera"))]
                {
                    let _ = (c, settings, secs);
                    Err(BuildError::NotBuiltIn {
                        name: self.name().to_string(),
                        what: "camera support",
                        feature: "camera",
                        hint: ", or use a replay source",
                    })
                }
            }
            SourceConfig::Rtsp(r) => {
                #[cfg(feature = "rtsp")]
                {
                    let mut settings = settings(r.fps, r.every_nth, secs(r.reconnect_max_s));
                    settings.max_pixels = (r.width as u64 * r.height as u64).min(max_pixels);
                    // `/proc/self/exe` still runs this build after a package
                    // upgrade has replaced the file on disk.
                    let opener = rtsp_child::ChildOpener::new(r, PathBuf::from("/proc/self/exe"));
                    Ok(Built::Stream(Box::new(StreamPlan {
                        opener: Box::new(opener),
                        settings,
                        scene: r.stream.scene(),
                        silent_after: self.silent_after(),
                    })))
                }
                #[cfg(not(feature = "rtsp"))]
                {
                    let _ = (r, settings, secs);
                    Err(BuildError::NotBuiltIn {
                        name: self.name().to_string(),
                        what: "RTSP support",
                        feature: "rtsp",
                        hint: "",
                    })
                }
            }
            SourceConfig::Replay(r) => Ok(Built::Stream(Box::new(StreamPlan {
                opener: Box::new(replay::ReplayOpener::new(r)),
                settings: settings(r.fps, r.every_nth, secs(10)),
                scene: r.stream.scene(),
                silent_after: self.silent_after(),
            }))),
        }
    }

    /// With no frame inferred for this long, a stream is taken as gone and
    /// its objects end: its refresh, its frame interval and the end delay,
    /// with `events.silent_grace_s` of room for a stalled camera.
    pub fn silent_after(&self) -> std::time::Duration {
        let (end_after, grace) = self.scene().map_or((0.0, 10.0), |s| {
            (s.events.end_after_s, s.events.silent_grace_s)
        });
        let refresh = self
            .motion_settings()
            .map_or(0.0, |m| m.refresh.as_secs_f64());
        let fps = match self {
            SourceConfig::Folder(_) => None,
            SourceConfig::Camera(c) => c.fps,
            SourceConfig::Replay(r) => r.fps,
            SourceConfig::Rtsp(r) => r.fps,
        };
        let interval = fps.map_or(0.0, |f| 1.0 / f);
        std::time::Duration::from_secs_f64(end_after + refresh + interval + grace)
    }

    /// Source name (topic segment).
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Folder(f) => &f.name,
            SourceConfig::Camera(c) => &c.name,
            SourceConfig::Replay(r) => &r.name,
            SourceConfig::Rtsp(r) => &r.name,
        }
    }

    /// Bytes a camera or replay source holds besides the frames in the
    /// workers: the newest-frame slot, the frame being converted, and the
    /// driver's mapped buffers or the decoder; with `motion = true` the
    /// motion gate and, when tiling, the tile reuse map. Folders hold no
    /// pixels.
    pub fn stream_bytes(&self, tiling: &crate::infer::tiling::TilingConfig) -> u64 {
        let (width, height) = self.frame_size();
        let events = self.scene().map_or(0, |s| s.planned_bytes());
        let motion = self.motion_settings().map_or(0, |_| {
            let reuse = if tiling.enabled() {
                crate::infer::tile_reuse::TileReuse::planned_bytes(width, height, tiling)
            } else {
                0
            };
            motion::MotionGate::planned_bytes(width, height) + reuse
        });
        self.frame_bytes() + events + motion
    }

    /// The largest frame a stream delivers, as planned (0 for folders).
    fn frame_size(&self) -> (u32, u32) {
        match self {
            SourceConfig::Folder(_) => (0, 0),
            SourceConfig::Camera(c) => (c.width, c.height),
            SourceConfig::Replay(r) => replay::read_header(&r.path)
                .map(|(h, _)| (h.width, h.height))
                .unwrap_or((0, 0)),
            SourceConfig::Rtsp(r) => (r.width, r.height),
        }
    }

    fn frame_bytes(&self) -> u64 {
        match self {
            SourceConfig::Folder(_) => 0,
            SourceConfig::Camera(c) => {
                STREAM_SPARE_FRAMES * 3 * c.width as u64 * c.height as u64 + c.mapped_bytes()
            }
            SourceConfig::Replay(r) => replay::read_header(&r.path)
                .map(|(h, _)| {
                    let px = h.width as u64 * h.height as u64;
                    // The read buffer holds one raw frame (at most RGB).
                    STREAM_SPARE_FRAMES * 3 * px + 3 * px
                })
                .unwrap_or(0),
            SourceConfig::Rtsp(r) => {
                STREAM_SPARE_FRAMES * 3 * r.width as u64 * r.height as u64 + r.decoder_bytes()
            }
        }
    }

    /// A stream's event and motion keys; `None` for folders.
    pub fn stream_keys(&self) -> Option<&stream_keys::StreamKeys> {
        match self {
            SourceConfig::Folder(_) => None,
            SourceConfig::Camera(c) => Some(&c.stream),
            SourceConfig::Replay(r) => Some(&r.stream),
            SourceConfig::Rtsp(r) => Some(&r.stream),
        }
    }

    /// A stream's event keys; `None` for folders (a file's one message
    /// already is its event).
    pub fn scene(&self) -> Option<crate::events::config::SceneConfig> {
        self.stream_keys().map(|k| k.scene())
    }

    /// A stream's motion gate, when `motion = true`.
    pub fn motion_settings(&self) -> Option<motion::MotionSettings> {
        self.stream_keys().and_then(|k| k.motion_settings())
    }

    pub(crate) fn resolve_paths(&mut self, resolve: &dyn Fn(&mut PathBuf)) {
        match self {
            SourceConfig::Folder(f) => f.resolve_paths(resolve),
            SourceConfig::Camera(c) => c.resolve_paths(resolve),
            SourceConfig::Replay(r) => r.resolve_paths(resolve),
            SourceConfig::Rtsp(r) => r.resolve_paths(resolve),
        }
    }
}

/// Problems across all sources as (dotted key, reason): names must be unique
/// topic segments, no two folders may share a directory and no two cameras
/// a device.
pub fn validate_sources(sources: &[SourceConfig]) -> Vec<Issue> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    let mut dirs: Vec<(PathBuf, String)> = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let key = |k: &str| format!("source[{i}].{k}");
        if let Err(reason) =
            crate::base::topic::check_segment(source.name()).map_err(|e| e.to_string())
        {
            out.push(Issue::new(key("name"), reason));
        } else if !names.insert(source.name().to_string()) {
            out.push(Issue::new(
                key("name"),
                format!(
                    "{:?} is used by another source; names must be unique",
                    source.name()
                ),
            ));
        }
        match source {
            SourceConfig::Folder(f) => {
                out.extend(
                    f.validate()
                        .into_iter()
                        .map(|issue| issue.within(&format!("source[{i}]"))),
                );
                let paths = f.paths();
                for (k, dir) in [
                    ("path", paths.inbox),
                    ("done", paths.done),
                    ("failed", paths.failed),
                ] {
                    if let Some((_, other)) = dirs.iter().find(|(d, _)| *d == dir) {
                        out.push(Issue::new(
                            key(k),
                            format!("{} is already used as {other}; give each folder its own directories", dir.display()),
                        ));
                    }
                    dirs.push((dir, key(k)));
                }
            }
            SourceConfig::Camera(c) => {
                out.extend(
                    c.validate()
                        .into_iter()
                        .map(|issue| issue.within(&format!("source[{i}]"))),
                );
                if let Some((_, other)) = dirs.iter().find(|(d, _)| *d == c.device) {
                    out.push(Issue::new(
                        key("device"),
                        format!(
                            "{} is already used by {other}; a device streams to one source",
                            c.device.display()
                        ),
                    ));
                }
                dirs.push((c.device.clone(), key("device")));
            }
            SourceConfig::Replay(r) => {
                out.extend(
                    r.validate()
                        .into_iter()
                        .map(|issue| issue.within(&format!("source[{i}]"))),
                );
            }
            SourceConfig::Rtsp(r) => {
                out.extend(
                    r.validate()
                        .into_iter()
                        .map(|issue| issue.within(&format!("source[{i}]"))),
                );
            }
        }
        if let Some(keys) = source.stream_keys() {
            out.extend(
                keys.validate()
                    .into_iter()
                    .map(|issue| issue.within(&format!("source[{i}]"))),
            );
        }
    }
    out
}
