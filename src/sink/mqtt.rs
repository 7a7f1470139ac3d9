//! MQTT publisher: drives the rumqttc event loop on its own thread, reconnects
//! with back-off, keeps a retained `online`/`offline` status with a last will.

use crate::shutdown::Shutdown;
use crate::supervise::{jitter, Delay};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use rumqttc::{Client, Connection, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use serde::Deserialize;

use super::outbox::{Outbox, OutboxError, WriteTrouble};
use super::payload::{detections_topic, status_topic, Message};

/// `[mqtt]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker URL, `mqtt://host:port`.
    #[serde(default = "d_url")]
    pub url: String,
    /// First topic segment.
    #[serde(default = "d_prefix")]
    pub topic_prefix: String,
    /// 0 or 1.
    #[serde(default = "d_qos")]
    pub qos: u8,
    /// Keep-alive interval in seconds.
    #[serde(default = "d_keep_alive")]
    pub keep_alive_s: u64,
    /// User name, when the broker wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (first line); must not be world-readable.
    /// `EDGEWATCH_MQTT_PASSWORD` is used when this is not set.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) that sign the broker's certificate, for
    /// `mqtts://`; the system's CA store when not set.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), when the broker asks for one.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM); must not be world-readable.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Durable outbox directory.
    #[serde(default = "d_outbox")]
    pub outbox: PathBuf,
    /// Most the outbox holds, in MiB (fractions allowed); beyond it folders wait.
    #[serde(default = "d_outbox_max_mb")]
    pub outbox_max_mb: f64,
}

fn d_outbox() -> PathBuf {
    "/var/lib/edgewatch/outbox".into()
}
fn d_outbox_max_mb() -> f64 {
    512.0
}

fn d_url() -> String {
    "mqtt://127.0.0.1:1883".into()
}
fn d_prefix() -> String {
    "edgewatch".into()
}
fn d_qos() -> u8 {
    1
}
fn d_keep_alive() -> u64 {
    30
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: d_url(),
            topic_prefix: d_prefix(),
            qos: d_qos(),
            keep_alive_s: d_keep_alive(),
            username: None,
            password_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            outbox: d_outbox(),
            outbox_max_mb: d_outbox_max_mb(),
        }
    }
}

/// A broker address parsed from `mqtt://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or IP.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://`: TLS.
    pub tls: bool,
}

