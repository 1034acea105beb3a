//! Slow start: a server that just became ready gets a growing share of the requests.
//!
//! A freshly started process often has cold caches, an unwarmed JIT and an empty connection pool;
//! handing it its full share at once (and the fair balancer would hand it *more*, since it is the
//! idle one) makes its first requests the slowest of all. So its weight ramps up linearly from 10%
//! to 100% over the upstream's `slow_start` window.

use std::time::Duration;

use tokio::time::Instant;

/// Weights returned by [`effective_weight`] are the configured weight times this.
pub const SCALE: u32 = 100;

/// Share of its weight a server gets the moment it becomes ready, in percent. Not zero: a server
/// at weight 0 would still be picked when it is the only idle one, and the first requests are also
/// what warms it up.
const INITIAL_PERCENT: u128 = 10;

/// The weight to balance a server with, scaled by [`SCALE`]: `weight * 100` once `window` has
/// passed since `ready_since`, `weight * 10` at `ready_since`, linear in between. A zero `window`
/// disables slow start.
///
/// The balancer compares `in_flight / weight` across servers, so **every** server's weight must
/// come from this function (a server past its window included), or the scaled weights of ramping
/// servers would be compared with unscaled ones. Scaling keeps the ramp smooth for weight 1,
/// which integer weights otherwise could not express.
///
/// A configured weight of 0 counts as 1, as in the balancer, so the result is never below 1;
/// it saturates at `u32::MAX`. `now` before `ready_since` (a stale `now`) counts as just ready.
pub fn effective_weight(weight: u32, ready_since: Instant, now: Instant, window: Duration) -> u32 {
    let weight = u128::from(weight.max(1));
    let full = weight * u128::from(SCALE);
    // Capped at ~584 years so the products below fit a u128 whatever the config says.
    let window = window.as_nanos().min(u128::from(u64::MAX));
    if window == 0 {
        return saturate(full);
    }
    let elapsed = now.saturating_duration_since(ready_since).as_nanos();
    if elapsed >= window {
        return saturate(full);
    }
    // weight * (10% + 90% * elapsed/window), in hundredths: at most 2^32 * 2^7 * 2^64.
    let percent_scaled = INITIAL_PERCENT * window + (u128::from(SCALE) - INITIAL_PERCENT) * elapsed;
    saturate(weight * percent_scaled / window).max(1)
}

fn saturate(v: u128) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(10);

    fn secs(n: f64) -> Duration {
        Duration::from_secs_f64(n)
    }

    #[test]
    fn zero_window_gives_full_weight_at_once() {
        let t = Instant::now();
        assert_eq!(effective_weight(3, t, t, Duration::ZERO), 300);
        assert_eq!(effective_weight(1, t, t, Duration::ZERO), 100);
    }

    #[test]
    fn ramps_linearly_from_ten_percent_to_full() {
        let t = Instant::now();
        assert_eq!(effective_weight(1, t, t, W), 10);
        assert_eq!(effective_weight(1, t, t + secs(5.0), W), 55);
        assert_eq!(effective_weight(2, t, t + secs(5.0), W), 110);
        assert_eq!(effective_weight(1, t, t + secs(9.999), W), 99);
        assert_eq!(effective_weight(1, t, t + W, W), 100);
        assert_eq!(effective_weight(1, t, t + secs(3600.0), W), 100);
    }

    #[test]
    fn never_decreases_over_the_window() {
        let t = Instant::now();
        let mut last = 0;
        for ms in (0..=11_000).step_by(7) {
            let w = effective_weight(4, t, t + Duration::from_millis(ms), W);
            assert!(w >= last, "at {ms}ms: {w} < {last}");
            assert!((40..=400).contains(&w), "at {ms}ms: {w}");
            last = w;
        }
        assert_eq!(last, 400);
    }

    #[test]
    fn stale_now_counts_as_just_ready() {
        let t = Instant::now() + secs(5.0);
        assert_eq!(effective_weight(1, t, t - secs(1.0), W), 10);
    }

    #[test]
    fn zero_weight_counts_as_one_and_result_is_at_least_one() {
        let t = Instant::now();
        assert_eq!(effective_weight(0, t, t, W), 10);
        assert_eq!(effective_weight(0, t, t + W, W), 100);
        // The tiniest possible start still leaves the server pickable.
        assert!(effective_weight(1, t, t, Duration::from_nanos(1)) >= 1);
    }

    #[test]
    fn huge_weights_saturate_instead_of_overflowing() {
        let t = Instant::now();
        assert_eq!(effective_weight(u32::MAX, t, t + W, W), u32::MAX);
        assert_eq!(effective_weight(u32::MAX, t, t, Duration::ZERO), u32::MAX);
        assert_eq!(effective_weight(u32::MAX, t, t, W), u32::MAX);
        let long = Duration::from_secs(u64::MAX);
        assert_eq!(effective_weight(7, t, t + W, long), 70);
        assert_eq!(effective_weight(7, t, t + W, Duration::MAX), 70);
        assert_eq!(
            effective_weight(u32::MAX, t, t + W, Duration::MAX),
            u32::MAX
        );
    }

    #[test]
    fn full_servers_and_ramping_ones_stay_comparable() {
        // A weight-1 server ready for long vs. one ready 1s ago (19%): with 1 request on the new
        // one and 5 on the old one, in_flight/weight says the new one is busier (1/19 > 5/100).
        let t = Instant::now();
        let old = effective_weight(1, t, t + secs(100.0), W);
        let new = effective_weight(1, t + secs(99.0), t + secs(100.0), W);
        assert_eq!((old, new), (100, 19));
        assert!(u64::from(1u32) * u64::from(old) > 5 * u64::from(new));
    }
}
