//! Each RTSP source is read in a child process of its own: the RTSP client,
//! the depacketizer and openh264 (C++) all take bytes from a camera, and
//! the fuzzer found openh264 reading past a heap block
//! (fuzz/regressions/). In the daemon's process such a fault would take
//! every source down, and systemd would restart it into the same stream;
//! in a child it costs that source one reconnect, as Frigate keeps FFmpeg
//! outside its process. The child's memory is capped (`RLIMIT_DATA`) at
//! what the memory plan holds for the source's decoder, so a stream that
//! makes the decoder or the depacketizer grow (a 100 MB NAL unit) ends the
//! child, not the daemon's budget.
//!
//! The child is this same executable, started with the hidden subcommand
//! `rtsp-reader SOURCE`; it reads the source's config as one JSON line on stdin,
//! then answers each request byte with one picture or one error.
//!
//! Child → parent, little-endian:
//! - `F` width:u32 height:u32, then width × height × 3 bytes of RGB8;
//! - `E` kind:u8 (0 open, 1 lost, 2 unusable) length:u32, then the reason;
//!   the child exits after it.
//!
//! Parent → child: the config line, then `N` for each picture wanted.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::pixels::PixelFormat;
use super::rtsp::RtspConfig;
use super::stream::{Capture, CaptureError, Granted, Open, RawFrame};

/// The hidden subcommand that runs a reader.
pub const SUBCOMMAND: &str = "rtsp-reader";

/// Data memory a reader needs beyond its decoder: the executable's own
/// data, the network runtime and retina's buffers, measured at about
/// 20 MiB for a 1080p stream; the rest is headroom.
const READER_OVERHEAD: u64 = 48 << 20;

/// How long past its own timeouts a silent reader is given before it is
/// taken for hung and killed.
const HUNG_AFTER: Duration = Duration::from_secs(5);

/// Starts readers for one RTSP source.
pub struct ChildOpener {
    cfg: RtspConfig,
    exe: PathBuf,
}

impl ChildOpener {
    /// An opener whose readers run `exe rtsp-reader` (the daemon passes
    /// its own executable).
    pub fn new(cfg: &RtspConfig, exe: PathBuf) -> ChildOpener {
        ChildOpener {
            cfg: cfg.clone(),
            exe,
        }
    }

    /// The data-memory cap of one reader.
    pub fn memory_cap(cfg: &RtspConfig) -> u64 {
        cfg.decoder_bytes() + READER_OVERHEAD
    }
}

impl Open for ChildOpener {
    fn what(&self) -> String {
        self.cfg.url.clone()
    }

    fn open(&mut self) -> Result<Box<dyn Capture>, CaptureError> {
        let what = self.what();
        let open_err = |reason: String| CaptureError::Open {
            what: what.clone(),
            reason,
        };
        let mut cmd = Command::new(&self.exe);
        cmd.arg(SUBCOMMAND)
            .arg(&self.cfg.name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: between fork and exec only an async-signal-safe call
        // (prctl), touching no memory of the parent's.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                // A reader never outlives the thread that reads from it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            open_err(format!(
                "cannot start the RTSP reader {} ({e}); reinstall edgewatch",
                self.exe.display()
            ))
        })?;
        let (Some(mut to), Some(from)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(open_err("the RTSP reader has no pipes".into()));
        };
        let line = reader_config(&self.cfg).map_err(open_err)?;
        let mut reader = ChildCapture {
            what: what.clone(),
            child,
            to: None,
            from,
            rgb: Vec::new(),
            granted: Granted {
                format: PixelFormat::Rgb3,
                width: 0,
                height: 0,
                fps: None,
            },
            // Opening waits up to frame_timeout_s for the server and as
            // long again for the first picture.
            patience: Duration::from_secs(2 * self.cfg.frame_timeout_s) + HUNG_AFTER,
            max_pixels: self.cfg.width as u64 * self.cfg.height as u64,
            pending: false,
        };
        if writeln!(to, "{line}").is_err() {
            return Err(reader.died("open"));
        }
        reader.to = Some(to);
        reader.fetch()?;
        reader.patience = Duration::from_secs(self.cfg.frame_timeout_s) + HUNG_AFTER;
        reader.pending = true;
        Ok(Box::new(reader))
    }
}

/// What a reader is told: the connection's keys. Events, zones and
/// masks stay with the daemon, which is what uses them.
fn reader_config(cfg: &RtspConfig) -> Result<String, String> {
    let mut connection = cfg.clone();
    connection.stream = Default::default();
    serde_json::to_string(&connection)
        .map_err(|e| format!("cannot hand the reader its config ({e})"))
}

struct ChildCapture {
    what: String,
    child: Child,
    /// Always `Some` but in `drop`.
    to: Option<ChildStdin>,
    from: ChildStdout,
    rgb: Vec<u8>,
    granted: Granted,
    patience: Duration,
    max_pixels: u64,
    /// The picture read while opening is still to be handed out.
    pending: bool,
}

