//! The sink the workers publish to: appends to the outbox, hands reloads
//! to the session, stops with a grace period.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::MqttConfig;
use super::session::{Announcements, Publisher, SessionSettings, SinkStats};
use crate::base::shutdown::Shutdown;
use crate::base::topic::{source_topic, Leaf};
use crate::sink::outbox::{Outbox, OutboxError, WriteTrouble};
use crate::sink::payload::Message;

/// Errors from the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The message could not be made durable.
    #[error("{0}")]
    Outbox(#[from] OutboxError),
}

/// Why the sink did not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkStartError {
    /// The outbox could not be opened, or another process holds it.
    #[error("{0}")]
    Outbox(#[from] OutboxError),
    /// The session settings (TLS files, credentials) are unusable, or the
    /// publisher thread could not start.
    #[error("{0}")]
    Start(String),
}

impl SinkStartError {
    /// Whether the operator's configuration is what must change (exit 2):
    /// another daemon already uses this outbox.
    pub fn is_config_error(&self) -> bool {
        matches!(self, SinkStartError::Outbox(OutboxError::Locked { .. }))
    }
}

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
    announcements: Arc<std::sync::Mutex<Announcements>>,
}

impl MqttSink {
    /// Opens the outbox and starts the publisher; it connects in the
    /// background and keeps retrying, so a missing broker never stops the
    /// daemon from starting.
    pub fn start(
        cfg: &MqttConfig,
        device: &str,
        heartbeat: Option<Arc<crate::base::heartbeats::Stage>>,
    ) -> Result<MqttSink, SinkStartError> {
        let (outbox, recovery) = Outbox::open(&cfg.outbox, (cfg.outbox_max_mb * 1048576.0) as u64)?;
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
        let announcements = Arc::new(std::sync::Mutex::new(Announcements::default()));
        let publisher = Publisher {
            announcements: announcements.clone(),
            settings: SessionSettings::new(cfg, device).map_err(SinkStartError::Start)?,
            pending: pending.clone(),
            outbox: outbox.clone(),
            stats: stats.clone(),
            stopping: stopping.clone(),
            heartbeat,
        };
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || publisher.run())
            .map_err(|e| SinkStartError::Start(format!("cannot start the MQTT thread: {e}")))?;
        Ok(MqttSink {
            outbox,
            prefix: std::sync::RwLock::new(cfg.topic_prefix.clone()),
            running: std::sync::Mutex::new(cfg.clone()),
            pending,
            device: device.to_string(),
            stats,
            stopping,
            thread: std::sync::Mutex::new(Some(thread)),
            announcements,
        })
    }

    /// Makes `msg` durable in the outbox (synced to disk); the publisher
    /// thread delivers it. While the outbox is full this waits, unless
    /// `keep_waiting` turns false.
    pub fn publish(&self, msg: &Message, keep_waiting: impl Fn() -> bool) -> Result<(), SinkError> {
        let topic = {
            let prefix = self.prefix.read().unwrap_or_else(|p| p.into_inner());
            source_topic(&prefix, &self.device, &msg.source, &Leaf::Detections)
        };
        self.outbox
            .append(&topic, msg.to_json().as_bytes(), keep_waiting)?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Makes a message for `{prefix}/{device}/{source}/{leaf}` durable, as
    /// [`MqttSink::publish`] does; `retain` asks the broker to keep it.
    pub fn publish_to(
        &self,
        source: &str,
        leaf: &Leaf,
        payload: &[u8],
        retain: bool,
        keep_waiting: impl Fn() -> bool,
    ) -> Result<(), SinkError> {
        let topic = {
            let prefix = self.prefix.read().unwrap_or_else(|p| p.into_inner());
            source_topic(&prefix, &self.device, source, leaf)
        };
        self.outbox
            .append_with(&topic, payload, retain, keep_waiting)?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Replaces the retained announcements (Home Assistant discovery): the
    /// publisher sends them now and after every reconnect, and clears the
    /// topics no longer in the list.
    pub fn announce(&self, messages: Vec<(String, String)>) {
        let mut a = self.announcements.lock().unwrap_or_else(|p| p.into_inner());
        if a.messages == messages {
            return;
        }
        let gone: Vec<String> = a
            .messages
            .iter()
            .filter(|(t, _)| !messages.iter().any(|(n, _)| n == t))
            .map(|(t, _)| t.clone())
            .collect();
        a.cleared.extend(gone);
        a.messages = messages;
        a.generation += 1;
    }

    /// The topic prefix messages take now.
    pub fn topic_prefix(&self) -> String {
        self.prefix
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies a changed `[mqtt]` section without a restart: the publisher
    /// says goodbye to the broker it has and connects with the new settings;
    /// messages not yet acknowledged are sent again from the outbox, and new
    /// messages take the new topic prefix. Returns the keys that still need a
    /// restart (the outbox lives as long as the process). New session
    /// settings that cannot be used (TLS files, credentials) are
    /// [`SinkStartError::Start`], and the old session goes on.
    pub fn reconfigure(&self, cfg: &MqttConfig) -> Result<Vec<&'static str>, SinkStartError> {
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
            let settings =
                SessionSettings::new(cfg, &self.device).map_err(SinkStartError::Start)?;
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

    /// What the outbox has written and synced since it was opened.
    pub fn outbox_wear(&self) -> crate::sink::outbox::Wear {
        self.outbox.wear()
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
