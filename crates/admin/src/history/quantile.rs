//! Percentiles from the request-duration histogram the data plane already keeps: its bucket
//! counts now, less those of the previous sample, give the durations of that interval alone.
//!
//! prometheus-client keeps the buckets private; its text encoding is the one way to read them,
//! so one upstream's histogram is encoded alone and its `_bucket` lines read back.

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Cumulative counts per bucket, in the order of the upper bounds (the last is +Inf).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Buckets {
    pub upper: Vec<f64>,
    pub cumulative: Vec<u64>,
}

impl Buckets {
    /// The buckets of `h` now; `text` is scratch space kept between calls.
    pub fn read(h: &Histogram, text: &mut String) -> Buckets {
        let mut registry = Registry::default();
        registry.register("h", "", h.clone());
        text.clear();
        if prometheus_client::encoding::text::encode(text, &registry).is_err() {
            return Buckets::default();
        }
        Buckets::parse(text)
    }

    /// Reads `h_bucket{le="0.001"} 3` lines.
    fn parse(text: &str) -> Buckets {
        let mut b = Buckets::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("h_bucket{le=\"") else {
                continue;
            };
            let Some((le, count)) = rest.split_once("\"} ") else {
                continue;
            };
            let upper = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse() {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            // OpenMetrics may follow the count with an exemplar: the first word is the count.
            let Some(Ok(count)) = count.split_whitespace().next().map(str::parse::<u64>) else {
                continue;
            };
            b.upper.push(upper);
            b.cumulative.push(count);
        }
        b
    }

    /// Requests counted, all buckets.
    pub fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// What was counted since `before` (same bounds; anything else counts as all of it).
    pub fn since(&self, before: &Buckets) -> Buckets {
        let same = before.upper == self.upper;
        Buckets {
            upper: self.upper.clone(),
            cumulative: self
                .cumulative
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    let b = if same { before.cumulative[i] } else { 0 };
                    c.saturating_sub(b)
                })
                .collect(),
        }
    }

    /// The `q` quantile (0..=1), interpolated within its bucket as Prometheus'
    /// `histogram_quantile` does; `None` with nothing counted. A quantile in the +Inf bucket is
    /// the largest finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        let mut lower = 0.0;
        for (i, &c) in self.cumulative.iter().enumerate() {
            let upper = self.upper[i];
            if c as f64 >= rank && c > below {
                if upper.is_infinite() {
                    return Some(lower);
                }
                let within = (rank - below as f64) / (c - below) as f64;
                return Some(lower + (upper - lower) * within);
            }
            below = c;
            lower = upper;
        }
        Some(lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::exponential_buckets;

    #[test]
    fn reads_the_buckets_of_a_histogram() {
        let h = Histogram::new(exponential_buckets(0.001, 2.0, 4));
        for v in [0.0005, 0.0015, 0.0015, 0.003, 5.0] {
            h.observe(v);
        }
        let b = Buckets::read(&h, &mut String::new());
        assert_eq!(b.upper, [0.001, 0.002, 0.004, 0.008, f64::INFINITY]);
        assert_eq!(b.cumulative, [1, 3, 4, 4, 5]);
        assert_eq!(b.total(), 5);
    }

    #[test]
    fn quantiles_of_an_interval_come_from_its_own_counts() {
        let h = Histogram::new(exponential_buckets(0.001, 2.0, 4));
        for _ in 0..100 {
            h.observe(0.0005);
        }
        let mut text = String::new();
        let before = Buckets::read(&h, &mut text);
        // The next interval: 100 requests between 2 and 4 ms.
        for _ in 0..100 {
            h.observe(0.003);
        }
        let delta = Buckets::read(&h, &mut text).since(&before);
        assert_eq!(delta.total(), 100);
        let p50 = delta.quantile(0.5).unwrap();
        assert!((p50 - 0.003).abs() < 1e-9, "{p50}");
        let p99 = delta.quantile(0.99).unwrap();
        assert!(p99 > 0.0039 && p99 <= 0.004, "{p99}");
        assert_eq!(
            Buckets::read(&h, &mut text)
                .since(&Buckets::read(&h, &mut text))
                .quantile(0.5),
            None
        );
    }

    #[test]
    fn the_inf_bucket_gives_the_largest_bound() {
        let b = Buckets {
            upper: vec![0.001, f64::INFINITY],
            cumulative: vec![0, 4],
        };
        assert_eq!(b.quantile(0.5), Some(0.001));
    }
}
