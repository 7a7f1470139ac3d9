//! Real parts for integration tests: a mosquitto broker on a free loopback
//! port, an MQTT subscriber, the daemon as a child process, the model.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use edgewatch_samples as textimg;

pub mod fake_v4l2;
pub mod rtsp_server;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The reference model, fetched by `engines/fetch-models.sh`.
pub fn model_path() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("engines/ppocr-det-v4.onnx");
    assert!(
        p.exists(),
        "{} is missing; fetch it with engines/fetch-models.sh (bash .ci/run does this)",
        p.display()
    );
    p
}

/// A model built by `engines/make-test-models.sh` (YOLO layouts, classifiers).
/// The engine label `backend = "auto"` gives the reference model where
/// the budget holds either: ONNX Runtime when `engines/fetch-onnxruntime.sh`
/// put its library beside the model (CI does), else tract.
pub fn auto_label() -> &'static str {
    let lib = model_path()
        .parent()
        .unwrap()
        .join("onnxruntime/libonnxruntime.so");
    if lib.is_file() {
        "onnxruntime-cpu"
    } else {
        "tract-cpu"
    }
}

pub fn test_model(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("engines/test")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing; build the test models with engines/make-test-models.sh (bash .ci/run does this)",
        p.display()
    );
    p
}

/// The `edgewatch` binary built for this test run.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_edgewatch")
}

/// `edgewatch` with the faulty engine (`tests/tools/faulty_engine.rs`):
/// the real model, but a mostly magenta frame panics in the engine and a
/// mostly cyan one hangs there.
pub fn faulty_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_edgewatch-faulty-engine"))
}

/// A solid magenta image: the faulty engine panics on it.
pub fn magenta(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_pixel(w, h, image::Rgb([255, 0, 255]))
}

/// A solid cyan image: the faulty engine hangs on it.
pub fn cyan(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_pixel(w, h, image::Rgb([0, 255, 255]))
}

/// A free TCP port on loopback (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real mosquitto, listening on 127.0.0.1 only.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Extra mosquitto.conf lines (persistence, auth).
    extra: String,
}

fn mosquitto_bin() -> &'static str {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("mosquitto is not installed; apt-get install mosquitto (bash .ci/run does this)");
}

/// mosquitto started as root drops to its own user, which must be able to
/// write its persistence file and read its password file here.
fn broker_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

impl Broker {
    /// Starts a broker on a free port.
    pub fn start() -> Broker {
        Broker::start_on(free_port())
    }

    /// Starts a broker on `port` (used to bring one back after a stop).
    pub fn start_on(port: u16) -> Broker {
        Broker::start_with(port, "allow_anonymous true\npersistence false\n")
    }

    /// A broker that keeps sessions and queued messages across a graceful
    /// stop, so subscribers with persistent sessions miss nothing.
    pub fn start_persistent() -> Broker {
        let dir = broker_dir();
        let extra = format!(
            "allow_anonymous true\npersistence true\npersistence_location {}/\n",
            dir.path().display()
        );
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir,
            extra,
        };
        b.restart();
        b
    }

    /// A broker on `port` with these mosquitto.conf lines after `listener`.
    pub fn start_with(port: u16, extra: &str) -> Broker {
        let dir = broker_dir();
        let mut b = Broker {
            child: None,
            port,
            dir,
            extra: extra.to_string(),
        };
        b.restart();
        b
    }

    /// The broker's own scratch directory (config, password file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// (Re)starts the process on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {} 127.0.0.1\n{}", self.port, self.extra),
        )
        .unwrap();
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait: mosquitto saves its persistent state on the way out.
    pub fn stop_gracefully(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Kills the broker.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A message as a subscriber saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("payload is JSON")
    }
}

/// A real MQTT client subscribed to a filter, collecting what arrives.
pub struct Subscriber {
    received: Arc<Mutex<Vec<Received>>>,
    client: rumqttc::Client,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    pub fn connect(port: u16, filter: &str) -> Subscriber {
        let id = format!("test-sub-{}-{}", std::process::id(), free_port());
        Subscriber::connect_as(port, filter, &id, true)
    }

