//! One stop for the daemon: asked for by a signal, by a reload that removes
//! a source, or by a stage that failed too often (then with the reason, and
//! the process exits non-zero so systemd restarts it).
//!
//! A `Shutdown` is cheap to clone; every clone sees the same stop. A
//! [`child`](Shutdown::child) stops on its own (one source) but reports a
//! fatal failure into its parent's slot, which the daemon's loop watches.
//! Waits end as soon as the stop is asked for, not at the next poll.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A stop flag with a wake-up, and the reason a stage gave up, if one did.
#[derive(Clone, Default)]
pub struct Shutdown {
    flag: Arc<Flag>,
    fatal: Arc<Mutex<Option<String>>>,
}

#[derive(Default)]
struct Flag {
    stopping: AtomicBool,
    lock: Mutex<()>,
    woken: Condvar,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("stopping", &self.is_stopping())
            .finish()
    }
}

impl Shutdown {
    /// Not stopping yet.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Its own stop, the same fatal slot: one source under the daemon.
    pub fn child(&self) -> Shutdown {
        Shutdown {
            flag: Arc::default(),
            fatal: self.fatal.clone(),
        }
    }

    /// Asks everything that shares this stop to finish; wakes every wait.
    pub fn stop(&self) {
        self.flag.stopping.store(true, Ordering::SeqCst);
        let _guard = self.flag.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.flag.woken.notify_all();
    }

    /// A stage gave up: keeps the first reason and stops.
    pub fn fail(&self, why: String) {
        self.fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
        self.stop();
    }

    /// Whether the stop was asked for.
    pub fn is_stopping(&self) -> bool {
        self.flag.stopping.load(Ordering::SeqCst)
    }

    /// Why a stage gave up, if one did (here or in a child).
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits `d`, or less if the stop comes first. True when stopping.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut guard = self.flag.lock.lock().unwrap_or_else(|p| p.into_inner());
        while !self.is_stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            guard = self
                .flag
                .woken
                .wait_timeout(guard, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        self.is_stopping()
    }

    /// Like [`sleep`](Shutdown::sleep), calling `beat` at least every
    /// `every` meanwhile (a stage waiting out a back-off is not hung).
    pub fn sleep_beating(&self, d: Duration, every: Duration, beat: &dyn Fn()) -> bool {
        let until = Instant::now() + d;
        loop {
            beat();
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.sleep(left.min(every)) {
                return self.is_stopping();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_wakes_a_sleeper_at_once_and_a_child_stops_alone() {
        let s = Shutdown::new();
        let sleeper = {
            let s = s.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                assert!(s.sleep(Duration::from_secs(30)));
                t.elapsed()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        let child = s.child();
        child.stop();
        assert!(!s.is_stopping(), "a child's stop is its own");
        s.stop();
        assert!(sleeper.join().unwrap() < Duration::from_secs(5));
        assert!(!Shutdown::new().sleep(Duration::from_millis(10)));
    }

    #[test]
    fn a_child_s_failure_reaches_the_parent_with_the_first_reason() {
        let s = Shutdown::new();
        let child = s.child();
        child.fail("camera gave up".into());
        child.fail("later".into());
        assert!(child.is_stopping());
        assert_eq!(s.fatal().as_deref(), Some("camera gave up"));
    }
}
