//! When to order a certificate, when to look again, how long to wait after a failure. Pure:
//! the time is a parameter.

use std::time::{Duration, SystemTime};

/// However far the next renewal is, the loop looks again this often: a wall clock that jumped
/// (a suspended VM, a fixed NTP offset) is noticed within a day.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(86_400);

/// The first wait after a failed order, doubled per consecutive failure up to [`RETRY_MAX`].
/// A minute rides out a listener or DNS change in progress; an hour keeps a CA that refuses
/// (rate limits, a broken DNS record) from being hammered.
pub const RETRY_FIRST: Duration = Duration::from_secs(60);
pub const RETRY_MAX: Duration = Duration::from_secs(3600);

/// When a certificate valid from `not_before` to `not_after` is due: `renew_before` ahead of
/// its expiry, but not before half of its lifetime has passed, so that a `renew_before` longer
/// than a short-lived certificate's life does not renew it again and again.
pub fn renew_at(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Duration,
) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let ahead = renew_before.min(lifetime / 2);
    not_after.checked_sub(ahead).unwrap_or(not_before)
}

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Order a certificate now.
    Order,
    /// Nothing to do for this long, then look again.
    Wait(Duration),
}

/// `due` is when the served certificate is to be renewed (`None`: nothing is served yet).
pub fn next(now: SystemTime, due: Option<SystemTime>) -> Next {
    match due.map(|at| at.duration_since(now)) {
        Some(Ok(left)) if !left.is_zero() => Next::Wait(left.min(CHECK_INTERVAL)),
        _ => Next::Order,
    }
}

/// Waits between failed orders: `first`, doubling, at most `max`; back to `first` after a
/// success.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The wait after one more failure.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    pub fn succeeded(&mut self) {
        self.next = self.first;
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(RETRY_FIRST, RETRY_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(days: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + DAY * days
    }

    #[test]
    fn renews_ahead_of_expiry() {
        // Let's Encrypt's 90 days, renewed 30 days ahead: on day 60.
        assert_eq!(renew_at(at(0), at(90), 30 * DAY), at(60));
        // A 6-day certificate with the same setting: at half its life, not at once.
        assert_eq!(renew_at(at(0), at(6), 30 * DAY), at(3));
        // Dates the wrong way round: due at once rather than never.
        assert_eq!(renew_at(at(10), at(5), 30 * DAY), at(5));
    }

    #[test]
    fn orders_when_nothing_is_served_or_it_is_due() {
        assert_eq!(next(at(1), None), Next::Order);
        assert_eq!(next(at(60), Some(at(60))), Next::Order);
        assert_eq!(next(at(61), Some(at(60))), Next::Order);
    }

    #[test]
    fn otherwise_looks_again_at_most_a_day_later() {
        assert_eq!(next(at(1), Some(at(60))), Next::Wait(DAY));
        let hour = Duration::from_secs(3600);
        assert_eq!(next(at(60) - hour, Some(at(60))), Next::Wait(hour));
    }

    #[test]
    fn backoff_doubles_to_its_bound_and_resets() {
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..9).map(|_| backoff.failed().as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        backoff.succeeded();
        assert_eq!(backoff.failed(), RETRY_FIRST);
    }
}