impl MqttConfig {
    /// The files TLS needs.
    pub fn tls_files(&self) -> super::tls::TlsFiles<'_> {
        super::tls::TlsFiles {
            ca_file: self.ca_file.as_deref(),
            client_cert: self.client_cert.as_deref(),
            client_key: self.client_key.as_deref(),
        }
    }

    /// Problems as (key within `[mqtt]`, reason).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(e) = self.broker() {
            out.push(("url", e));
        }
        if self.topic_prefix.is_empty()
            || self.topic_prefix.contains(['+', '#'])
            || self.topic_prefix.ends_with('/')
        {
            out.push((
                "topic_prefix",
                format!(
                    "{:?} must be non-empty, without '+' or '#', and not end in '/'",
                    self.topic_prefix
                ),
            ));
        }
        if self.qos > 1 {
            out.push(("qos", format!("{} is not supported; use 0 or 1", self.qos)));
        }
        if !(5..=3600).contains(&self.keep_alive_s) {
            out.push((
                "keep_alive_s",
                format!("{} is outside 5..=3600 seconds", self.keep_alive_s),
            ));
        }
        if self.outbox_max_mb.is_nan() || self.outbox_max_mb <= 0.0 {
            out.push((
                "outbox_max_mb",
                format!("{} must be greater than 0", self.outbox_max_mb),
            ));
        }
        if self.password_file.is_some() && self.username.is_none() {
            out.push((
                "username",
                "password_file is set but username is not".into(),
            ));
        }
        if let Err(e) = self.password() {
            out.push(("password_file", e));
        }
        match self.broker() {
            Ok(b) if b.tls => {
                if let Err(problem) = super::tls::client_config(&self.tls_files()) {
                    out.push(problem);
                }
            }
            Ok(_) => {
                for (key, set) in [
                    ("ca_file", self.ca_file.is_some()),
                    ("client_cert", self.client_cert.is_some()),
                    ("client_key", self.client_key.is_some()),
                ] {
                    if set {
                        out.push((
                            key,
                            format!(
                                "is set but the url is not TLS; use mqtts://{}",
                                self.url.split("://").nth(1).unwrap_or("")
                            ),
                        ));
                    }
                }
            }
            Err(_) => {}
        }
        out
    }

    /// The password from `password_file` or `EDGEWATCH_MQTT_PASSWORD`.
    /// A file others can read is refused: it would leak the credential.
    pub fn password(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.password_file else {
            return Ok(std::env::var("EDGEWATCH_MQTT_PASSWORD").ok());
        };
        super::secrets::refuse_world_readable(path)?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {} ({e})", path.display()))?;
        Ok(Some(text.lines().next().unwrap_or("").to_string()))
    }

    /// Host and port from `url`.
    pub fn broker(&self) -> Result<BrokerAddr, String> {
        let url = url::Url::parse(&self.url).map_err(|e| {
            format!(
                "{:?} is not a URL ({e}); expected mqtt://host:1883",
                self.url
            )
        })?;
        match url.scheme() {
            "mqtt" | "tcp" => {}
            "mqtts" | "ssl" => {}
            other => {
                return Err(format!(
                    "{:?}: scheme {other:?} is not MQTT; use mqtt://host:1883",
                    self.url
                ))
            }
        }
        let tls = matches!(url.scheme(), "mqtts" | "ssl");
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{:?} has no host; expected mqtt://host:1883", self.url))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(BrokerAddr {
            host,
            port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
            tls,
        })
    }

    fn qos_level(&self) -> QoS {
        if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }
}

/// Errors from the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The message could not be made durable.
    #[error("{0}")]
    Outbox(#[from] OutboxError),
}

/// Counters shared with the publisher thread.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Messages written to the outbox.
    pub queued: AtomicU64,
    /// Messages the broker acknowledged (or sent, at QoS 0).
    pub acked: AtomicU64,
    /// Whether the broker session is up.
    pub connected: AtomicBool,
}

/// Publishes in flight at once; the rest wait in the outbox.
const WINDOW: usize = 32;