impl ChildCapture {
    /// Asks for one picture and reads it into `rgb`.
    fn fetch(&mut self) -> Result<(), CaptureError> {
        let asked = self.to.as_mut().map(|to| to.write_all(b"N"));
        if !matches!(asked, Some(Ok(()))) {
            return Err(self.died("read"));
        }
        let deadline = Instant::now() + self.patience;
        let mut tag = [0u8; 1];
        self.read(&mut tag, deadline)?;
        match tag[0] {
            b'F' => {
                let mut size = [0u8; 8];
                self.read(&mut size, deadline)?;
                let w = u32::from_le_bytes(size[..4].try_into().unwrap_or_default());
                let h = u32::from_le_bytes(size[4..].try_into().unwrap_or_default());
                let was = (self.granted.width, self.granted.height);
                if was.0 != 0 && (w, h) != was {
                    return Err(self.lost(format!(
                        "the picture changed from {}x{} to {w}x{h}",
                        was.0, was.1
                    )));
                }
                self.granted.width = w;
                self.granted.height = h;
                if w as u64 * h as u64 > self.max_pixels {
                    // The stream refuses this size against the plan, with
                    // the operator's choices; the pixels are never read.
                    return Ok(());
                }
                let mut rgb = std::mem::take(&mut self.rgb);
                rgb.resize(w as usize * h as usize * 3, 0);
                let read = self.read(&mut rgb, deadline);
                self.rgb = rgb;
                read
            }
            b'E' => {
                let mut head = [0u8; 5];
                self.read(&mut head, deadline)?;
                let len = u32::from_le_bytes(head[1..].try_into().unwrap_or_default()) as usize;
                let mut reason = vec![0u8; len.min(4096)];
                self.read(&mut reason, deadline)?;
                let what = self.what.clone();
                let reason = String::from_utf8_lossy(&reason).into_owned();
                Err(match head[0] {
                    0 => CaptureError::Open { what, reason },
                    2 => CaptureError::Unusable { what, reason },
                    _ => CaptureError::Lost { what, reason },
                })
            }
            other => Err(self.lost(format!(
                "the RTSP reader sent {other:#04x}, not a picture; restarting it"
            ))),
        }
    }

    /// Fills `buf` from the reader, waiting until `deadline` at most.
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), CaptureError> {
        let mut at = 0;
        while at < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.from.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd, for the duration of the call.
            let ready = unsafe { libc::poll(&mut pfd, 1, ms) };
            if ready < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(self.died("read"));
            }
            if ready == 0 {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(self.lost(format!(
                    "the RTSP reader sent nothing for {} s and was stopped",
                    self.patience.as_secs()
                )));
            }
            match self.from.read(&mut buf[at..]) {
                Ok(0) | Err(_) => return Err(self.died("read")),
                Ok(n) => at += n,
            }
        }
        Ok(())
    }

    fn lost(&self, reason: String) -> CaptureError {
        CaptureError::Lost {
            what: self.what.clone(),
            reason,
        }
    }

    /// The reader went away without saying why: how it ended.
    fn died(&mut self, during: &str) -> CaptureError {
        // It closed its pipe, so it is exiting: a short wait reaps it.
        let until = Instant::now() + Duration::from_secs(2);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
            }
        };
        self.lost(format!(
            "the RTSP reader (pid {}) {} during {during}; a new one is started for the reconnect",
            self.child.id(),
            status.map_or("vanished".into(), describe),
        ))
    }
}

/// "was killed by SIGSEGV", "exited with status 3".
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => {
            let name = match sig {
                libc::SIGSEGV => "SIGSEGV".to_string(),
                libc::SIGABRT => "SIGABRT".into(),
                libc::SIGBUS => "SIGBUS".into(),
                libc::SIGILL => "SIGILL".into(),
                libc::SIGFPE => "SIGFPE".into(),
                libc::SIGKILL => "SIGKILL".into(),
                n => format!("signal {n}"),
            };
            let hint = if sig == libc::SIGABRT {
                " (a failed allocation under its memory cap, or a corrupted heap)"
            } else {
                ""
            };
            format!("was killed by {name}{hint}")
        }
        _ => "ended".into(),
    }
}

