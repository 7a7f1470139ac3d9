//! The one back-off: a delay that doubles to a cap and starts over after a
//! success, with jitter so a fleet does not retry in step. Stage restarts,
//! MQTT reconnects, camera reconnects and the outbox's retries all wait by
//! it.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