/// A running MQTT publisher fed by the durable outbox.
pub struct MqttSink {
    outbox: Arc<Outbox>,
    prefix: std::sync::RwLock<String>,
    running: std::sync::Mutex<MqttConfig>,
    pending: Arc<std::sync::Mutex<Option<SessionSettings>>>,
    device: String,
    stats: Arc<SinkStats>,
    stopping: Shutdown,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl MqttSink {
    /// Opens the outbox and starts the publisher; it connects in the
    /// background and keeps retrying, so a missing broker never stops the
    /// daemon from starting.
    pub fn start(
        cfg: &MqttConfig,
        device: &str,
        heartbeat: Option<Arc<crate::supervise::Stage>>,
    ) -> Result<MqttSink, String> {
        let (outbox, recovery) = Outbox::open(&cfg.outbox, (cfg.outbox_max_mb * 1048576.0) as u64)
            .map_err(|e| e.to_string())?;
        if recovery.pending > 0 || recovery.truncated_bytes > 0 || recovery.damaged_records > 0 {
            tracing::info!(
                "outbox {}: {} message(s) from an earlier run to deliver{}{}",
                cfg.outbox.display(),
                recovery.pending,
                if recovery.truncated_bytes > 0 {
                    format!(
                        "; cut {} torn byte(s) at the tail",
                        recovery.truncated_bytes
                    )
                } else {
                    String::new()
                },
                if recovery.damaged_records > 0 {
                    format!(
                        "; skipped {} damaged record(s) ({} bytes) and kept what follows them",
                        recovery.damaged_records, recovery.damaged_bytes
                    )
                } else {
                    String::new()
                }
            );
        }
        let outbox = Arc::new(outbox);
        let stats = Arc::new(SinkStats::default());
        let stopping = Shutdown::new();
        let pending = Arc::new(std::sync::Mutex::new(None));
        let publisher = Publisher {
            settings: SessionSettings::new(cfg, device)?,
            pending: pending.clone(),
            outbox: outbox.clone(),
            stats: stats.clone(),
            stopping: stopping.clone(),
            heartbeat,
        };
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || publisher.run())
            .map_err(|e| format!("cannot start the MQTT thread: {e}"))?;
        Ok(MqttSink {
            outbox,
            prefix: std::sync::RwLock::new(cfg.topic_prefix.clone()),
            running: std::sync::Mutex::new(cfg.clone()),
            pending,
            device: device.to_string(),
            stats,
            stopping,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Makes `msg` durable in the outbox (synced to disk); the publisher
    /// thread delivers it. While the outbox is full this waits, unless
    /// `keep_waiting` turns false.
    pub fn publish(&self, msg: &Message, keep_waiting: impl Fn() -> bool) -> Result<(), SinkError> {
        let topic = {
            let prefix = self.prefix.read().unwrap_or_else(|p| p.into_inner());
            detections_topic(&prefix, &self.device, &msg.source)
        };
        self.outbox
            .append(&topic, msg.to_json().as_bytes(), keep_waiting)?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Applies a changed `[mqtt]` section without a restart: the publisher
    /// says goodbye to the broker it has and connects with the new settings;
    /// messages not yet acknowledged are sent again from the outbox, and new
    /// messages take the new topic prefix. Returns the keys that still need a
    /// restart (the outbox lives as long as the process).
    pub fn reconfigure(&self, cfg: &MqttConfig) -> Result<Vec<&'static str>, String> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut needs_restart = Vec::new();
        if running.outbox != cfg.outbox {
            needs_restart.push("mqtt.outbox");
        }
        if running.outbox_max_mb != cfg.outbox_max_mb {
            needs_restart.push("mqtt.outbox_max_mb");
        }
        // The session is everything but the outbox (which needs a restart):
        // any other key that changes means reconnecting with new settings.
        let session = |c: &MqttConfig| MqttConfig {
            outbox: PathBuf::new(),
            outbox_max_mb: 0.0,
            ..c.clone()
        };
        if session(&running) != session(cfg) {
            let settings = SessionSettings::new(cfg, &self.device)?;
            *self.prefix.write().unwrap_or_else(|p| p.into_inner()) = cfg.topic_prefix.clone();
            *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(settings);
            let outbox = (running.outbox.clone(), running.outbox_max_mb);
            *running = cfg.clone();
            (running.outbox, running.outbox_max_mb) = outbox;
        }
        Ok(needs_restart)
    }

    /// Shared counters.
    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }

    /// (messages, bytes) waiting for the broker.
    pub fn depth(&self) -> (usize, u64) {
        self.outbox.depth()
    }

    /// Why the outbox cannot write right now, if it cannot.
    pub fn write_trouble(&self) -> Option<WriteTrouble> {
        self.outbox.write_trouble()
    }

    /// Outbox records found damaged since start.
    pub fn damaged(&self) -> u64 {
        self.outbox.damaged()
    }

    /// Gives the publisher up to `grace` to empty the outbox while connected,
    /// then marks the device `offline` (a clean disconnect does not fire the
    /// last will) and disconnects. What is left stays in the outbox for the
    /// next start.
    pub fn shutdown(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while self.stats.connected.load(Ordering::Relaxed)
            && self.outbox.depth().0 > 0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (left, _) = self.outbox.depth();
        if left > 0 {
            tracing::warn!("stopping with {left} message(s) in the outbox; they are delivered after the next start");
        }
        self.stopping.stop();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// What one connection is made with; replaced on reload.
struct SessionSettings {
    opts: MqttOptions,
    qos: QoS,
    url: String,
    status: String,
}

impl SessionSettings {
    fn new(cfg: &MqttConfig, device: &str) -> Result<SessionSettings, String> {
        let addr = cfg.broker()?;
        let mut opts = MqttOptions::new(device, addr.host.clone(), addr.port);
        opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_s));
        opts.set_last_will(LastWill::new(
            status_topic(&cfg.topic_prefix, device),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        opts.set_max_packet_size(16 << 20, 16 << 20);
        if addr.tls {
            let tls = super::tls::client_config(&cfg.tls_files())
                .map_err(|(key, why)| format!("mqtt.{key}: {why}"))?;
            opts.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        }
        if let Some(user) = &cfg.username {
            opts.set_credentials(user.clone(), cfg.password()?.unwrap_or_default());
        }
        Ok(SessionSettings {
            opts,
            qos: cfg.qos_level(),
            url: cfg.url.clone(),
            status: status_topic(&cfg.topic_prefix, device),
        })
    }
}

/// The publisher thread's state: one connection at a time, the outbox as
/// the only record of what is undelivered.
struct Publisher {
    settings: SessionSettings,
    pending: Arc<std::sync::Mutex<Option<SessionSettings>>>,
    outbox: Arc<Outbox>,
    stats: Arc<SinkStats>,
    stopping: Shutdown,
    heartbeat: Option<Arc<crate::supervise::Stage>>,
}

enum Session {
    /// The connection dropped or never came up; try again after a pause.
    Lost,
    /// The daemon is stopping.
    Stopped,
    /// New settings arrived (SIGHUP); connect again with them at once.
    Reconfigured,
}

impl Publisher {
    fn stopping(&self) -> bool {
        self.stopping.is_stopping()
    }

    /// Connecting, waiting out a back-off and delivering are all progress.
    fn beat(&self) {
        if let Some(h) = &self.heartbeat {
            h.beat();
        }
    }

    fn reconfigured(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn run(mut self) {
        let mut backoff = Delay::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut reported_down = false;
        while !self.stopping() {
            if let Some(new) = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                tracing::info!(broker = %new.url, "MQTT settings reloaded; connecting to {}", new.url);
                self.settings = new;
                backoff.reset();
                reported_down = false;
            }
            // A fresh client per connection: rumqttc's own retransmission
            // state never outlives a session, the outbox replays instead.
            let (client, conn) = Client::new(self.settings.opts.clone(), WINDOW * 2 + 8);
            match self.session(&client, conn, &mut reported_down, &mut backoff) {
                Session::Stopped => break,
                Session::Reconfigured => self.stats.connected.store(false, Ordering::Relaxed),
                Session::Lost => {
                    self.stats.connected.store(false, Ordering::Relaxed);
                    let until = Instant::now() + jitter(backoff.next_delay());
                    while Instant::now() < until && !self.stopping() && !self.reconfigured() {
                        self.beat();
                        self.stopping.sleep(
                            Duration::from_millis(500)
                                .min(until.saturating_duration_since(Instant::now())),
                        );
                    }
                }
            }
        }
        self.stats.connected.store(false, Ordering::Relaxed);
    }

    fn session(
        &self,
        client: &Client,
        mut conn: Connection,
        reported_down: &mut bool,
        backoff: &mut Delay,
    ) -> Session {
        // Connect.
        loop {
            self.beat();
            match conn.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                    if ack.code != rumqttc::ConnectReturnCode::Success {
                        self.report_refused(reported_down, ack.code);
                        return Session::Lost;
                    }
                    break;
                }
                Ok(Ok(_)) => {}
                Ok(Err(rumqttc::ConnectionError::ConnectionRefused(code))) => {
                    self.report_refused(reported_down, code);
                    return Session::Lost;
                }
                Ok(Err(rumqttc::ConnectionError::Tls(e))) => {
                    self.report_down(
                        reported_down,
                        &format!(
                            "TLS failed: {e}; check that mqtt.ca_file signs the broker's certificate and that the URL's host name is in it"
                        ),
                    );
                    return Session::Lost;
                }
                Ok(Err(e)) => {
                    self.report_down(reported_down, &e.to_string());
                    return Session::Lost;
                }
                Err(rumqttc::RecvTimeoutError::Timeout) if self.stopping() => {
                    return Session::Stopped
                }
                Err(rumqttc::RecvTimeoutError::Timeout) if self.reconfigured() => {
                    return Session::Reconfigured
                }
                Err(rumqttc::RecvTimeoutError::Timeout) => {}
                Err(rumqttc::RecvTimeoutError::Disconnected) => return Session::Lost,
            }
        }
        *reported_down = false;
        backoff.reset();
        self.stats.connected.store(true, Ordering::Relaxed);
        let (pending, _) = self.outbox.depth();
        tracing::info!(broker = %self.settings.url, "connected to MQTT broker {} ({pending} message(s) to deliver)", self.settings.url);

        // Each publish request produces one Outgoing::Publish event, in
        // order; that is where a packet id gets tied to an outbox key.
        let mut requested: VecDeque<Option<u64>> = VecDeque::new();
        let mut inflight: HashMap<u16, u64> = HashMap::new();
        let mut cursor: Option<u64> = None;
        if client
            .try_publish(
                self.settings.status.clone(),
                QoS::AtLeastOnce,
                true,
                "online",
            )
            .is_ok()
        {
            requested.push_back(None);
        }
        loop {
            self.beat();
            if self.stopping() {
                return self.say_goodbye(client, &mut conn);
            }
            if self.reconfigured() {
                self.say_goodbye(client, &mut conn);
                return Session::Reconfigured;
            }
            let room = WINDOW.saturating_sub(requested.len() + inflight.len());
            if room > 0 {
                match self.outbox.read_after(cursor, room) {
                    Ok(entries) => {
                        for e in entries {
                            if client
                                .try_publish(e.topic, self.settings.qos, false, e.payload)
                                .is_err()
                            {
                                break;
                            }
                            requested.push_back(Some(e.key));
                            cursor = Some(e.key);
                        }
                    }
                    Err(e) => tracing::error!("cannot read the outbox: {e}"),
                }
            }
            match conn.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                    if let Some(Some(key)) = requested.pop_front() {
                        if self.settings.qos == QoS::AtMostOnce {
                            self.acked(key);
                        } else {
                            inflight.insert(pkid, key);
                        }
                    }
                }
                Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                    if let Some(key) = inflight.remove(&ack.pkid) {
                        self.acked(key);
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let unacked = self.outbox.depth().0;
                    tracing::warn!(broker = %self.settings.url, "lost the MQTT broker {} ({e}); {unacked} message(s) kept in the outbox, reconnecting", self.settings.url);
                    *reported_down = true;
                    return Session::Lost;
                }
                Err(rumqttc::RecvTimeoutError::Timeout) => {}
                Err(rumqttc::RecvTimeoutError::Disconnected) => return Session::Lost,
            }
        }
    }

