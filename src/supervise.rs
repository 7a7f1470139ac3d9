//! Supervision: stage heartbeats and the systemd notify protocol. The
//! watchdog is pinged only while every stage is alive, so a hung daemon is
//! killed and restarted by systemd.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `[supervise]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SuperviseConfig {
    /// An inference worker silent this long is hung (one frame never takes
    /// this long; a Nano needs about a second for 1080p).
    #[serde(default = "d_infer_timeout")]
    pub infer_timeout_s: u64,
    /// A source or the publisher silent this long is hung; healthy ones
    /// beat several times a second, even when idle.
    #[serde(default = "d_stall_timeout")]
    pub stall_timeout_s: u64,
    /// A stage that fails more than this many times within
    /// `restart_window_s` makes the process exit non-zero, for systemd.
    #[serde(default = "d_max_restarts")]
    pub max_restarts: u32,
    /// The window `max_restarts` is counted over.
    #[serde(default = "d_restart_window")]
    pub restart_window_s: u64,
}

fn d_max_restarts() -> u32 {
    5
}
fn d_restart_window() -> u64 {
    600
}

fn d_infer_timeout() -> u64 {
    120
}
fn d_stall_timeout() -> u64 {
    60
}

impl Default for SuperviseConfig {
    fn default() -> Self {
        SuperviseConfig {
            infer_timeout_s: d_infer_timeout(),
            stall_timeout_s: d_stall_timeout(),
            max_restarts: d_max_restarts(),
            restart_window_s: d_restart_window(),
        }
    }
}

impl SuperviseConfig {
    /// Problems as (key within `[supervise]`, reason).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.infer_timeout_s == 0 {
            out.push(("infer_timeout_s", "must be at least 1 second".into()));
        }
        if self.stall_timeout_s == 0 {
            out.push(("stall_timeout_s", "must be at least 1 second".into()));
        }
        if self.restart_window_s == 0 {
            out.push(("restart_window_s", "must be at least 1 second".into()));
        }
        out
    }
}

/// First delay before a failed stage is restarted.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The delay doubles up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run this long counts as healthy: the next failure starts again at 1 s.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The one back-off: a delay that doubles from `first` to `max` on every
/// failure and goes back to `first` on success. Stage restarts, MQTT
/// reconnects and camera reconnects all wait by it.
#[derive(Debug, Clone)]
pub struct Delay {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Delay {
    /// `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Delay {
        Delay {
            first,
            max: max.max(first),
            next: first,
        }
    }

    /// The delay to wait now; the next one is twice as long (at most `max`).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// After a success: the next wait is `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// `d` scaled by a factor in [0.5, 1.5), so a fleet does not reconnect in
/// step.
pub fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d.mul_f64(0.5 + (nanos % 1000) as f64 / 1000.0)
}

/// Restart delays for one stage: a [`Delay`] of 1 s doubling to 60 s, reset
/// after a healthy run, and a limit on restarts within a window.
#[derive(Debug)]
pub struct Backoff {
    delay: Delay,
    failures: std::collections::VecDeque<Instant>,
    max_restarts: u32,
    window: Duration,
}

impl Backoff {
    /// Back-off under `cfg`'s limits.
    pub fn new(cfg: &SuperviseConfig) -> Backoff {
        Backoff {
            delay: Delay::new(BACKOFF_FIRST, BACKOFF_MAX),
            failures: Default::default(),
            max_restarts: cfg.max_restarts,
            window: Duration::from_secs(cfg.restart_window_s),
        }
    }

    /// Records a failure at `now` of a run that lasted `ran_for`: the delay
    /// before the restart, or `None` when the stage has failed more than
    /// `max_restarts` times within the window and the process should exit.
    pub fn failed(&mut self, now: Instant, ran_for: Duration) -> Option<Duration> {
        if ran_for >= HEALTHY_RUN {
            self.delay.reset();
        }
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            self.failures.pop_front();
        }
        if self.failures.len() > self.max_restarts as usize {
            return None;
        }
        Some(self.delay.next_delay())
    }

    /// Failures inside the window.
    pub fn recent(&self) -> usize {
        self.failures.len()
    }
}

