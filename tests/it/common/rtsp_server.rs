//! A real RTSP server on 127.0.0.1: gst-rtsp-server from Debian's packages,
//! driven by `tests/rtsp/serve.py`, streaming PNG frames encoded by x264.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the server streams.
#[derive(Clone)]
pub struct Stream {
    /// PNG frames as a printf pattern (`dir/f%03d.png`), looped.
    pub frames: PathBuf,
    /// Frames per second.
    pub fps: u32,
    /// Frames between key frames.
    pub key_int: u32,
    /// `h264` or `h265`.
    pub codec: &'static str,
    /// Basic-auth user and password the server demands.
    pub auth: Option<(String, String)>,
}

/// The server process; killed when dropped.
pub struct RtspServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    stream: Stream,
}

impl RtspServer {
    /// Starts a server on a free port and waits until it listens.
    pub fn start(stream: Stream) -> RtspServer {
        let mut s = RtspServer {
            child: None,
            port: super::free_port(),
            stream,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rtsp/serve.py");
        // Debian's python3, which has python3-gi (a virtualenv's has not).
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(&script)
            .args(["--port", &self.port.to_string()])
            .arg("--frames")
            .arg(&self.stream.frames)
            .args(["--fps", &self.stream.fps.to_string()])
            .args(["--key-int", &self.stream.key_int.to_string()])
            .args(["--codec", self.stream.codec]);
        if let Some((user, password)) = &self.stream.auth {
            cmd.args(["--user", user, "--password", password]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tests/rtsp/serve.py (deploy/install-deps.sh installs gst-rtsp-server)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the RTSP server did not start (missing gir1.2-gst-rtsp-server-1.0 or gstreamer1.0-plugins-ugly?)"
        );
        self.child = Some(child);
    }

    /// `rtsp://127.0.0.1:PORT/cam`.
    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }

    /// SIGKILL: the stream is cut wherever it is, mid-NAL as likely as not.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The port may linger a moment after the kill.
            if std::net::TcpListener::bind(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "port {} stays taken", self.port);
            std::thread::sleep(Duration::from_millis(100));
        }
        self.spawn();
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `tests/rtsp/hostile.py`: a proxy in front of a real server that damages
/// its stream in one way (`mode`); killed when dropped.
pub struct HostileProxy {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl HostileProxy {
    /// A proxy to `upstream` on a free port, once it listens.
    pub fn start(upstream: &RtspServer, mode: &str) -> HostileProxy {
        let port = super::free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rtsp/hostile.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .args(["--port", &port.to_string()])
            .args(["--upstream", &upstream.port.to_string()])
            .args(["--mode", mode])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tests/rtsp/hostile.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the hostile proxy did not start");
        HostileProxy { child, port }
    }

    /// `rtsp://127.0.0.1:PORT/cam`.
    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }
}

impl Drop for HostileProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
