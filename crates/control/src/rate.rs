//! Requests per second over a sliding window, from a monotonically growing request counter.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct RateMeter {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    pub fn new(window: Duration) -> RateMeter {
        RateMeter {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Records the counter's value at `now` and returns the rate over the window.
    pub fn sample(&mut self, now: Instant, total: u64) -> f64 {
        self.samples.push_back((now, total));
        while let Some(&(t, _)) = self.samples.front() {
            if now.saturating_duration_since(t) > self.window && self.samples.len() > 2 {
                self.samples.pop_front();
            } else {
                break;
            }
        }
        let (t0, c0) = self.samples[0];
        let secs = now.saturating_duration_since(t0).as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        total.saturating_sub(c0) as f64 / secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_the_window() {
        let t = Instant::now();
        let mut m = RateMeter::new(Duration::from_secs(5));
        assert_eq!(m.sample(t, 0), 0.0);
        for s in 1..=10u64 {
            let r = m.sample(t + Duration::from_secs(s), s * 100);
            assert!((r - 100.0).abs() < 1e-9, "{r}");
        }
        // Traffic stops: the rate decays to zero once the window has passed.
        let r = m.sample(t + Duration::from_secs(17), 1000);
        assert!(r < 1.0, "{r}");
    }

    #[test]
    fn a_counter_reset_is_not_negative() {
        let t = Instant::now();
        let mut m = RateMeter::new(Duration::from_secs(5));
        m.sample(t, 500);
        assert_eq!(m.sample(t + Duration::from_secs(1), 10), 0.0);
    }
}