/// What a caught panic said.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `body` as the stage `beat` names, restarting it in place with
/// back-off when it fails or panics, until it returns `Ok` (a clean stop) or
/// `shutdown` stops. When the stage fails too often, `shutdown` fails with
/// the reason, and the daemon exits non-zero so systemd restarts the whole
/// process.
pub fn run_restarting(
    beat: &Stage,
    cfg: &SuperviseConfig,
    shutdown: &crate::shutdown::Shutdown,
    on_restart: &dyn Fn(),
    mut body: impl FnMut() -> Result<(), String>,
) {
    let mut backoff = Backoff::new(cfg);
    loop {
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut body));
        let reason = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(panic) => format!("panicked: {}", panic_text(&*panic)),
        };
        if shutdown.is_stopping() {
            return;
        }
        let name = beat.name();
        match backoff.failed(Instant::now(), started.elapsed()) {
            Some(delay) => {
                on_restart();
                tracing::warn!(
                    stage = name,
                    "stage {name} failed: {reason}; restarting it in {} s ({} failure(s) in the last {} s, limit {})",
                    delay.as_secs(),
                    backoff.recent(),
                    cfg.restart_window_s,
                    cfg.max_restarts
                );
                // Waiting out the back-off is legitimate: keep beating.
                if shutdown.sleep_beating(delay, Duration::from_millis(500), &|| beat.beat()) {
                    return;
                }
            }
            None => {
                let why = format!(
                    "stage {name} failed {} times within {} s (last: {reason}); giving up so systemd restarts edgewatch",
                    backoff.recent(),
                    cfg.restart_window_s
                );
                tracing::error!(stage = name, "{why}");
                shutdown.fail(why);
                return;
            }
        }
    }
}

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
    fn backoff_doubles_to_a_minute_resets_after_health_and_gives_up() {
        let cfg = SuperviseConfig {
            max_restarts: 8,
            restart_window_s: 3600,
            ..SuperviseConfig::default()
        };
        let mut b = Backoff::new(&cfg);
        let t0 = Instant::now();
        let short = Duration::from_millis(10);
        let delays: Vec<u64> = (0..8)
            .map(|i| {
                b.failed(t0 + Duration::from_secs(i), short)
                    .unwrap()
                    .as_secs()
            })
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        // The ninth failure within the hour is one too many.
        assert_eq!(b.failed(t0 + Duration::from_secs(9), short), None);

        let mut b = Backoff::new(&cfg);
        b.failed(t0, short);
        b.failed(t0 + Duration::from_secs(1), short);
        // After a healthy run the delay starts again at 1 s.
        let d = b.failed(t0 + Duration::from_secs(200), HEALTHY_RUN);
        assert_eq!(d, Some(Duration::from_secs(1)));

        // Failures older than the window are forgotten.
        let narrow = SuperviseConfig {
            max_restarts: 1,
            restart_window_s: 10,
            ..SuperviseConfig::default()
        };
        let mut b = Backoff::new(&narrow);
        assert!(b.failed(t0, short).is_some());
        assert!(b.failed(t0 + Duration::from_secs(30), short).is_some());
        assert!(b.failed(t0 + Duration::from_secs(31), short).is_none());
    }

    #[test]
    fn the_delay_doubles_to_its_cap_and_starts_over_after_a_success() {
        let s = Duration::from_secs;
        let mut d = Delay::new(s(1), s(5));
        let waits: Vec<Duration> = (0..5).map(|_| d.next_delay()).collect();
        assert_eq!(waits, [s(1), s(2), s(4), s(5), s(5)]);
        d.reset();
        assert_eq!(d.next_delay(), s(1));
        for _ in 0..100 {
            let j = jitter(s(10));
            assert!(j >= s(5) && j < s(15), "{j:?}");
        }
    }

    #[test]
    fn a_panicking_stage_is_restarted_then_given_up_on() {
        let hb = Heartbeats::default();
        let stage = hb.register("test-stage", Duration::from_secs(60));
        let cfg = SuperviseConfig {
            max_restarts: 1,
            restart_window_s: 60,
            ..SuperviseConfig::default()
        };
        let shutdown = crate::shutdown::Shutdown::new();
        let restarts = AtomicU64::new(0);
        let runs = AtomicU64::new(0);
        let started = Instant::now();
        run_restarting(
            &stage,
            &cfg,
            &shutdown,
            &|| {
                restarts.fetch_add(1, Ordering::SeqCst);
            },
            || {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first run breaks");
                }
                Err("second run fails".into())
            },
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(restarts.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() >= Duration::from_secs(1), "no back-off");
        assert!(shutdown.is_stopping());
        let why = shutdown.fatal().unwrap();
        assert!(why.contains("test-stage failed 2 times"), "{why}");
        assert!(why.contains("second run fails"), "{why}");
    }

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
