//! MQTT publisher: drives the rumqttc event loop on its own thread, reconnects
//! with back-off, keeps a retained `online`/`offline` status with a last will.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use serde::Deserialize;

use super::payload::{detections_topic, status_topic, Message};

/// `[mqtt]` section.
#[derive(Debug, Clone, Deserialize)]
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
}

impl MqttConfig {
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
        out
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
            "mqtts" | "ssl" => {
                return Err(format!(
                    "{:?}: TLS (mqtts://) is not supported by this version yet; use mqtt://",
                    self.url
                ))
            }
            other => {
                return Err(format!(
                    "{:?}: scheme {other:?} is not MQTT; use mqtt://host:1883",
                    self.url
                ))
            }
        }
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
            port: url.port().unwrap_or(1883),
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
    /// The publisher has stopped.
    #[error("MQTT publisher is closed: {0}")]
    Closed(String),
}

/// Counters shared with the event-loop thread.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Messages handed to the client.
    pub published: AtomicU64,
    /// QoS 1 acknowledgements received.
    pub acked: AtomicU64,
    /// Whether the broker session is up.
    pub connected: AtomicBool,
}

/// A running MQTT publisher.
pub struct MqttSink {
    client: Client,
    cfg: MqttConfig,
    device: String,
    stats: Arc<SinkStats>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Requests queued in the client before `publish` blocks (back-pressure).
const REQUEST_CAPACITY: usize = 64;

impl MqttSink {
    /// Starts the publisher; it connects in the background and keeps retrying,
    /// so a missing broker never stops the daemon from starting.
    pub fn start(cfg: &MqttConfig, device: &str) -> Result<MqttSink, String> {
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
        let (client, connection) = Client::new(opts, REQUEST_CAPACITY);
        let stats = Arc::new(SinkStats::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let client = client.clone();
            let stats = stats.clone();
            let stopping = stopping.clone();
            let status = status_topic(&cfg.topic_prefix, device);
            let url = cfg.url.clone();
            std::thread::Builder::new()
                .name("mqtt".into())
                .spawn(move || event_loop(connection, client, stats, stopping, status, url))
                .map_err(|e| format!("cannot start the MQTT thread: {e}"))?
        };
        Ok(MqttSink {
            client,
            cfg: cfg.clone(),
            device: device.to_string(),
            stats,
            stopping,
            thread: Some(thread),
        })
    }

    /// Queues `msg` for its source's topic. Blocks while the client's queue is
    /// full, which holds back the folders upstream instead of dropping.
    pub fn publish(&self, msg: &Message) -> Result<(), SinkError> {
        let topic = detections_topic(&self.cfg.topic_prefix, &self.device, &msg.source);
        self.client
            .publish(topic, self.cfg.qos_level(), false, msg.to_json())
            .map_err(|e| SinkError::Closed(e.to_string()))?;
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Shared counters.
    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }

    /// Waits up to `grace` for outstanding QoS 1 acknowledgements, marks the
    /// device `offline` (a clean disconnect does not fire the last will) and
    /// disconnects.
    pub fn shutdown(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        if self.cfg.qos > 0 {
            while self.stats.connected.load(Ordering::Relaxed)
                && self.stats.acked.load(Ordering::Relaxed)
                    < self.stats.published.load(Ordering::Relaxed)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let unacked = self
            .stats
            .published
            .load(Ordering::Relaxed)
            .saturating_sub(self.stats.acked.load(Ordering::Relaxed));
        if self.cfg.qos > 0 && unacked > 0 {
            tracing::warn!(
                unacked,
                "stopping with {unacked} message(s) not acknowledged by the broker"
            );
        }
        self.stopping.store(true, Ordering::SeqCst);
        let status = status_topic(&self.cfg.topic_prefix, &self.device);
        let _ = self
            .client
            .try_publish(status, QoS::AtLeastOnce, true, "offline");
        let _ = self.client.try_disconnect();
        if let Some(t) = self.thread.take() {
            // The loop exits once the disconnect is sent, or on its own poll
            // timeout when the broker is gone.
            let _ = t.join();
        }
    }
}

fn event_loop(
    mut connection: Connection,
    client: Client,
    stats: Arc<SinkStats>,
    stopping: Arc<AtomicBool>,
    status: String,
    url: String,
) {
    let mut backoff = Duration::from_millis(500);
    let mut reported_down = false;
    loop {
        match connection.recv_timeout(Duration::from_millis(500)) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                stats.connected.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(500);
                reported_down = false;
                tracing::info!(broker = %url, "connected to MQTT broker {url}");
                // try_: this thread drains the queue, so it must never block on it.
                if let Err(e) = client.try_publish(status.clone(), QoS::AtLeastOnce, true, "online")
                {
                    tracing::warn!("could not queue the online status: {e}");
                }
            }
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                stats.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) if stopping.load(Ordering::SeqCst) => {
                break
            }
            Ok(Ok(_)) => {}
            Err(rumqttc::RecvTimeoutError::Timeout) => {
                if stopping.load(Ordering::SeqCst) && !stats.connected.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(rumqttc::RecvTimeoutError::Disconnected) => break,
            Ok(Err(e)) => {
                stats.connected.store(false, Ordering::Relaxed);
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if !reported_down {
                    tracing::warn!(broker = %url, "MQTT broker {url} unreachable ({e}); retrying with back-off, detections wait in the queue");
                    reported_down = true;
                } else {
                    tracing::debug!("MQTT reconnect failed: {e}");
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    stats.connected.store(false, Ordering::Relaxed);
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
                port: 1883
            }
        );
        assert_eq!(cfg("tcp://broker.local:1999").broker().unwrap().port, 1999);
        assert_eq!(cfg("mqtt://[::1]:1884").broker().unwrap().host, "::1");
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        for url in ["http://x", "mqtts://x:8883", "not a url", "mqtt://"] {
            let err = cfg(url).broker().unwrap_err();
            assert!(err.contains("mqtt://"), "{url}: {err}");
        }
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
