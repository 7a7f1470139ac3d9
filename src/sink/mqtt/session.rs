//! The publisher thread: one broker connection at a time, replaying the
//! outbox after each (re)connect, with back-off and a retained status.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};

use super::config::MqttConfig;
use crate::base::backoff::{jitter, Delay};
use crate::base::shutdown::Shutdown;
use crate::base::topic::status_topic;
use crate::sink::outbox::Outbox;

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

/// Retained messages derived from the configuration (Home Assistant
/// discovery): published on every connect and whenever they change, not
/// through the outbox (the configuration is their durable copy).
#[derive(Debug, Default)]
pub struct Announcements {
    /// Bumped on every change.
    pub generation: u64,
    /// `(topic, payload)`, published retained.
    pub messages: Vec<(String, String)>,
    /// Topics no longer announced: an empty retained payload removes them.
    pub cleared: Vec<String>,
}

/// Publishes in flight at once; the rest wait in the outbox.
pub(super) const WINDOW: usize = 32;

/// What one connection is made with; replaced on reload.
pub(super) struct SessionSettings {
    pub(super) opts: MqttOptions,
    pub(super) qos: QoS,
    pub(super) url: String,
    pub(super) status: String,
}

impl SessionSettings {
    pub(super) fn new(cfg: &MqttConfig, device: &str) -> Result<SessionSettings, String> {
        let addr = cfg.broker().map_err(|e| e.to_string())?;
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
            let tls = crate::sink::tls::client_config(&cfg.tls_files())
                .map_err(|issue| issue.within("mqtt").to_string())?;
            opts.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        }
        if let Some(user) = &cfg.username {
            opts.set_credentials(
                user.clone(),
                cfg.password()
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default(),
            );
        }
        Ok(SessionSettings {
            opts,
            qos: cfg.qos_level(),
            url: super::config::redacted(&cfg.url),
            status: status_topic(&cfg.topic_prefix, device),
        })
    }
}

/// The publisher thread's state: one connection at a time, the outbox as
/// the only record of what is undelivered.
pub(super) struct Publisher {
    pub(super) settings: SessionSettings,
    pub(super) pending: Arc<std::sync::Mutex<Option<SessionSettings>>>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) stats: Arc<SinkStats>,
    pub(super) stopping: Shutdown,
    pub(super) heartbeat: Option<Arc<crate::base::heartbeats::Stage>>,
    pub(super) announcements: Arc<std::sync::Mutex<Announcements>>,
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

    pub(super) fn run(mut self) {
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
        let mut announced = None;
        loop {
            self.beat();
            self.announce(client, &mut announced, &mut requested);
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
                                .try_publish(e.topic, self.settings.qos, e.retain, e.payload)
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

    /// Publishes the announcements when this session has not sent the
    /// current ones yet.
    fn announce(
        &self,
        client: &Client,
        sent: &mut Option<u64>,
        requested: &mut VecDeque<Option<u64>>,
    ) {
        let mut a = self.announcements.lock().unwrap_or_else(|p| p.into_inner());
        if *sent == Some(a.generation) {
            return;
        }
        let clears = a.cleared.iter().map(|t| (t.clone(), String::new()));
        let all: Vec<(String, String)> = clears.chain(a.messages.iter().cloned()).collect();
        for (topic, payload) in all {
            if client
                .try_publish(topic, QoS::AtLeastOnce, true, payload)
                .is_err()
            {
                return; // the request queue is full: again next turn
            }
            requested.push_back(None);
        }
        a.cleared.clear();
        *sent = Some(a.generation);
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
