//! RTSP/IP cameras: H.264 over RTSP (TCP-interleaved by default, UDP on
//! request), decoded to RGB and fed to the same streaming loop as V4L2
//! (newest-frame hand-over, `fps` pacing, back-off reconnects).
//!
//! The client is `retina`; the decoder is openh264, built from source. H.265
//! streams are described by the camera but cannot be decoded: they are
//! refused with what to change on the camera.

use crate::base::issue::Issue;
use std::path::PathBuf;

use serde::Deserialize;

/// `transport` of an RTSP source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// RTP interleaved on the RTSP TCP connection: passes NAT and firewalls,
    /// loses nothing to UDP drops.
    #[default]
    Tcp,
    /// RTP over UDP: lower latency on a clean LAN; lost packets are lost.
    Udp,
}

/// `decode` of an RTSP source: which frames the decoder sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodeChoice {
    /// Every frame (H.264 predicted frames need the ones before them).
    #[default]
    All,
    /// Key frames only: the decoder idles between them. For `fps` at or
    /// below the camera's key-frame rate (often 0.5–2 per second).
    Keyframes,
}

/// `[[source]] kind = "rtsp"`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RtspConfig {
    /// Source name (topic segment).
    pub name: String,
    /// `rtsp://host:554/path`, without credentials.
    pub url: String,
    /// User name, when the camera asks for one.
    #[serde(default)]
    pub username: Option<String>,
    /// A file (not readable by every user) whose first line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Or the name of an environment variable that holds it.
    #[serde(default)]
    pub password_env: Option<String>,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub transport: RtspTransport,
    /// Inference rate cap.
    #[serde(default)]
    pub fps: Option<f64>,
    /// Take one decoded frame in this many.
    #[serde(default = "d_every_nth")]
    pub every_nth: u32,
    /// `all` (default) or `keyframes`.
    #[serde(default)]
    pub decode: DecodeChoice,
    /// Largest frame the camera is expected to send; the memory plan holds
    /// this much, and a larger stream is refused.
    #[serde(default = "d_width")]
    pub width: u32,
    /// See `width`.
    #[serde(default = "d_height")]
    pub height: u32,
    /// A stream that delivers no decodable frame for this long is reopened.
    #[serde(default = "d_frame_timeout")]
    pub frame_timeout_s: u64,
    /// Longest wait between reconnect attempts.
    #[serde(default = "d_reconnect_max")]
    pub reconnect_max_s: u64,
    /// Events, motion, zones, masks and snapshots (`stream_keys`).
    #[serde(flatten)]
    pub stream: crate::source::stream_keys::StreamKeys,
}

fn d_every_nth() -> u32 {
    1
}
fn d_width() -> u32 {
    1920
}
fn d_height() -> u32 {
    1080
}
fn d_frame_timeout() -> u64 {
    5
}
fn d_reconnect_max() -> u64 {
    10
}

impl RtspConfig {
    pub(crate) fn resolve_paths(&mut self, resolve: &dyn Fn(&mut PathBuf)) {
        if let Some(p) = &mut self.password_file {
            resolve(p);
        }
    }

    /// Problems, keyed within the source.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        match url::Url::parse(&self.url) {
            Ok(u) if u.scheme() != "rtsp" => out.push(Issue::new(
                "url",
                format!("{:?} is not rtsp://host:554/path", self.url),
            )),
            Ok(u) if u.password().is_some() || !u.username().is_empty() => out.push(Issue::new(
                "url",
                "holds credentials, which would be logged; put the user in `username` and the password in `password_file`",
            )),
            Ok(u) if u.host_str().is_none() => {
                out.push(Issue::new("url", format!("{:?} names no host", self.url)))
            }
            Ok(_) => {}
            Err(e) => out.push(Issue::new(
                "url",
                format!("{:?} is not a URL ({e}); expected rtsp://host:554/path", self.url),
            )),
        }
        if self.password_file.is_some() && self.password_env.is_some() {
            out.push(Issue::new(
                "password_env",
                "set either password_file or password_env, not both",
            ));
        }
        if (self.password_file.is_some() || self.password_env.is_some()) && self.username.is_none()
        {
            out.push(Issue::new("username", "a password needs a username"));
        }
        if let Some(fps) = self.fps {
            if !(fps > 0.0 && fps.is_finite()) {
                out.push(Issue::new("fps", format!("{fps} is not a positive rate")));
            }
        }
        if self.every_nth == 0 {
            out.push(Issue::new("every_nth", "must be at least 1"));
        }
        if self.width == 0 || self.height == 0 {
            out.push(Issue::new("width", "width and height must be above 0"));
        }
        if self.frame_timeout_s == 0 {
            out.push(Issue::new("frame_timeout_s", "must be at least 1 second"));
        }
        if self.reconnect_max_s == 0 {
            out.push(Issue::new("reconnect_max_s", "must be at least 1 second"));
        }
        out
    }

    /// The password, from `password_file` or `password_env`.
    pub fn password(&self) -> Result<Option<String>, crate::base::secrets::PasswordError> {
        if let Some(path) = &self.password_file {
            return Ok(Some(crate::base::secrets::read_secret(path)?));
        }
        match &self.password_env {
            Some(var) => std::env::var(var)
                .map(Some)
                .map_err(|_| crate::base::secrets::PasswordError::EnvUnset { var: var.clone() }),
            None => Ok(None),
        }
    }

    /// Bytes the decoder holds outside the frame pool, for the largest frame
    /// allowed: its reference and output pictures (YUV 4:2:0, up to 16
    /// references in H.264, 4 in practice from cameras, plus the one being
    /// built and the output), the RGB conversion buffer and the received
    /// access units.
    pub fn decoder_bytes(&self) -> u64 {
        let px = self.width as u64 * self.height as u64;
        6 * px * 3 / 2 + 3 * px + (4 << 20)
    }
}

