//! Replay files: raw camera frames recorded to disk (`edgewatch record`),
//! played back through the same conversion, pacing and reconnect code as a
//! live camera. They test the camera path without hardware and reproduce a
//! site's problem on a desk.
//!
//! Format (little-endian): the 8-byte magic `EWRAW1\0\0`, the FourCC, width,
//! height and the recorded rate in millihertz (u32 each); then per frame its
//! time since the first frame in microseconds (u64), its length (u32) and
//! its bytes, exactly as the device delivered them.

use crate::base::issue::Issue;
use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::pixels::PixelFormat;
use super::stream::{Capture, CaptureError, Granted, Open, RawFrame};

const MAGIC: [u8; 8] = *b"EWRAW1\0\0";
const HEADER_BYTES: u64 = 8 + 4 + 4 * 3;
/// Longest pause replay keeps between two frames: a recording with a gap
/// (a camera that stalled) still plays, and stopping stays prompt.
const MAX_GAP: Duration = Duration::from_secs(2);
/// Largest frame a replay file may hold (a 4K RGB frame is 24 MiB).
const MAX_FRAME_BYTES: u32 = 64 << 20;

/// `[[source]] kind = "replay"`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// Source name (topic segment).
    pub name: String,
    /// The replay file.
    pub path: PathBuf,
    /// Inference rate cap, as for a camera.
    #[serde(default)]
    pub fps: Option<f64>,
    /// Take one frame in this many.
    #[serde(default = "d_every_nth")]
    pub every_nth: u32,
    /// Start again at the end instead of stopping.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Play at the recorded timing (as the camera delivered); `false` plays
    /// as fast as frames are read.
    #[serde(default = "d_realtime")]
    pub realtime: bool,
    /// Events, motion, zones, masks and snapshots (`stream_keys`).
    #[serde(flatten)]
    pub stream: crate::source::stream_keys::StreamKeys,
}

fn d_every_nth() -> u32 {
    1
}
fn d_realtime() -> bool {
    true
}

impl ReplayConfig {
    pub(crate) fn resolve_paths(&mut self, resolve: &dyn Fn(&mut PathBuf)) {
        resolve(&mut self.path);
    }

    /// Problems, keyed within the source.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        if self.every_nth == 0 {
            out.push(Issue::new("every_nth", "must be at least 1"));
        }
        if let Some(fps) = self.fps {
            if !(fps > 0.0 && fps.is_finite()) {
                out.push(Issue::new("fps", format!("{fps} is not a positive rate")));
            }
        }
        out
    }
}

/// The header of a replay file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayHeader {
    /// Pixel format of every frame.
    pub format: PixelFormat,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Recorded frame rate, when known.
    pub fps: Option<f64>,
}

/// Writes a replay file.
pub struct ReplayWriter {
    out: BufWriter<File>,
    first: Option<Instant>,
    header: ReplayHeader,
}

impl ReplayWriter {
    /// Creates `path` and writes the header.
    pub fn create(path: &Path, header: ReplayHeader) -> std::io::Result<ReplayWriter> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(&MAGIC)?;
        out.write_all(&header.format.fourcc())?;
        for v in [
            header.width,
            header.height,
            header.fps.map(|f| (f * 1000.0).round() as u32).unwrap_or(0),
        ] {
            out.write_all(&v.to_le_bytes())?;
        }
        Ok(ReplayWriter {
            out,
            first: None,
            header,
        })
    }

    /// Appends a frame captured now.
    pub fn push(&mut self, data: &[u8]) -> std::io::Result<()> {
        let first = *self.first.get_or_insert_with(Instant::now);
        self.push_at(first.elapsed(), data)
    }

    /// Appends a frame at `at` after the first.
    pub fn push_at(&mut self, at: Duration, data: &[u8]) -> std::io::Result<()> {
        if let Some(want) = self
            .header
            .format
            .frame_bytes(self.header.width, self.header.height)
        {
            if data.len() != want {
                return Err(std::io::Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} frame of {} bytes, {want} expected for {}x{}",
                        self.header.format,
                        data.len(),
                        self.header.width,
                        self.header.height
                    ),
                ));
            }
        }
        self.out.write_all(&(at.as_micros() as u64).to_le_bytes())?;
        self.out.write_all(&(data.len() as u32).to_le_bytes())?;
        self.out.write_all(data)
    }

    /// Flushes and syncs the file.
    pub fn finish(self) -> std::io::Result<()> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

