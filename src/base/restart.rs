//! Restarting a stage that fails: the `[supervise]` limits, the restart
//! window and the loop that runs a stage again after a panic or an error.

use crate::base::issue::Issue;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::backoff::Delay;
use super::heartbeats::Stage;

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
    /// Problems, keyed within `[supervise]`.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        if self.infer_timeout_s == 0 {
            out.push(Issue::new("infer_timeout_s", "must be at least 1 second"));
        }
        if self.stall_timeout_s == 0 {
            out.push(Issue::new("stall_timeout_s", "must be at least 1 second"));
        }
        if self.restart_window_s == 0 {
            out.push(Issue::new("restart_window_s", "must be at least 1 second"));
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

/// The restart limit: at most `max_restarts` restarts within
/// `restart_window_s`. Stage restarts and hung-worker replacements both
/// count by it.
#[derive(Debug)]
pub struct RestartWindow {
    restarts: std::collections::VecDeque<Instant>,
    max_restarts: u32,
    window: Duration,
}

impl RestartWindow {
    /// The window under `cfg`'s limits.
    pub fn new(cfg: &SuperviseConfig) -> RestartWindow {
        RestartWindow {
            restarts: Default::default(),
            max_restarts: cfg.max_restarts,
            window: Duration::from_secs(cfg.restart_window_s),
        }
    }

    /// Records a restart at `now`; false when it is one too many within
    /// the window and the process should exit for systemd to restart it.
    pub fn allow(&mut self, now: Instant) -> bool {
        self.restarts.push_back(now);
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            self.restarts.pop_front();
        }
        self.restarts.len() <= self.max_restarts as usize
    }

    /// Restarts inside the window.
    pub fn recent(&self) -> usize {
        self.restarts.len()
    }

    /// The limit, for messages.
    pub fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    /// The window's length, for messages.
    pub fn window(&self) -> Duration {
        self.window
    }
}

/// Restart delays for one stage: a [`Delay`] of 1 s doubling to 60 s, reset
/// after a healthy run, and the [`RestartWindow`].
#[derive(Debug)]
pub struct Backoff {
    delay: Delay,
    window: RestartWindow,
}

impl Backoff {
    /// Back-off under `cfg`'s limits.
    pub fn new(cfg: &SuperviseConfig) -> Backoff {
        Backoff {
            delay: Delay::new(BACKOFF_FIRST, BACKOFF_MAX),
            window: RestartWindow::new(cfg),
        }
    }

    /// Records a failure at `now` of a run that lasted `ran_for`: the delay
    /// before the restart, or `None` when the stage has failed more than
    /// `max_restarts` times within the window and the process should exit.
    pub fn failed(&mut self, now: Instant, ran_for: Duration) -> Option<Duration> {
        if ran_for >= HEALTHY_RUN {
            self.delay.reset();
        }
        if !self.window.allow(now) {
            return None;
        }
        Some(self.delay.next_delay())
    }

    /// Failures inside the window.
    pub fn recent(&self) -> usize {
        self.window.recent()
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
    shutdown: &crate::base::shutdown::Shutdown,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::heartbeats::Heartbeats;
    use std::sync::atomic::{AtomicU64, Ordering};

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
    fn a_panicking_stage_is_restarted_then_given_up_on() {
        let hb = Heartbeats::default();
        let stage = hb.register("test-stage", Duration::from_secs(60));
        let cfg = SuperviseConfig {
            max_restarts: 1,
            restart_window_s: 60,
            ..SuperviseConfig::default()
        };
        let shutdown = crate::base::shutdown::Shutdown::new();
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
}
