//! Stage heartbeats and the systemd notify protocol. The watchdog is pinged
//! only while every stage is alive, so a hung daemon is killed and
//! restarted by systemd.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One stage's heartbeat. A stage beats whenever it makes progress or waits
/// legitimately (an empty folder, a broker that is away); a stage that does
/// neither for `stall_after` is stalled.
#[derive(Debug)]
pub struct Stage {
    name: String,
    stall_after: Duration,
    origin: Instant,
    last_ms: AtomicU64,
}

impl Stage {
    /// Records progress now.
    pub fn beat(&self) {
        self.last_ms
            .store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Stage name, e.g. `source:inbox`, `infer-0`, `mqtt`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Time since the last beat.
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    fn stalled(&self) -> bool {
        self.silent_for() > self.stall_after
    }
}

/// Every stage's heartbeat.
#[derive(Debug, Default)]
pub struct Heartbeats {
    stages: Mutex<Vec<Arc<Stage>>>,
}

impl Heartbeats {
    /// Registers a stage; it counts as alive from now.
    pub fn register(&self, name: impl Into<String>, stall_after: Duration) -> Arc<Stage> {
        let stage = Arc::new(Stage {
            name: name.into(),
            stall_after,
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
        });
        self.stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(stage.clone());
        stage
    }

    /// Forgets a stage that was shut down on purpose.
    pub fn remove(&self, stage: &Arc<Stage>) {
        self.stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| !Arc::ptr_eq(s, stage));
    }

    /// Names of stalled stages with how long they have been silent.
    pub fn stalled(&self) -> Vec<(String, Duration)> {
        self.stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| s.stalled())
            .map(|s| (s.name.clone(), s.silent_for()))
            .collect()
    }
}

/// Talks to systemd when `NOTIFY_SOCKET` is set; does nothing otherwise.
#[derive(Debug)]
pub struct Notifier {
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    withheld: bool,
}

impl Notifier {
    /// Reads `WATCHDOG_USEC` (and `WATCHDOG_PID`) from the environment.
    pub fn from_env() -> Notifier {
        Notifier {
            watchdog: sd_notify::watchdog_enabled(),
            last_ping: None,
            withheld: false,
        }
    }

    fn send(&self, states: &[sd_notify::NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!("sd_notify failed: {e}");
        }
    }

    /// `READY=1`: the model is loaded and sources are open.
    pub fn ready(&self, status: &str) {
        self.send(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(status),
        ]);
    }

    /// `STATUS=…`: a one-line summary for `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&[sd_notify::NotifyState::Status(status)]);
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send(&[sd_notify::NotifyState::Stopping]);
    }

    /// Sends `WATCHDOG=1` at half the watchdog interval while no stage is
    /// stalled; while one is, withholds it and says which (once).
    pub fn tick(&mut self, heartbeats: &Heartbeats) {
        let Some(interval) = self.watchdog else {
            return;
        };
        if self.last_ping.is_some_and(|t| t.elapsed() < interval / 2) {
            return;
        }
        let stalled = heartbeats.stalled();
        if stalled.is_empty() {
            if self.withheld {
                tracing::info!("every stage is alive again; watchdog pings resume");
                self.withheld = false;
            }
            self.send(&[sd_notify::NotifyState::Watchdog]);
            self.last_ping = Some(Instant::now());
        } else if !self.withheld {
            let list: Vec<String> = stalled
                .iter()
                .map(|(name, d)| format!("{name} silent for {} s", d.as_secs()))
                .collect();
            tracing::error!(
                "stage(s) hung: {}; withholding the systemd watchdog ping so the service is restarted",
                list.join(", ")
            );
            self.withheld = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_stage_is_stalled_until_it_beats_again() {
        let hb = Heartbeats::default();
        let quick = hb.register("infer-0", Duration::from_millis(50));
        let slow = hb.register("mqtt", Duration::from_secs(60));
        assert!(hb.stalled().is_empty());
        std::thread::sleep(Duration::from_millis(120));
        let stalled = hb.stalled();
        assert_eq!(stalled.len(), 1);
        assert_eq!(stalled[0].0, "infer-0");
        assert!(stalled[0].1 >= Duration::from_millis(100));
        quick.beat();
        slow.beat();
        assert!(hb.stalled().is_empty());
        assert_eq!(quick.name(), "infer-0");
    }
}
