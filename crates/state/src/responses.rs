//! One server's `rouse_requests_total` counters, by status code, looked up in the family once.
//!
//! A server sees a handful of codes (200, 304, 404, 502, ...), and 10,000 servers may be
//! configured: a slot per possible code (16 KB a server) cost 160 MB before any request. So a
//! few slots, each taken by the first code that needs it, found by a scan of the filled ones;
//! a code past them is looked up in the family each time (correct, only slower).

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;

use crate::metrics::{Metrics, RequestLabels};

/// Distinct codes one server counts without a family lookup.
const SLOTS: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct Responses {
    slots: [OnceLock<(u16, Counter)>; SLOTS],
}

impl Responses {
    /// Counts one answer with `code`; `labels` makes the series' labels when it is new.
    pub(crate) fn count(&self, code: u16, metrics: &Metrics, labels: impl Fn() -> RequestLabels) {
        for slot in &self.slots {
            // Two threads may race for an empty slot with different codes: one wins it, and
            // the other goes on to the next slot.
            let (c, counter) =
                slot.get_or_init(|| (code, metrics.requests.get_or_create(&labels()).clone()));
            if *c == code {
                counter.inc();
                return;
            }
        }
        metrics.requests.get_or_create(&labels()).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(code: u16) -> RequestLabels {
        RequestLabels {
            upstream: "u".into(),
            server: "s".into(),
            code,
        }
    }

    #[test]
    fn every_code_is_counted_in_its_series_past_the_slots_too() {
        let metrics = Metrics::default();
        let r = Responses::default();
        let codes: Vec<u16> = (0..SLOTS as u16 + 4).map(|k| 200 + k).collect();
        for (n, &code) in codes.iter().enumerate() {
            for _ in 0..=n {
                r.count(code, &metrics, || labels(code));
            }
        }
        r.count(200, &metrics, || labels(200));
        for (n, &code) in codes.iter().enumerate() {
            let want = n as u64 + 1 + u64::from(code == 200);
            assert_eq!(
                metrics.requests.get_or_create(&labels(code)).get(),
                want,
                "{code}"
            );
        }
    }

    #[test]
    fn racing_threads_count_each_answer_once() {
        let metrics = Metrics::default();
        let r = Responses::default();
        std::thread::scope(|s| {
            for t in 0..4u16 {
                let (r, metrics) = (&r, &metrics);
                s.spawn(move || {
                    for k in 0..1000u16 {
                        let code = 200 + (k + t) % 12;
                        r.count(code, metrics, || labels(code));
                    }
                });
            }
        });
        let total: u64 = (200..212)
            .map(|c| metrics.requests.get_or_create(&labels(c)).get())
            .sum();
        assert_eq!(total, 4000);
    }
}