impl Drop for ChildCapture {
    fn drop(&mut self) {
        // Closing its stdin ends a reader between pictures; one blocked on
        // the network is killed, and reaped either way.
        self.to.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Capture for ChildCapture {
    fn granted(&self) -> Granted {
        self.granted
    }

    fn next_frame(&mut self) -> Result<RawFrame<'_>, CaptureError> {
        if !std::mem::take(&mut self.pending) {
            self.fetch()?;
        }
        if self.rgb.len() != self.granted.width as usize * self.granted.height as usize * 3 {
            return Err(self.lost(format!(
                "a {}x{} picture is over this source's width x height",
                self.granted.width, self.granted.height
            )));
        }
        Ok(RawFrame { data: &self.rgb })
    }
}

/// The reader's side: `edgewatch rtsp-reader`, started by [`ChildOpener`].
/// Returns the process's exit status.
pub fn serve() -> i32 {
    // Ctrl-C in a terminal and systemd's stop reach the whole group; the
    // reader ends when the daemon closes its pipe or dies (PDEATHSIG), so
    // the daemon logs no lost camera while it stops.
    // SAFETY: setting a signal's disposition to ignore.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout().lock();
    let mut line = String::new();
    if std::io::BufRead::read_line(&mut input, &mut line).is_err() {
        return 2;
    }
    let cfg: RtspConfig = match serde_json::from_str(&line) {
        Ok(c) => c,
        Err(e) => {
            let _ = send_error(
                &mut out,
                2,
                &format!("the reader cannot read its config ({e})"),
            );
            return 2;
        }
    };
    // The reader's own lines (damaged frames) name their source.
    let _span = tracing::info_span!("reader", source = %cfg.name).entered();
    if let Err(e) = cap_data_memory(ChildOpener::memory_cap(&cfg)) {
        tracing::warn!(
            "{}: the RTSP reader cannot cap its memory ({e}); it runs without the cap",
            cfg.url
        );
    }
    let mut opener = super::rtsp::RtspOpener::new(&cfg);
    let mut capture = match opener.open() {
        Ok(c) => c,
        Err(e) => {
            let _ = send_capture_error(&mut out, e);
            return 0;
        }
    };
    let mut request = [0u8; 1];
    while input.read_exact(&mut request).is_ok() {
        let granted = capture.granted();
        let sent = match capture.next_frame() {
            Ok(frame) => send_frame(&mut out, granted, frame.data, cfg.width, cfg.height),
            Err(e) => {
                let _ = send_capture_error(&mut out, e);
                return 0;
            }
        };
        if sent.is_err() {
            return 0;
        }
    }
    0
}

/// `RLIMIT_DATA` for this process, set through the `prlimit64` system
/// call: systemd's `@system-service` filter allows it, while the unit's
/// `~@resources` denies `setrlimit`, which older C libraries still use.
fn cap_data_memory(bytes: u64) -> std::io::Result<()> {
    let lim = libc::rlimit64 {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: pid 0 is this process; `lim` lives across the call.
    let rc = unsafe { libc::prlimit64(0, libc::RLIMIT_DATA, &lim, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn send_frame(
    out: &mut impl Write,
    granted: Granted,
    rgb: &[u8],
    max_w: u32,
    max_h: u32,
) -> std::io::Result<()> {
    out.write_all(b"F")?;
    out.write_all(&granted.width.to_le_bytes())?;
    out.write_all(&granted.height.to_le_bytes())?;
    if granted.width as u64 * granted.height as u64 <= max_w as u64 * max_h as u64 {
        out.write_all(rgb)?;
    }
    out.flush()
}

fn send_capture_error(out: &mut impl Write, e: CaptureError) -> std::io::Result<()> {
    let (kind, reason) = match e {
        CaptureError::Open { reason, .. } => (0, reason),
        CaptureError::Unusable { reason, .. } => (2, reason),
        CaptureError::Lost { reason, .. } => (1, reason),
        CaptureError::Ended { what } => (1, format!("{what} ended")),
    };
    send_error(out, kind, &reason)
}

fn send_error(out: &mut impl Write, kind: u8, reason: &str) -> std::io::Result<()> {
    out.write_all(b"E")?;
    out.write_all(&[kind])?;
    out.write_all(&(reason.len() as u32).to_le_bytes())?;
    out.write_all(reason.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_reads_back_the_connection_keys_of_a_source_with_every_stream_key() {
        let toml = r#"
            name = "gate"
            url = "rtsp://192.168.1.64:554/Streaming/Channels/102"
            username = "viewer"
            password_env = "GATE_PASSWORD"
            transport = "udp"
            fps = 2.5
            every_nth = 3
            decode = "keyframes"
            width = 1280
            height = 720
            frame_timeout_s = 7
            reconnect_max_s = 30
            publish = ["events", "frames"]
            motion = true
            mask = [[[0.0, 0.0], [0.1, 0.0], [0.1, 0.1]]]
            [[zones]]
            name = "door"
            points = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]]
        "#;
        let cfg: RtspConfig = toml::from_str(toml).unwrap();
        let line = reader_config(&cfg).unwrap();
        let back: RtspConfig = serde_json::from_str(&line).unwrap();
        assert_eq!(back.url, cfg.url);
        assert_eq!(back.username, cfg.username);
        assert_eq!(back.password_env, cfg.password_env);
        assert_eq!(back.transport, cfg.transport);
        assert_eq!(back.decode, cfg.decode);
        assert_eq!((back.width, back.height), (1280, 720));
        assert_eq!(back.frame_timeout_s, 7);
        assert_eq!(back.decoder_bytes(), cfg.decoder_bytes());
        assert!(back.stream.zones.is_empty() && !cfg.stream.zones.is_empty());
    }
}