/// Opens a replay file as if it were a camera.
pub struct ReplayOpener {
    path: PathBuf,
    looping: bool,
    realtime: bool,
    fail_every: Option<u64>,
}

impl ReplayOpener {
    /// Plays `cfg.path`.
    pub fn new(cfg: &ReplayConfig) -> ReplayOpener {
        ReplayOpener {
            path: cfg.path.clone(),
            looping: cfg.looping,
            realtime: cfg.realtime,
            fail_every: None,
        }
    }

    /// Fault injection for tests: each opened stream is lost (as an unplugged
    /// camera) after `n` frames.
    pub fn fail_every(mut self, n: u64) -> ReplayOpener {
        self.fail_every = Some(n);
        self
    }
}

impl Open for ReplayOpener {
    fn what(&self) -> String {
        format!("replay {}", self.path.display())
    }

    fn open(&mut self) -> Result<Box<dyn Capture>, CaptureError> {
        let (header, file) = read_header(&self.path)?;
        Ok(Box::new(ReplayCapture {
            what: self.what(),
            header,
            file,
            buf: Vec::new(),
            looping: self.looping,
            realtime: self.realtime,
            fail_every: self.fail_every,
            frames: 0,
            clock: None,
            last_at: Duration::ZERO,
        }))
    }
}

/// Reads and checks a replay file's header.
pub fn read_header(path: &Path) -> Result<(ReplayHeader, BufReader<File>), CaptureError> {
    let what = format!("replay {}", path.display());
    let file = File::open(path).map_err(|e| CaptureError::Open {
        what: what.clone(),
        reason: e.to_string(),
    })?;
    let mut file = BufReader::new(file);
    let mut head = [0u8; HEADER_BYTES as usize];
    let unusable = |reason: String| CaptureError::Unusable {
        what: what.clone(),
        reason,
    };
    file.read_exact(&mut head).map_err(|e| {
        unusable(format!(
            "not a replay file ({e}); make one with `edgewatch record`"
        ))
    })?;
    if head[..8] != MAGIC {
        return Err(unusable(
            "not a replay file (bad magic); make one with `edgewatch record`".into(),
        ));
    }
    let code: [u8; 4] = head[8..12].try_into().expect("4 bytes");
    let format = PixelFormat::from_fourcc(code).ok_or_else(|| {
        unusable(format!(
            "pixel format {:?} is not one edgewatch converts (mjpeg, yuyv, grey, rgb3)",
            String::from_utf8_lossy(&code)
        ))
    })?;
    let word = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
    let (width, height, milli) = (word(12), word(16), word(20));
    if width == 0 || height == 0 {
        return Err(unusable(format!("frame size {width}x{height} is empty")));
    }
    Ok((
        ReplayHeader {
            format,
            width,
            height,
            fps: (milli > 0).then(|| milli as f64 / 1000.0),
        },
        file,
    ))
}

struct ReplayCapture {
    what: String,
    header: ReplayHeader,
    file: BufReader<File>,
    buf: Vec<u8>,
    looping: bool,
    realtime: bool,
    fail_every: Option<u64>,
    frames: u64,
    /// When the previous frame was due (realtime playback).
    clock: Option<Instant>,
    last_at: Duration,
}

impl ReplayCapture {
    /// The next frame's time and length, or `None` at the end.
    fn frame_head(&mut self) -> Result<Option<(Duration, u32)>, CaptureError> {
        let mut head = [0u8; 12];
        match self.file.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(self.lost(e.to_string())),
        }
        let at = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(head[8..].try_into().expect("4 bytes"));
        Ok(Some((Duration::from_micros(at), len)))
    }

    fn lost(&self, reason: String) -> CaptureError {
        CaptureError::Lost {
            what: self.what.clone(),
            reason,
        }
    }
}

impl Capture for ReplayCapture {
    fn granted(&self) -> Granted {
        Granted {
            format: self.header.format,
            width: self.header.width,
            height: self.header.height,
            fps: self.header.fps,
        }
    }

