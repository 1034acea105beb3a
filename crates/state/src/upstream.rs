//! An upstream: its config, its servers, its balancer, and the requests held for it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::metrics::histogram::Histogram;
use std::time::Duration;

use rouse_config::{Balance, SupervisorRef, UpstreamConfig};
use rouse_core::backoff::Backoff;
use rouse_core::balance::{Balancer, Candidate, CandidateSet, Capacity, Kind, hard_cap, has_room};
use rouse_core::slow_start;
use rouse_core::state::ServerState;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::server::{InFlightGuard, Server};
use crate::tls::TlsClient;
use crate::waiters::{Place, Waiters};

/// What asking an upstream for a server gave.
#[derive(Debug)]
pub enum Admission {
    /// The server at this position in `servers`, with the request counted in flight on it.
    Admitted(usize, InFlightGuard),
    /// Servers are ready, but every one that may be tried is at its cap: wait for room.
    Full,
    /// No server that may be tried is ready.
    NoServer,
}

#[derive(Debug)]
pub struct Upstream {
    pub config: UpstreamConfig,
    pub servers: Vec<Arc<Server>>,
    pub balancer: Balancer,
    pub backoff: Backoff,
    /// The TLS client configuration of its servers that use TLS, built once with the upstream
    /// (`Err`: why it could not be, said at each connection); `None` when none does.
    pub tls: Option<TlsClient>,
    /// Requests waiting for a ready server, or for room on one.
    held: AtomicUsize,
    /// The held requests as the servers wake them; shared with the other generations.
    waiters: Arc<Waiters>,
    /// Bumped by the control plane whenever something a held request waits for changes: a
    /// server became ready, or starting failed. Held requests re-check when it moves.
    changed: watch::Sender<u64>,
    /// What held requests are told of failed starts.
    start_errors: Mutex<StartErrors>,
    /// Why a start under way is slow (its supervisor cannot be reached and is being asked
    /// again): said to the held requests that time out meanwhile.
    start_delay: Mutex<Option<String>>,
    /// Exponentially weighted mean of start → ready, in ms (0 = never measured).
    start_ewma_ms: AtomicU64,
    /// This upstream's `rouse_request_duration_seconds`, looked up in the family once.
    duration: OnceLock<Histogram>,
    /// A reload replaced this upstream with a new one of the same name: requests held here
    /// move over to it.
    replaced: AtomicBool,
}

impl Upstream {
    /// `wake` is rung when the data plane sees one of its servers fail (the table's `demand`).
    pub fn new(config: UpstreamConfig, epoch: Instant, wake: &Arc<Notify>) -> Upstream {
        Upstream::with_waiters(config, epoch, Arc::default(), wake)
    }

    fn with_waiters(
        config: UpstreamConfig,
        epoch: Instant,
        waiters: Arc<Waiters>,
        wake: &Arc<Notify>,
    ) -> Upstream {
        // Static servers are assumed up until a connect proves otherwise; supervised ones start
        // stopped until their supervisor says they run.
        let initial = match config.supervisor {
            SupervisorRef::Static => ServerState::Ready,
            _ => ServerState::Stopped,
        };
        let servers = config
            .servers
            .iter()
            .map(|s| {
                let waiters = Arc::clone(&waiters);
                Arc::new(Server::new(
                    s.clone(),
                    initial,
                    epoch,
                    waiters,
                    Arc::clone(wake),
                ))
            })
            .collect();
        let balancer = Balancer::new(match config.balance {
            Balance::Fair => Kind::Fair,
            Balance::RoundRobin => Kind::RoundRobin,
        });
        let backoff = Backoff {
            base: config.fail_timeout,
            max: config.fail_timeout_max,
        };
        let tls = crate::tls::client(&config, crate::tls::alpn(config.protocol));
        Upstream {
            config,
            servers,
            balancer,
            backoff,
            tls,
            held: AtomicUsize::new(0),
            waiters,
            changed: watch::Sender::new(0),
            start_errors: Mutex::default(),
            start_delay: Mutex::new(None),
            start_ewma_ms: AtomicU64::new(0),
            duration: OnceLock::new(),
            replaced: AtomicBool::new(false),
        }
    }

    /// The upstream of a reloaded config that keeps `servers` (some of them carried over from
    /// the previous generation, with their processes, states and counters), and the measured
    /// start times and held-request queue of the upstream it replaces. New servers among
    /// `servers` must have been made with [`Upstream::waiters`] of `previous`.
    pub fn succeeding(
        config: UpstreamConfig,
        servers: Vec<Arc<Server>>,
        previous: &Upstream,
        epoch: Instant,
        wake: &Arc<Notify>,
    ) -> Upstream {
        let mut up = Upstream::with_waiters(config, epoch, Arc::clone(&previous.waiters), wake);
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

    /// The servers as the balancer sees them now, caps included.
    fn live_set(&self, now: Instant) -> LiveSet<'_> {
        let starting = self
            .servers
            .iter()
            .any(|s| s.state() == ServerState::Starting);
        LiveSet {
            servers: &self.servers,
            now,
            slow_start: self.config.slow_start,
            capacity: Capacity {
                target_in_flight: self.config.target_in_flight,
                starting,
            },
        }
    }

