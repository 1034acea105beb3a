//! Retry pacing: exponential backoff, and passive failure tracking built on it.

use std::time::Duration;

use tokio::time::Instant;

/// Exponential backoff with a cap: base, base*2, base*4, ... capped at max.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based). Never exceeds `max` (so a `base`
    /// above `max` gives `max`), and saturates rather than panics for any `attempt`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let uncapped = match 1u32.checked_shl(attempt) {
            Some(factor) => self.base.saturating_mul(factor),
            None if self.base.is_zero() => Duration::ZERO,
            // 2^attempt no longer fits a u32; any non-zero base is past every sane cap by then.
            None => Duration::MAX,
        };
        uncapped.min(self.max)
    }
}

/// Passive failure tracking for one server (nginx's max_fails/fail_timeout, with backoff):
/// a failed connect leaves the server out until `now + backoff.delay(consecutive-1)`; a success resets.
///
/// Backing off exponentially, rather than nginx's fixed `fail_timeout`, keeps a server that is
/// down for long from costing one failed connect (and a slower request) every timeout, while a
/// blip is retried almost at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureTracker {
    consecutive: u32,
    until: Option<Instant>,
}

impl FailureTracker {
    /// Returns the instant until which the server is left out.
    pub fn record_failure(&mut self, now: Instant, backoff: &Backoff) -> Instant {
        self.consecutive = self.consecutive.saturating_add(1);
        let until = crate::time::deadline(now, backoff.delay(self.consecutive - 1));
        self.until = Some(until);
        until
    }

    pub fn record_success(&mut self) {
        self.consecutive = 0;
        self.until = None;
    }

    /// Once `until` has passed the server is tried again, but `consecutive` is kept, so if that
    /// probe fails too the next wait is longer.
    pub fn is_failed(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    pub fn until(&self) -> Option<Instant> {
        self.until
    }

    pub fn consecutive(&self) -> u32 {
        self.consecutive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const B: Backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };

    #[test]
    fn delay_doubles_then_caps() {
        let got: Vec<_> = (0..7).map(|a| B.delay(a)).collect();
        assert_eq!(
            got,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000),
                ms(1000)
            ]
        );
    }

    #[test]
    fn delay_never_panics_for_huge_attempts() {
        for a in [31, 32, 33, 63, 64, 1000, u32::MAX] {
            assert_eq!(B.delay(a), B.max, "attempt {a}");
        }
        let unbounded = Backoff {
            base: Duration::from_secs(u64::MAX / 2),
            max: Duration::MAX,
        };
        assert_eq!(unbounded.delay(5), Duration::MAX);
        assert_eq!(unbounded.delay(u32::MAX), Duration::MAX);
    }

    #[test]
    fn delay_edge_configs() {
        let zero = Backoff {
            base: Duration::ZERO,
            max: ms(500),
        };
        assert_eq!(zero.delay(0), Duration::ZERO);
        assert_eq!(zero.delay(u32::MAX), Duration::ZERO);
        let base_above_max = Backoff {
            base: ms(900),
            max: ms(500),
        };
        assert_eq!(base_above_max.delay(0), ms(500));
    }

    #[test]
    fn fresh_tracker_is_not_failed() {
        let t = FailureTracker::default();
        assert!(!t.is_failed(Instant::now()));
        assert_eq!(t.until(), None);
        assert_eq!(t.consecutive(), 0);
    }

    #[test]
    fn failure_leaves_server_out_until_backoff_elapses() {
        let now = Instant::now();
        let mut t = FailureTracker::default();
        let until = t.record_failure(now, &B);
        assert_eq!(until, now + ms(100));
        assert_eq!(t.until(), Some(until));
        assert_eq!(t.consecutive(), 1);
        assert!(t.is_failed(now));
        assert!(t.is_failed(now + ms(99)));
        assert!(!t.is_failed(now + ms(100)));
    }

    #[test]
    fn consecutive_failures_back_off_exponentially_up_to_max() {
        let mut now = Instant::now();
        let mut t = FailureTracker::default();
        let mut waits = Vec::new();
        for _ in 0..6 {
            let until = t.record_failure(now, &B);
            waits.push(until - now);
            now = until;
        }
        assert_eq!(
            waits,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(t.consecutive(), 6);
    }

    #[test]
    fn success_resets() {
        let now = Instant::now();
        let mut t = FailureTracker::default();
        t.record_failure(now, &B);
        t.record_failure(now, &B);
        t.record_success();
        assert_eq!(t, FailureTracker::default());
        assert!(!t.is_failed(now));
        assert_eq!(t.record_failure(now, &B), now + ms(100));
    }

    #[test]
    fn absurd_max_does_not_panic() {
        let now = Instant::now();
        let huge = Backoff {
            base: Duration::MAX,
            max: Duration::MAX,
        };
        let mut t = FailureTracker::default();
        let until = t.record_failure(now, &huge);
        assert!(until > now);
        assert!(t.is_failed(now));
    }
}