    fn next_frame(&mut self) -> Result<RawFrame<'_>, CaptureError> {
        if let Some(n) = self.fail_every {
            if self.frames >= n {
                return Err(self.lost("injected fault (test)".into()));
            }
        }
        let (at, len) = match self.frame_head()? {
            Some(h) => h,
            None if self.looping && self.frames > 0 => {
                self.file
                    .seek(SeekFrom::Start(HEADER_BYTES))
                    .map_err(|e| self.lost(e.to_string()))?;
                self.clock = None;
                self.last_at = Duration::ZERO;
                self.frame_head()?
                    .ok_or_else(|| self.lost("file shrank while playing".into()))?
            }
            None => {
                return Err(CaptureError::Ended {
                    what: self.what.clone(),
                })
            }
        };
        if len > MAX_FRAME_BYTES {
            return Err(CaptureError::Unusable {
                what: self.what.clone(),
                reason: format!(
                    "frame {} claims {len} bytes; the file is corrupt",
                    self.frames
                ),
            });
        }
        self.buf.resize(len as usize, 0);
        self.file
            .read_exact(&mut self.buf)
            .map_err(|e| self.lost(format!("frame {} is cut short ({e})", self.frames)))?;
        if self.realtime {
            let gap = at.saturating_sub(self.last_at).min(MAX_GAP);
            let now = Instant::now();
            let due = self.clock.map(|prev| prev + gap).unwrap_or(now);
            if due > now {
                std::thread::sleep(due - now);
            }
            self.clock = Some(due);
        }
        self.last_at = at;
        self.frames += 1;
        Ok(RawFrame { data: &self.buf })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ReplayHeader {
        ReplayHeader {
            format: PixelFormat::Grey,
            width: 4,
            height: 2,
            fps: Some(30.0),
        }
    }

    fn write(path: &Path, frames: &[(u64, u8)]) {
        let mut w = ReplayWriter::create(path, header()).unwrap();
        for (ms, v) in frames {
            w.push_at(Duration::from_millis(*ms), &[*v; 8]).unwrap();
        }
        w.finish().unwrap();
    }

    fn config(path: &Path) -> ReplayConfig {
        ReplayConfig {
            name: "r".into(),
            path: path.into(),
            fps: None,
            every_nth: 1,
            looping: false,
            realtime: true,
            stream: crate::source::stream_keys::StreamKeys::default(),
        }
    }

    #[test]
    fn plays_frames_at_their_recorded_times_then_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ewraw");
        write(&path, &[(0, 1), (100, 2), (200, 3)]);
        let mut cap = ReplayOpener::new(&config(&path)).open().unwrap();
        assert_eq!(cap.granted().fps, Some(30.0));
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            match cap.next_frame() {
                Ok(f) => seen.push(f.data[0]),
                Err(CaptureError::Ended { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(seen, [1, 2, 3]);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(195), "{took:?}");
    }

    #[test]
    fn loops_and_shortens_long_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ewraw");
        write(&path, &[(0, 1), (60_000, 2)]);
        let mut cfg = config(&path);
        cfg.looping = true;
        let mut cap = ReplayOpener::new(&cfg).open().unwrap();
        let start = Instant::now();
        let seen: Vec<u8> = (0..4).map(|_| cap.next_frame().unwrap().data[0]).collect();
        assert_eq!(seen, [1, 2, 1, 2]);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(6),
            "gaps capped at 2 s: {took:?}"
        );
    }

    #[test]
    fn bad_files_are_named_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ewraw");
        std::fs::write(&path, b"hello").unwrap();
        let e = ReplayOpener::new(&config(&path)).open().err().unwrap();
        assert!(matches!(e, CaptureError::Unusable { .. }));
        assert!(e.to_string().contains("edgewatch record"), "{e}");
        let missing = dir.path().join("none.ewraw");
        let e = ReplayOpener::new(&config(&missing)).open().err().unwrap();
        assert!(matches!(e, CaptureError::Open { .. }), "{e}");
    }

    #[test]
    fn a_cut_file_is_a_lost_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ewraw");
        write(&path, &[(0, 1), (10, 2)]);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let mut cap = ReplayOpener::new(&config(&path)).open().unwrap();
        cap.next_frame().unwrap();
        let e = cap.next_frame().err().unwrap();
        assert!(e.to_string().contains("cut short"), "{e}");
    }

    #[test]
    fn writer_refuses_frames_of_the_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ReplayWriter::create(&dir.path().join("a.ewraw"), header()).unwrap();
        let e = w.push(&[0; 7]).unwrap_err();
        assert!(e.to_string().contains("8 expected"), "{e}");
    }
}