    fn acked(&self, key: u64) {
        if let Err(e) = self.outbox.ack(key) {
            tracing::error!("cannot record a delivery in the outbox: {e}");
        }
        self.stats.acked.fetch_add(1, Ordering::Relaxed);
    }

    fn report_refused(&self, reported_down: &mut bool, code: rumqttc::ConnectReturnCode) {
        use rumqttc::ConnectReturnCode as C;
        let hint = match code {
            C::BadUserNamePassword | C::NotAuthorized => {
                "check mqtt.username and the password in mqtt.password_file"
            }
            C::BadClientId => "check `device`, which is the client id",
            _ => "check the broker's log",
        };
        let why = format!("the broker refused the connection ({code:?}); {hint}");
        if *reported_down {
            tracing::debug!("{why}");
        } else {
            tracing::error!(broker = %self.settings.url, "MQTT broker {}: {why}; retrying with back-off, detections wait in the outbox", self.settings.url);
            *reported_down = true;
        }
    }

    fn report_down(&self, reported_down: &mut bool, why: &str) {
        if *reported_down {
            tracing::debug!("MQTT reconnect failed: {why}");
        } else {
            tracing::warn!(broker = %self.settings.url, "MQTT broker {} unreachable ({why}); retrying with back-off, detections wait in the outbox", self.settings.url);
            *reported_down = true;
        }
    }

