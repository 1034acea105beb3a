//! An upstream: its config, its servers, its balancer, and the requests held for it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::metrics::histogram::Histogram;
use std::time::Duration;

use rouse_config::{Balance, SupervisorRef, UpstreamConfig};
use rouse_core::backoff::Backoff;
use rouse_core::balance::{Balancer, Candidate, CandidateSet, Kind};
use rouse_core::slow_start;
use rouse_core::state::ServerState;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::server::Server;

#[derive(Debug)]
pub struct Upstream {
    pub config: UpstreamConfig,
    pub servers: Vec<Arc<Server>>,
    pub balancer: Balancer,
    pub backoff: Backoff,
    /// Requests waiting for a ready server.
    held: AtomicUsize,
    /// Bumped by the control plane whenever something a held request waits for changes: a
    /// server became ready, or starting failed. Held requests re-check when it moves.
    changed: watch::Sender<u64>,
    /// Why the last start failed, while no server is ready: held requests get this at once
    /// instead of waiting out `start_timeout`.
    start_error: Mutex<Option<String>>,
    /// Exponentially weighted mean of start → ready, in ms (0 = never measured).
    start_ewma_ms: AtomicU64,
    /// This upstream's `rouse_request_duration_seconds`, looked up in the family once.
    duration: OnceLock<Histogram>,
    /// A reload replaced this upstream with a new one of the same name: requests held here
    /// move over to it.
    replaced: AtomicBool,
}

impl Upstream {
    pub fn new(config: UpstreamConfig, epoch: Instant) -> Upstream {
        // Static servers are assumed up until a connect proves otherwise; supervised ones start
        // stopped until their supervisor says they run.
        let initial = match config.supervisor {
            SupervisorRef::Static => ServerState::Ready,
            _ => ServerState::Stopped,
        };
        let servers = config
            .servers
            .iter()
            .map(|s| Arc::new(Server::new(s.clone(), initial, epoch)))
            .collect();
        let balancer = Balancer::new(match config.balance {
            Balance::Fair => Kind::Fair,
            Balance::RoundRobin => Kind::RoundRobin,
        });
        let backoff = Backoff {
            base: config.fail_timeout,
            max: config.fail_timeout_max,
        };
        Upstream {
            config,
            servers,
            balancer,
            backoff,
            held: AtomicUsize::new(0),
            changed: watch::Sender::new(0),
            start_error: Mutex::new(None),
            start_ewma_ms: AtomicU64::new(0),
            duration: OnceLock::new(),
            replaced: AtomicBool::new(false),
        }
    }

    /// The upstream of a reloaded config that keeps `servers` (some of them carried over from
    /// the previous generation, with their processes, states and counters), and the measured
    /// start times of the upstream it replaces.
    pub fn succeeding(
        config: UpstreamConfig,
        servers: Vec<Arc<Server>>,
        previous: &Upstream,
        epoch: Instant,
    ) -> Upstream {
        let mut up = Upstream::new(config, epoch);
        up.servers = servers;
        up.start_ewma_ms = AtomicU64::new(previous.start_ewma_ms.load(Ordering::Relaxed));
        up
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Records one request's duration in `rouse_request_duration_seconds`.
    pub fn observe_duration(&self, d: Duration, metrics: &Metrics) {
        self.duration
            .get_or_init(|| {
                metrics
                    .request_duration
                    .get_or_create(&Metrics::upstream(self.name()))
                    .clone()
            })
            .observe(d.as_secs_f64());
    }

    pub fn is_static(&self) -> bool {
        self.config.supervisor == SupervisorRef::Static
    }

    /// Chooses a server for a request, skipping the positions in `tried`. Returns the server's
    /// position in `servers` with it.
    pub fn pick(&self, now: Instant, tried: &[usize]) -> Option<(usize, &Arc<Server>)> {
        let set = LiveSet {
            servers: &self.servers,
            now,
            slow_start: self.config.slow_start,
        };
        self.balancer
            .pick(&set, tried)
            .map(|i| (i, &self.servers[i]))
    }

    /// When every ready server is inside a passive-failure window, the one whose window ends
    /// first: trying it beats refusing the request outright, since it may well be back.
    pub fn least_recently_failed(&self, tried: &[usize]) -> Option<(usize, &Arc<Server>)> {
        self.servers
            .iter()
            .enumerate()
            .filter(|(i, s)| s.state() == ServerState::Ready && !tried.contains(i))
            .min_by_key(|(_, s)| s.failed_until())
    }

    /// Marks this upstream as replaced by a reload and wakes the requests held for it, so they
    /// move to its successor.
    pub fn retire(&self) {
        self.replaced.store(true, Ordering::Release);
        self.notify_changed();
    }

    pub fn is_replaced(&self) -> bool {
        self.replaced.load(Ordering::Acquire)
    }

    pub fn any_ready(&self) -> bool {
        self.servers.iter().any(|s| s.state() == ServerState::Ready)
    }

    // === held requests ===

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Counts a held request until the guard drops; `None` when `queue_limit` is reached.
    pub fn hold(self: &Arc<Self>) -> Option<HeldGuard> {
        let limit = self.config.queue_limit;
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(HeldGuard {
            upstream: Arc::clone(self),
        })
    }

    /// For held requests: resolves when the control plane signals a change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// For the control plane: wake every held request so it re-checks.
    pub fn notify_changed(&self) {
        self.changed.send_modify(|g| *g = g.wrapping_add(1));
    }

    pub fn start_error(&self) -> Option<String> {
        self.start_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_start_error(&self, error: Option<String>) {
        *self.start_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
        self.notify_changed();
    }

    /// Records one start → ready duration, for `Retry-After` estimates.
    pub fn record_start_duration(&self, d: Duration) {
        let ms = d.as_millis().max(1) as u64;
        let _ = self
            .start_ewma_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 { ms } else { (old * 3 + ms) / 4 })
            });
    }

    /// The typical start → ready time seen so far, if any start was measured.
    pub fn typical_start(&self) -> Option<Duration> {
        match self.start_ewma_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

/// Keeps a request counted as held until dropped.
#[derive(Debug)]
pub struct HeldGuard {
    upstream: Arc<Upstream>,
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.upstream.held.fetch_sub(1, Ordering::AcqRel);
    }
}

struct LiveSet<'a> {
    servers: &'a [Arc<Server>],
    now: Instant,
    slow_start: Duration,
}

impl CandidateSet for LiveSet<'_> {
    fn len(&self) -> usize {
        self.servers.len()
    }

    fn candidate(&self, index: usize) -> Candidate {
        let s = &self.servers[index];
        let eligible = s.eligible(self.now);
        // Every server's weight goes through slow start, so weights stay comparable.
        let weight = if eligible {
            slow_start::effective_weight(s.weight(), s.since(), self.now, self.slow_start)
        } else {
            1
        };
        Candidate {
            eligible,
            in_flight: s.in_flight(),
            weight,
        }
    }
}