    /// A subscriber with a persistent session (`clean_session = false`): the
    /// broker queues QoS 1 messages for it while it is away, and it keeps
    /// reconnecting when the broker goes down.
    pub fn persistent(port: u16, filter: &str, id: &str) -> Subscriber {
        Subscriber::connect_as(port, filter, id, false)
    }

    fn connect_as(port: u16, filter: &str, id: &str, clean: bool) -> Subscriber {
        let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        opts.set_clean_session(clean);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut conn) = rumqttc::Client::new(opts, 100);
        client.subscribe(filter, rumqttc::QoS::AtLeastOnce).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = received.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for ev in conn.iter() {
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                match ev {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Disconnect)) => {}
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        sink.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        });
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("subscribed within 10 s");
        Subscriber {
            received,
            client,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything received so far.
    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `pred` holds over what was received, or panics after `timeout`.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let all = self.all();
            if pred(&all) {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; got {} message(s)",
                all.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.client.disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The detection messages received so far, parsed (a garbled one panics),
/// by the file name in their `image.path`.
pub fn detections_by_file(
    sub: &Subscriber,
) -> std::collections::BTreeMap<String, Vec<serde_json::Value>> {
    let mut out: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    for m in sub.all() {
        if !m.topic.ends_with("/detections") {
            continue;
        }
        let json: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_else(|e| {
            panic!(
                "garbled message ({e}): {:?}",
                String::from_utf8_lossy(&m.payload)
            )
        });
        let path = json["image"]["path"].as_str().expect("image.path");
        let name = Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        out.entry(name).or_default().push(json);
    }
    out
}

/// The daemon as a child process, its stderr captured line by line.
pub struct Daemon {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    pub fn start(config: &Path) -> Daemon {
        Daemon::start_with_env(config, &[])
    }

    /// Starts the daemon with extra environment variables.
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_binary(Path::new(bin()), config, env)
    }

    /// Starts `binary run` (the daemon, or the faulty-engine build of it).
    pub fn start_binary(binary: &Path, config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .env("EDGEWATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start edgewatch run");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[daemon] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Daemon { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to clean up, as in a power cut for the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle`, or panics.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().iter().any(|l| l.contains(needle)) {
            assert!(
                Instant::now() < deadline,
                "no log line containing {needle:?} within {timeout:?}; log:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig} failed");
    }

    /// SIGTERM, and a clean exit (status 0) within 30 s.
    pub fn stop_cleanly(&mut self) {
        self.signal("TERM");
        let status = self.wait(Duration::from_secs(30));
        assert!(
            status.success(),
            "edgewatch exited with {status} on SIGTERM"
        );
    }

    /// Waits for exit, or kills and panics after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("daemon did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes an image as JPEG (quality 90) or by extension.
pub fn save(img: &image::RgbImage, path: &Path) {
    if matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jpg" | "jpeg")
    ) {
        let file = std::fs::File::create(path).unwrap();
        let mut enc =
            image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90);
        enc.encode_image(img).unwrap();
    } else {
        img.save(path).unwrap();
    }
}

/// A plain HTTP/1.0 GET on loopback: (status code, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the telemetry port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The value of the first sample line of `metrics` that starts with `prefix`.
pub fn metric(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// What `edgewatch detect` prints for `images`, one message per image.
pub fn detect(config: &Path, images: &[PathBuf]) -> Vec<serde_json::Value> {
    let out = Command::new(bin())
        .args(["detect", "--config"])
        .arg(config)
        .args(images)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The boxes of a detections message.
pub fn boxes(msg: &serde_json::Value) -> Vec<Vec<f64>> {
    msg["detections"]
        .as_array()
        .expect("detections")
        .iter()
        .map(|d| {
            d["box"]
                .as_array()
                .expect("box")
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// Writes `dir/edgewatch.toml`: device `bench`, the reference model,
/// `sources` (the `[[source]]` tables), the broker and an outbox in `dir`,
/// then `extra` (further sections).
pub fn write_config(dir: &Path, broker: &Broker, sources: &str, extra: &str) -> PathBuf {
    let cfg = dir.join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "device = \"bench\"\n[model]\npath = {:?}\n{sources}\n[mqtt]\nurl = \"{}\"\noutbox = \"outbox\"\n{extra}",
            model_path().display().to_string(),
            broker.url()
        ),
    )
    .unwrap();
    cfg
}
