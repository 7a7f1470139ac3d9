//! The streaming loop shared by cameras and replay files: open, read frames,
//! skip, convert into pooled buffers, hand the newest to inference at the
//! configured rate, and reopen with back-off when the device goes away.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Sender, TrySendError};

use super::latest::{CapturedFrame, FramePool, LatestFrame, Pacer};
use super::pixels::{Converter, PixelFormat};
use super::Job;
use crate::base::frame::FrameMeta;
use crate::base::heartbeats::Stage;
use crate::base::shutdown::Shutdown;

/// What a device granted: it may differ from what was asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Granted {
    /// Pixel format.
    pub format: PixelFormat,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frame rate, when the device says.
    pub fps: Option<f64>,
}

impl std::fmt::Display for Granted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}x{}", self.format, self.width, self.height)?;
        if let Some(fps) = self.fps {
            write!(f, " at {fps:.1} fps")?;
        }
        Ok(())
    }
}

/// One frame as the device delivered it, borrowed until the next read.
pub struct RawFrame<'a> {
    /// Bytes in the granted format.
    pub data: &'a [u8],
}

/// Why a stream stopped delivering.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The device cannot be opened or set up (missing, busy, unplugged).
    /// Retried with back-off.
    #[error("cannot open {what}: {reason}")]
    Open {
        /// Device or file.
        what: String,
        /// Why.
        reason: String,
    },
    /// The device went away or stopped answering mid-stream. Reopened.
    #[error("{what} lost: {reason}")]
    Lost {
        /// Device or file.
        what: String,
        /// Why (ENODEV, EIO, a timeout).
        reason: String,
    },
    /// A replay file reached its end and does not loop.
    #[error("{what} ended")]
    Ended {
        /// File.
        what: String,
    },
    /// The device works but cannot give what the config asks (format or
    /// size); retrying will not help, so the source stops.
    #[error("{what}: {reason}")]
    Unusable {
        /// Device or file.
        what: String,
        /// What to change.
        reason: String,
    },
}

/// A stream of frames from an opened device.
pub trait Capture {
    /// What the device granted.
    fn granted(&self) -> Granted;
    /// The next frame; blocks until one comes or the device is lost.
    fn next_frame(&mut self) -> Result<RawFrame<'_>, CaptureError>;
}

/// Opens (and reopens) a device.
pub trait Open: Send {
    /// The device or file, for messages.
    fn what(&self) -> String;
    /// Opens the device and starts streaming.
    fn open(&mut self) -> Result<Box<dyn Capture>, CaptureError>;
}

/// First reconnect delay of every stream source; doubled up to its
/// `reconnect_max_s`.
pub const RECONNECT_MIN: Duration = Duration::from_millis(500);

/// How a stream runs, from its source's config.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Source name.
    pub name: String,
    /// Inference rate cap.
    pub fps: Option<f64>,
    /// Take one frame in this many.
    pub every_nth: u32,
    /// First reconnect delay, doubled on every failed attempt.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// Largest frame (pixels) the memory plan admits.
    pub max_pixels: u64,
    /// Skip frames in which nothing moves.
    pub motion: Option<super::motion::MotionSettings>,
}

/// Where a stream's frames go.
pub struct FrameOutput {
    /// The newest-frame slot the workers take from.
    pub latest: Arc<LatestFrame>,
    /// The buffers frames are converted into.
    pub pool: Arc<FramePool>,
    /// The workers' queue, for tickets.
    pub tx: Sender<Job>,
}

/// How often a stream beats while it waits to reconnect.
const BEAT_EVERY: Duration = Duration::from_millis(500);

