//! The dashboard's charts: every few seconds a sample of each upstream (requests per second,
//! p50 and p99 latency, in flight, held) goes into a ring of fixed size, so the last 15 minutes
//! are kept in rouse's memory, with no service outside it.
//!
//! Sampling reads what the data plane keeps anyway (the request-duration histogram, in-flight
//! and held counters), on the admin API's runtime: a request costs nothing more. An upstream
//! gets its ring (3.6 KB) only once it has seen traffic, so 1,000 configured upstreams that
//! are idle cost a few bytes each.

pub mod quantile;
pub mod ring;
pub mod timeline;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rouse_state::{Metrics, Table};
use tokio::time::Instant;

use quantile::Buckets;
use ring::{Point, Ring};

/// How often each upstream is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How far back the charts go.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// One upstream's samples and what the next one is measured against.
#[derive(Debug)]
struct Track {
    ring: Ring,
    /// The histogram's counts at the previous sample.
    before: Buckets,
}

#[derive(Debug, Default)]
struct Tracks {
    by_name: HashMap<String, Track>,
    /// When the previous sample was taken; `None` before the first.
    last: Option<Instant>,
    /// Scratch space for reading histograms.
    text: String,
}

#[derive(Debug)]
pub struct History {
    every: Duration,
    capacity: usize,
    tracks: Mutex<Tracks>,
}

impl Default for History {
    fn default() -> History {
        History::new(SAMPLE_EVERY, WINDOW)
    }
}

impl History {
    /// Samples taken every `every`, kept for `window`.
    pub fn new(every: Duration, window: Duration) -> History {
        let every = every.max(Duration::from_millis(1));
        let capacity = (window.as_millis() / every.as_millis()).max(1);
        History {
            every,
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            tracks: Mutex::default(),
        }
    }

    pub fn every(&self) -> Duration {
        self.every
    }

    pub fn window(&self) -> Duration {
        self.every * u32::try_from(self.capacity).unwrap_or(u32::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracks> {
        self.tracks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one sample of every upstream of `table`, at `now` (`wall`: the same instant on the
    /// wall clock). The first sample only sets where counting starts from.
    pub fn sample(&self, table: &Table, now: Instant, wall: SystemTime) {
        let mut guard = self.lock();
        let tracks = &mut *guard;
        let elapsed = tracks.last.map(|l| now.saturating_duration_since(l));
        tracks.last = Some(now);
        if !tracks.by_name.is_empty() {
            let names: HashSet<&str> = table.upstreams.iter().map(|u| u.name()).collect();
            tracks.by_name.retain(|n, _| names.contains(n.as_str()));
        }
        let at_s = u32::try_from(timeline::unix_ms(wall) / 1000).unwrap_or(u32::MAX);
        for u in &table.upstreams {
            let histogram = table
                .metrics
                .request_duration
                .get(&Metrics::upstream(u.name()))
                .map(|h| h.clone());
            let in_flight: u32 = u.servers.iter().map(|s| s.in_flight()).sum();
            let held = u.held();
            if histogram.is_none()
                && in_flight == 0
                && held == 0
                && !tracks.by_name.contains_key(u.name())
            {
                continue;
            }
            let counts = match &histogram {
                Some(h) => Buckets::read(h, &mut tracks.text),
                None => Buckets::default(),
            };
            let track = tracks
                .by_name
                .entry(u.name().to_owned())
                .or_insert_with(|| Track {
                    ring: Ring::new(self.capacity),
                    // At the first sample, what was counted before is no one interval's;
                    // afterwards a new series began within the last interval.
                    before: if elapsed.is_none() {
                        counts.clone()
                    } else {
                        Buckets::default()
                    },
                });
            let Some(elapsed) = elapsed else {
                track.before = counts;
                continue;
            };
            let delta = counts.since(&track.before);
            track.before = counts;
            let secs = elapsed.as_secs_f64();
            let ms = |q: f64| delta.quantile(q).map_or(f32::NAN, |s| (s * 1000.0) as f32);
            track.ring.push(Point {
                at_s,
                rps: if secs > 0.0 {
                    (delta.total() as f64 / secs) as f32
                } else {
                    0.0
                },
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
                in_flight: u16::try_from(in_flight).unwrap_or(u16::MAX),
                held: u16::try_from(held).unwrap_or(u16::MAX),
            });
        }
    }

    /// The samples of upstream `name`, oldest first (empty before it saw any traffic).
    pub fn points(&self, name: &str) -> Vec<Point> {
        self.lock()
            .by_name
            .get(name)
            .map(|t| t.ring.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Upstreams with a ring: the memory the history holds is this many times 3.6 KB.
    pub fn tracked(&self) -> usize {
        self.lock().by_name.len()
    }

    /// Samples the table every [`History::every`] until dropped; spawned by [`crate::serve`].
    pub async fn run(self: Arc<Self>, table: Arc<ArcSwap<Table>>) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sample(&table.load(), Instant::now(), SystemTime::now());
        }
    }
}

#[cfg(test)]
mod tests;