#[cfg(feature = "rtsp")]
pub use client::RtspOpener;

#[cfg(feature = "rtsp")]
mod client {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use futures::StreamExt;
    use retina::client::{
        Credentials, Demuxed, PlayOptions, Session, SessionOptions, SetupOptions, Transport,
    };
    use retina::codec::{CodecItem, FrameFormat};

    use super::super::pixels::PixelFormat;
    use super::super::stream::{Capture, CaptureError, Granted, Open, RawFrame};
    use super::{DecodeChoice, RtspConfig, RtspTransport};

    /// Opens an RTSP stream as its config says.
    pub struct RtspOpener {
        cfg: RtspConfig,
        runtime: Option<Arc<tokio::runtime::Runtime>>,
    }

    impl RtspOpener {
        /// An opener for `cfg`.
        pub fn new(cfg: &RtspConfig) -> RtspOpener {
            RtspOpener {
                cfg: cfg.clone(),
                runtime: None,
            }
        }

        fn runtime(&mut self) -> Result<Arc<tokio::runtime::Runtime>, String> {
            if let Some(rt) = &self.runtime {
                return Ok(rt.clone());
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the network runtime ({e})"))?;
            Ok(self.runtime.insert(Arc::new(rt)).clone())
        }
    }

    /// Retina's errors carry the whole exchange; the first line says what.
    fn why(e: retina::Error) -> String {
        let text = e.to_string();
        let mut first = crate::base::text::one_line(&text);
        // Retina appends the connection's ports and times, which differ on
        // every attempt, and a hex dump of what it had buffered, which no
        // operator can act on: cut both, so one failure reads the same each
        // time it repeats.
        for tail in ["; buffered:", "; conn:", " conn:"] {
            if let Some(at) = first.find(tail) {
                first.truncate(at);
            }
        }
        if first.contains("401") {
            "the camera refused the credentials (401 Unauthorized); check username and the password"
                .into()
        } else {
            first.trim_end_matches([';', ',', ' ']).to_string()
        }
    }

    impl Open for RtspOpener {
        fn what(&self) -> String {
            self.cfg.url.clone()
        }

        fn open(&mut self) -> Result<Box<dyn Capture>, CaptureError> {
            let what = self.what();
            let open_err = |reason: String| CaptureError::Open {
                what: what.clone(),
                reason,
            };
            let unusable = |reason: String| CaptureError::Unusable {
                what: what.clone(),
                reason,
            };
            let password = self.cfg.password().map_err(|e| unusable(e.to_string()))?;
            let url = url::Url::parse(&self.cfg.url).map_err(|e| unusable(e.to_string()))?;
            let rt = self.runtime().map_err(open_err)?;
            let creds = self.cfg.username.clone().map(|username| Credentials {
                username,
                password: password.unwrap_or_default(),
            });
            let transport = match self.cfg.transport {
                RtspTransport::Tcp => Transport::Tcp(Default::default()),
                RtspTransport::Udp => Transport::Udp(Default::default()),
            };
            let timeout = Duration::from_secs(self.cfg.frame_timeout_s);
            let opened = rt.block_on(async {
                tokio::time::timeout(timeout, async {
                    let options = SessionOptions::default()
                        .creds(creds)
                        .user_agent(format!("edgewatch/{}", env!("CARGO_PKG_VERSION")));
                    let mut session = Session::describe(url, options).await.map_err(why)?;
                    let streams = session.streams();
                    let Some(video) = streams.iter().position(|s| s.media() == "video") else {
                        return Err(Refusal::Unusable(
                            "the stream has no video track".to_string(),
                        ));
                    };
                    let codec = streams[video].encoding_name().to_ascii_lowercase();
                    if codec != "h264" {
                        return Err(Refusal::Unusable(format!(
                            "the video is {codec}; edgewatch decodes H.264: set the camera's stream (or substream) to H.264"
                        )));
                    }
                    session
                        .setup(
                            video,
                            SetupOptions::default()
                                .transport(transport)
                                .frame_format(FrameFormat::SIMPLE),
                        )
                        .await
                        .map_err(why)?;
                    let playing = session.play(PlayOptions::default()).await.map_err(why)?;
                    playing.demuxed().map_err(|e| Refusal::Retry(why(e)))
                })
                .await
            });
            let demuxed = match opened {
                Err(_) => {
                    return Err(open_err(format!(
                        "no answer within {} s",
                        timeout.as_secs()
                    )))
                }
                Ok(Err(Refusal::Retry(reason))) => return Err(open_err(reason)),
                Ok(Err(Refusal::Unusable(reason))) => return Err(unusable(reason)),
                Ok(Ok(d)) => d,
            };
            let decoder = openh264::decoder::Decoder::new()
                .map_err(|e| open_err(format!("cannot start the H.264 decoder ({e})")))?;
            let mut capture = RtspCapture {
                what: what.clone(),
                rt,
                demuxed: Some(Box::pin(demuxed)),
                decoder,
                rgb: Vec::new(),
                granted: Granted {
                    format: PixelFormat::Rgb3,
                    width: 0,
                    height: 0,
                    fps: None,
                },
                timeout,
                keyframes_only: self.cfg.decode == DecodeChoice::Keyframes,
                pending: false,
                decode_errors: 0,
                max_pixels: self.cfg.width as u64 * self.cfg.height as u64,
            };
            // The size is the first decoded picture's: SDP often lacks it.
            capture.decode_next()?;
            capture.pending = true;
            Ok(Box::new(capture))
        }
    }