    fn say_goodbye(&self, client: &Client, conn: &mut Connection) -> Session {
        let _ = client.try_publish(
            self.settings.status.clone(),
            QoS::AtLeastOnce,
            true,
            "offline",
        );
        let _ = client.try_disconnect();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match conn.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) => break,
                Err(rumqttc::RecvTimeoutError::Disconnected) => break,
                _ => {}
            }
        }
        Session::Stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> MqttConfig {
        MqttConfig {
            url: url.into(),
            ..MqttConfig::default()
        }
    }

    #[test]
    fn broker_urls_parse_with_default_port() {
        assert_eq!(
            cfg("mqtt://10.0.0.5").broker().unwrap(),
            BrokerAddr {
                host: "10.0.0.5".into(),
                port: 1883,
                tls: false
            }
        );
        assert_eq!(cfg("tcp://broker.local:1999").broker().unwrap().port, 1999);
        assert_eq!(cfg("mqtt://[::1]:1884").broker().unwrap().host, "::1");
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        assert!(cfg("mqtts://b.local").broker().unwrap().tls);
        assert_eq!(cfg("mqtts://b.local").broker().unwrap().port, 8883);
        for url in ["http://x", "not a url", "mqtt://"] {
            let err = cfg(url).broker().unwrap_err();
            assert!(err.contains("mqtt://"), "{url}: {err}");
        }
    }

    #[test]
    fn password_files_must_not_be_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pass");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = MqttConfig {
            username: Some("u".into()),
            password_file: Some(p.clone()),
            ..MqttConfig::default()
        };
        let err = c.password().unwrap_err();
        assert!(
            err.contains("chmod o-r") && !err.contains("s3cret"),
            "{err}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(c.password().unwrap().as_deref(), Some("s3cret"));
    }

    #[test]
    fn tls_settings_are_checked_against_the_url_and_each_other() {
        let keys = |c: MqttConfig| c.validate().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let plain_with_ca = MqttConfig {
            ca_file: Some("/x/ca.pem".into()),
            ..cfg("mqtt://b:1883")
        };
        assert_eq!(keys(plain_with_ca), vec!["ca_file"]);
        let missing_ca = MqttConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..cfg("mqtts://b")
        };
        let problems = missing_ca.validate();
        assert_eq!(problems[0].0, "ca_file");
        assert!(
            problems[0].1.contains("/nonexistent/ca.pem"),
            "{problems:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("ca.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let not_pem = MqttConfig {
            ca_file: Some(junk.clone()),
            ..cfg("mqtts://b")
        };
        assert_eq!(keys(not_pem), vec!["ca_file"]);
    }

    #[test]
    fn validate_names_keys() {
        let c = MqttConfig {
            topic_prefix: "a/#".into(),
            qos: 2,
            keep_alive_s: 1,
            ..cfg("http://x")
        };
        let keys: Vec<_> = c.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec!["url", "topic_prefix", "qos", "keep_alive_s"]);
    }
}