    /// Chooses a server with room for a request (skipping `tried`) and counts the request in
    /// flight on it, atomically against its cap. The balancer chooses from counters that other
    /// threads may be raising at this very moment; a server found full by the compare-and-swap
    /// is left out and the choice made again, at most once per server.
    pub fn admit(&self, now: Instant, tried: &[usize]) -> Admission {
        let set = self.live_set(now);
        // Allocated only when a race was lost.
        let mut lost: Option<Vec<usize>> = None;
        for _ in 0..=self.servers.len() {
            let excluded = lost.as_deref().unwrap_or(tried);
            let Some(at) = self.balancer.pick(&set, excluded) else {
                break;
            };
            if let Some(guard) = self.servers[at].try_begin_request(set.cap(at), now) {
                return Admission::Admitted(at, guard);
            }
            lost.get_or_insert_with(|| tried.to_vec()).push(at);
        }
        let full = (0..self.servers.len())
            .any(|at| !tried.contains(&at) && self.servers[at].eligible(now));
        if full {
            Admission::Full
        } else {
            Admission::NoServer
        }
    }

    /// When every ready server is inside a passive-failure window, the one whose window ends
    /// first, if it has room (its `max_conns`): trying it beats refusing the request outright,
    /// since it may well be back.
    pub fn admit_least_recently_failed(&self, tried: &[usize]) -> Admission {
        let ready: Vec<usize> = (0..self.servers.len())
            .filter(|at| !tried.contains(at) && self.servers[*at].state() == ServerState::Ready)
            .collect();
        if ready.is_empty() {
            return Admission::NoServer;
        }
        let cap = |s: &Server| hard_cap(s.max_conns());
        let soonest = ready
            .into_iter()
            .filter(|&at| has_room(self.servers[at].in_flight(), cap(&self.servers[at])))
            .min_by_key(|&at| self.servers[at].failed_until());
        match soonest {
            Some(at) => {
                match self.servers[at].try_begin_request(cap(&self.servers[at]), Instant::now()) {
                    Some(guard) => Admission::Admitted(at, guard),
                    None => Admission::Full,
                }
            }
            None => Admission::Full,
        }
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
            place: self.waiters.join(),
        })
    }

    /// The held requests' line: a request ending on one of this upstream's servers rings the
    /// first one.
    pub fn waiters(&self) -> &Arc<Waiters> {
        &self.waiters
    }

    /// For held requests: resolves when the control plane signals a change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// For the control plane: wake every held request so it re-checks.
    pub fn notify_changed(&self) {
        self.changed.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// The standing start error: what a request gets at once instead of being held.
    pub fn start_error(&self) -> Option<String> {
        self.start_errors().standing.clone()
    }

    pub fn set_start_error(&self, error: Option<String>) {
        self.start_errors().standing = error;
        self.notify_changed();
    }

    /// A start failed and nothing else is coming: the requests held now get `why`, and so do
    /// those that come until a new attempt begins (the standing error).
    pub fn fail_held(&self, why: String) {
        {
            let mut e = self.start_errors();
            e.told += 1;
            e.last.clone_from(&why);
            e.standing = Some(why);
        }
        self.notify_changed();
    }

    /// How many failed starts held requests were told of so far.
    pub fn start_failures(&self) -> u64 {
        self.start_errors().told
    }

    /// The error of the last failed start, if one failed after `seen` (a `start_failures`).
    pub fn failed_since(&self, seen: u64) -> Option<String> {
        let e = self.start_errors();
        (e.told > seen).then(|| e.last.clone())
    }

    fn start_errors(&self) -> std::sync::MutexGuard<'_, StartErrors> {
        // A poisoned lock only means a panic elsewhere mid-update of plain data.
        self.start_errors.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn start_delay(&self) -> Option<String> {
        self.start_delay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_start_delay(&self, why: Option<String>) {
        *self.start_delay.lock().unwrap_or_else(|e| e.into_inner()) = why;
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

/// What held requests are told of failed starts.
#[derive(Debug, Default)]
struct StartErrors {
    /// Why the last start failed, until a new attempt begins: requests get it at once instead
    /// of waiting out `start_timeout`.
    standing: Option<String>,
    /// Failed starts told so far, and the last one's error. A request held when a start failed
    /// gets that error even if a new attempt began since: a revival withdraws the standing
    /// error at once, often before the held request has looked.
    told: u64,
    last: String,
}

/// Keeps a request counted as held, with its place in line, until dropped.
#[derive(Debug)]
pub struct HeldGuard {
    upstream: Arc<Upstream>,
    place: Place,
}

impl HeldGuard {
    /// Whether this request is the first in line: the one that may take room.
    pub fn is_first(&self) -> bool {
        self.place.is_first()
    }

    /// Resolves when room may have appeared for this request (it is first in line).
    pub async fn rung(&self) {
        self.place.rung().await
    }
}

impl Drop for HeldGuard {
    fn drop(&mut self) {
        self.upstream.held.fetch_sub(1, Ordering::AcqRel);
        // `place` drops next: it leaves the line, ringing the next one if it was first.
    }
}

struct LiveSet<'a> {
    servers: &'a [Arc<Server>],
    now: Instant,
    slow_start: Duration,
    capacity: Capacity,
}

impl LiveSet<'_> {
    /// The in-flight cap of the server at `index` (its candidate's, without the rest).
    fn cap(&self, index: usize) -> Option<u32> {
        self.capacity.cap(self.servers[index].max_conns())
    }
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
            cap: self.cap(index),
        }
    }
}
