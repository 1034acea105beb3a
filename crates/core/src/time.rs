//! Durations from the config turned into instants without overflow: the one place rouse adds a
//! duration to an instant.
//!
//! `Instant + Duration` panics past the clock's range, and a timeout of "400000000000y" passes
//! humantime: hyper's header timer, the shutdown deadline and the hold deadline panicked on it.
//! Config validation bounds every value, but no code may rely on that; anything this far out
//! means "never" for a running process, so it is capped the way tokio caps its own far future.

use std::time::Duration;

use tokio::time::Instant;

/// Thirty years: what tokio itself uses for "never" (`Instant::far_future`).
pub const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `d`, at most [`FAR`]: safe to hand to code that adds it to an instant (hyper's timers).
pub fn cap(d: Duration) -> Duration {
    d.min(FAR)
}

/// `now + d`, saturating at `now + FAR`.
pub fn deadline(now: Instant, d: Duration) -> Instant {
    // A monotonic clock thirty years from its end does not exist; the fallback only keeps
    // this total.
    now.checked_add(cap(d)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(deadline(now, Duration::MAX), now + FAR);
        assert_eq!(
            deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(cap(Duration::MAX), FAR);
        assert_eq!(cap(Duration::from_millis(300)), Duration::from_millis(300));
    }
}