    enum Refusal {
        Retry(String),
        Unusable(String),
    }

    impl From<String> for Refusal {
        fn from(reason: String) -> Refusal {
            Refusal::Retry(reason)
        }
    }

    struct RtspCapture {
        what: String,
        rt: Arc<tokio::runtime::Runtime>,
        /// Always `Some` but in `drop`.
        demuxed: Option<Pin<Box<Demuxed>>>,
        decoder: openh264::decoder::Decoder,
        /// The last decoded picture, as RGB8.
        rgb: Vec<u8>,
        granted: Granted,
        timeout: Duration,
        keyframes_only: bool,
        /// The picture decoded while opening is still to be handed out.
        pending: bool,
        decode_errors: u64,
        /// Pictures above this are never converted: the stream refuses
        /// their size against the memory plan.
        max_pixels: u64,
    }

    impl RtspCapture {
        fn lost(&self, reason: String) -> CaptureError {
            CaptureError::Lost {
                what: self.what.clone(),
                reason,
            }
        }

        /// Reads access units until one decodes into a picture in `rgb`.
        fn decode_next(&mut self) -> Result<(), CaptureError> {
            let deadline = Instant::now() + self.timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let rt = self.rt.clone();
                let Some(demuxed) = self.demuxed.as_mut() else {
                    return Err(self.lost("closed".into()));
                };
                let item = rt.block_on(async { tokio::time::timeout(left, demuxed.next()).await });
                let frame = match item {
                    Err(_) => {
                        return Err(self.lost(format!(
                            "no decodable frame for {} s",
                            self.timeout.as_secs()
                        )))
                    }
                    Ok(None) => return Err(self.lost("the server ended the stream".into())),
                    Ok(Some(Err(e))) => return Err(self.lost(why(e))),
                    Ok(Some(Ok(CodecItem::VideoFrame(f)))) => f,
                    Ok(Some(Ok(_))) => continue,
                };
                if self.keyframes_only && !frame.is_random_access_point() {
                    continue;
                }
                match self.decoder.decode(frame.data()) {
                    Ok(Some(yuv)) => {
                        use openh264::formats::YUVSource;
                        let (w, h) = yuv.dimensions();
                        let (w, h) = (w as u32, h as u32);
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
                            self.rgb.clear();
                            return Ok(());
                        }
                        self.rgb.resize(w as usize * h as usize * 3, 0);
                        yuv.write_rgb8(&mut self.rgb);
                        return Ok(());
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        // A damaged access unit (a lost packet, a garbled
                        // camera): the decoder recovers at the next key frame.
                        self.decode_errors += 1;
                        if self.decode_errors.is_power_of_two() {
                            tracing::warn!(
                                "{}: cannot decode an H.264 frame ({}); {} so far, waiting for the next key frame",
                                self.what,
                                crate::base::text::one_line(&e.to_string()),
                                self.decode_errors
                            );
                        }
                    }
                }
            }
        }
    }

    impl Drop for RtspCapture {
        fn drop(&mut self) {
            // Dropping a session spawns its TEARDOWN, which needs the
            // runtime; it is sent during the next open's wait.
            let _inside = self.rt.enter();
            self.demuxed.take();
        }
    }

    impl Capture for RtspCapture {
        fn granted(&self) -> Granted {
            self.granted
        }

        fn next_frame(&mut self) -> Result<RawFrame<'_>, CaptureError> {
            if !std::mem::take(&mut self.pending) {
                self.decode_next()?;
            }
            Ok(RawFrame { data: &self.rgb })
        }
    }
}