/// Streams until `stop` is set, the workers' queue closes, or a replay file
/// ends. Lost devices are reopened with back-off, forever: a camera that is
/// unplugged for a week comes back when it is plugged in. Errors only for a
/// device that can never work with this config.
pub fn run(
    open: &mut dyn Open,
    settings: &StreamSettings,
    out: &FrameOutput,
    stop: &Shutdown,
    beat: Option<&Stage>,
) -> Result<(), CaptureError> {
    let name = &settings.name;
    let counts = &out.latest.counts;
    let beat = || {
        if let Some(b) = beat {
            b.beat()
        }
    };
    let mut converter = Converter::new();
    let mut pacer = Pacer::new(settings.fps);
    let mut backoff =
        crate::base::backoff::Delay::new(settings.reconnect_min, settings.reconnect_max);
    let mut seq = 0u64;
    let mut delivered = 0u64;
    let mut lost_since: Option<(Instant, String)> = None;
    let mut opened_before = false;
    while !stop.is_stopping() {
        beat();
        let mut capture = match open.open() {
            Ok(c) => c,
            Err(e @ (CaptureError::Unusable { .. } | CaptureError::Ended { .. })) => return Err(e),
            Err(e) => {
                // Said once per reason: a camera that stays away is not
                // logged every attempt, but one whose answer changes (no
                // answer, then a refused password) is.
                let reason = e.to_string();
                let said = match &mut lost_since {
                    Some((_, said)) if *said == reason => true,
                    Some((_, said)) => {
                        *said = reason;
                        false
                    }
                    None => {
                        lost_since = Some((Instant::now(), reason));
                        false
                    }
                };
                if !said {
                    tracing::warn!(source = %name, "camera {name}: {e}; retrying, every {} s at most", settings.reconnect_max.as_secs());
                }
                stop.sleep_beating(backoff.next_delay(), BEAT_EVERY, &beat);
                continue;
            }
        };
        let granted = capture.granted();
        // A reopened device may point elsewhere: the picture starts afresh.
        let mut gate = settings.motion.clone().map(super::motion::MotionGate::new);
        let reuse = settings.motion.as_ref().map(|m| {
            Arc::new(Mutex::new(crate::infer::tile_reuse::TileReuse::new(
                m.refresh,
            )))
        });
        let pixels = granted.width as u64 * granted.height as u64;
        if pixels > settings.max_pixels {
            return Err(CaptureError::Unusable {
                what: open.what(),
                reason: format!(
                    "granted {granted}, over the memory plan's {} pixels; a camera: ask for a smaller width/height; an RTSP stream: set width/height to its size (the plan grows) or use a substream; or raise memory_budget_mb",
                    settings.max_pixels
                ),
            });
        }
        if opened_before {
            counts.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        opened_before = true;
        match lost_since.take() {
            Some((since, _)) => tracing::info!(
                source = %name,
                "camera {name}: {} back after {:.1} s: {granted}",
                open.what(),
                since.elapsed().as_secs_f64()
            ),
            None => {
                tracing::info!(source = %name, "camera {name}: {} streaming {granted}", open.what())
            }
        }
        loop {
            beat();
            if stop.is_stopping() {
                return Ok(());
            }
            let raw = match capture.next_frame() {
                Ok(raw) => raw,
                Err(CaptureError::Ended { what }) => {
                    tracing::info!(source = %name, "camera {name}: {what} ended after {delivered} frame(s)");
                    return Ok(());
                }
                Err(e @ CaptureError::Unusable { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(source = %name, "camera {name}: {e}; reconnecting");
                    lost_since = Some((Instant::now(), e.to_string()));
                    break;
                }
            };
            backoff.reset();
            let n = counts.captured.fetch_add(1, Ordering::Relaxed);
            if !n.is_multiple_of(settings.every_nth.max(1) as u64) {
                counts.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let now = Instant::now();
            // Converting costs as much as a small model: only frames that
            // will be inferred are converted, plus, while a ticket waits in
            // the queue, each newer frame so the ticket gets the newest.
            let admit = out.latest.in_flight() < out.latest.max_in_flight() && pacer.admit(now);
            if !admit && out.latest.waiting() == 0 {
                counts.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let buffer = out
                .pool
                .get()
                .or_else(|| out.latest.reclaim().map(|f| f.image));
            let Some(mut buffer) = buffer else {
                counts.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if let Err(e) = converter.convert(
                granted.format,
                granted.width,
                granted.height,
                raw.data,
                &mut buffer,
            ) {
                let bad = counts.bad.fetch_add(1, Ordering::Relaxed);
                // A flaky cable can tear every frame: say so, but not 30 times a second.
                if bad.is_power_of_two() || bad == 0 {
                    tracing::warn!(source = %name, "camera {name}: {e} ({} bad frame(s) so far)", bad + 1);
                }
                continue;
            }
            if let Some(gate) = gate.as_mut() {
                if gate.check(&buffer, now) == super::motion::Verdict::Still {
                    counts.still.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            seq += 1;
            delivered += 1;
            let captured_at = SystemTime::now();
            out.latest.put(CapturedFrame {
                image: buffer,
                meta: FrameMeta {
                    source: name.clone(),
                    seq,
                    id: crate::base::frame::frame_id(
                        name,
                        &[name.as_bytes(), &seq.to_le_bytes()],
                        captured_at,
                    ),
                    captured_at,
                    path: None,
                },
                reuse: reuse.clone(),
            });
            if admit {
                if let Some(ticket) = out.latest.ticket() {
                    match out.tx.try_send(Job::Frame(ticket)) {
                        Ok(()) => {}
                        // Files fill the queue: this frame waits in the slot.
                        Err(TrySendError::Full(_)) => {}
                        Err(TrySendError::Disconnected(_)) => return Ok(()),
                    }
                }
            }
        }
        drop(capture);
        stop.sleep_beating(backoff.next_delay(), BEAT_EVERY, &beat);
    }
    Ok(())
}
