//! One server of an upstream: its lifecycle state and the counters the data plane keeps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use rouse_config::{ServerAddress, ServerConfig, SupervisorRef};
use rouse_core::backoff::{Backoff, FailureTracker};
use rouse_core::state::ServerState;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::{Metrics, RequestLabels};
use crate::responses::Responses;
use crate::waiters::Waiters;

/// Which server this is, for the life of the process: a reload that keeps a server keeps its
/// id (it is the same object), and a new server never gets an id used before. The control plane
/// and its tasks name servers by it, since a reload moves them around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(pub usize);

impl std::fmt::Display for ServerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug)]
pub struct Server {
    id: ServerId,
    /// As configured when the server was created. A reload keeps a server whose config is
    /// unchanged but for its position, weight and `max_conns`, so read those through
    /// [`Server::index`], [`Server::weight`] and [`Server::max_conns`].
    pub config: Arc<ServerConfig>,
    /// Where connections go: the address's IP, or what its host name last resolved to (set by
    /// the control plane's resolver, read on each new connection; empty until resolved and
    /// for unix sockets).
    resolved: ArcSwap<Vec<SocketAddr>>,
    index: AtomicUsize,
    weight: AtomicU32,
    max_conns: AtomicU32,
    /// The requests held for its upstream: woken as requests end here.
    waiters: Arc<Waiters>,
    state: AtomicU8,
    in_flight: AtomicU32,
    upgraded: AtomicU32,
    requests: AtomicU64,
    /// Mirrors `passive.consecutive()` so the hot path can skip the lock when nothing failed.
    recent_failures: AtomicU32,
    passive: Mutex<FailureTracker>,
    /// Rung at each passive failure, so the control plane acts on it at once: the table's
    /// `demand` bell, one for every server (a bell and a relay task per server cost 500 bytes
    /// each, 5 MB for 10,000 servers).
    wake: Arc<Notify>,
    /// The table's time origin: instants below are kept as milliseconds since it, in atomics.
    epoch: Instant,
    /// When the server entered its current state.
    since_ms: AtomicU64,
    /// When a request last started or ended on it.
    active_ms: AtomicU64,
    /// This server's `rouse_requests_total` counters for the codes it answers most, looked
    /// up in the family once: the hot path then only increments an atomic, with no label
    /// strings built or hashed per request.
    responses: Responses,
}

impl Server {
    pub fn new(
        config: Arc<ServerConfig>,
        initial: ServerState,
        epoch: Instant,
        waiters: Arc<Waiters>,
        wake: Arc<Notify>,
    ) -> Server {
        let now = ms_since(epoch, Instant::now());
        Server {
            id: ServerId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            index: AtomicUsize::new(config.index),
            weight: AtomicU32::new(config.weight),
            max_conns: AtomicU32::new(config.max_conns),
            waiters,
            epoch,
            since_ms: AtomicU64::new(now),
            active_ms: AtomicU64::new(now),
            responses: Responses::default(),
            resolved: ArcSwap::from_pointee(match &config.address {
                ServerAddress::Ip(address) => vec![*address],
                ServerAddress::Name { .. } | ServerAddress::Unix(_) => Vec::new(),
            }),
            config,
            state: AtomicU8::new(initial as u8),
            in_flight: AtomicU32::new(0),
            upgraded: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            recent_failures: AtomicU32::new(0),
            passive: Mutex::new(FailureTracker::default()),
            wake,
        }
    }

    pub fn id(&self) -> ServerId {
        self.id
    }

    /// Its position in its upstream's current config (for display: the planes address servers
    /// by their position in the vectors they hold).
    pub fn index(&self) -> usize {
        self.index.load(Ordering::Relaxed)
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// At most this many requests in flight on it (0 = no limit).
    pub fn max_conns(&self) -> u32 {
        self.max_conns.load(Ordering::Relaxed)
    }

    /// A reload kept this server: it may have moved in its upstream's list, and its weight and
    /// `max_conns` may have changed. A lower `max_conns` than what is in flight only stops new
    /// requests until enough have ended; nothing in flight is cut.
    pub fn relocate(&self, index: usize, weight: u32, max_conns: u32) {
        self.index.store(index, Ordering::Relaxed);
        self.weight.store(weight, Ordering::Relaxed);
        self.max_conns.store(max_conns, Ordering::Relaxed);
    }

    /// Whether `config` describes this same server, so a reload may keep it (its process,
    /// state, connections and counters): everything but position, weight and `max_conns` is
    /// the same; a cap is a routing setting, no reason to restart a process.
    pub fn is_same(&self, config: &ServerConfig) -> bool {
        self.differences(config).is_empty()
    }

    /// What in `config` makes it another server than this one (see [`Server::is_same`]), as
    /// config keys: the reasons a reload gives for replacing it.
    /// Embedded program names are rouse's own, derived from positions (`<upstream><index>`), so
    /// they are no part of what a server is: removing the first server must not make every
    /// other one a new server. A supervisord program name is.
    pub fn differences(&self, config: &ServerConfig) -> Vec<&'static str> {
        let c = &self.config;
        let mut d = Vec::new();
        if c.address != config.address {
            d.push("address");
        }
        if c.tls != config.tls {
            d.push("tls");
        }
        if c.supervisor != config.supervisor {
            d.push("supervisor");
        } else if c.supervisor != SupervisorRef::Embedded && c.program != config.program {
            d.push("program");
        }
        if c.command != config.command {
            d.push("command");
        }
        if c.env != config.env {
            d.push("env");
        }
        if c.cwd != config.cwd {
            d.push("cwd");
        }
        if c.startsecs != config.startsecs {
            d.push("startsecs");
        }
        if c.stop_signal != config.stop_signal {
            d.push("stop_signal");
        }
        if c.stop_timeout != config.stop_timeout {
            d.push("stop_timeout");
        }
        d
    }

    pub fn address(&self) -> &ServerAddress {
        &self.config.address
    }

    /// The socket addresses a TCP connection to it may go to, in the order to try them.
    pub fn resolved(&self) -> Arc<Vec<SocketAddr>> {
        self.resolved.load_full()
    }

    /// What its host name resolves to now (the control plane's resolver; a name that stops
    /// resolving keeps its last addresses, so this is never called with nothing).
    pub fn set_resolved(&self, addresses: Vec<SocketAddr>) {
        self.resolved.store(Arc::new(addresses));
    }

    pub fn state(&self) -> ServerState {
        ServerState::from_u8(self.state.load(Ordering::Acquire)).unwrap_or(ServerState::Failed)
    }

    /// Only the control plane calls this (it mirrors the server's lifecycle, for the data plane
    /// and the admin API). Records when the state was entered.
    pub fn set_state(&self, state: ServerState, now: Instant) -> ServerState {
        self.since_ms
            .store(ms_since(self.epoch, now), Ordering::Release);
        ServerState::from_u8(self.state.swap(state as u8, Ordering::AcqRel))
            .unwrap_or(ServerState::Failed)
    }

    /// When the server entered its current state.
    pub fn since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.since_ms.load(Ordering::Acquire))
    }

    /// When a request last started or ended on this server.
    pub fn last_active(&self) -> Instant {
        self.epoch + Duration::from_millis(self.active_ms.load(Ordering::Relaxed))
    }

    fn touch(&self) {
        self.touch_at(Instant::now());
    }

    fn touch_at(&self, now: Instant) {
        self.active_ms
            .store(ms_since(self.epoch, now), Ordering::Relaxed);
    }

    /// Requests in flight, including open upgraded (WebSocket) connections.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn upgraded(&self) -> u32 {
        self.upgraded.load(Ordering::Relaxed)
    }

    /// Requests sent to this server since it was configured.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Whether a passive failure currently keeps this server out of rotation.
    pub fn passively_failed(&self, now: Instant) -> bool {
        if self.recent_failures.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.tracker().is_failed(now)
    }

    /// When the current passive failure window ends, if the server has failed recently.
    pub fn failed_until(&self) -> Option<Instant> {
        if self.recent_failures.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.tracker().until()
    }

    /// Ready and not passively failed: the balancer may choose it.
    pub fn eligible(&self, now: Instant) -> bool {
        self.state() == ServerState::Ready && !self.passively_failed(now)
    }

    /// The data plane could not reach this server (nothing was sent).
    pub fn record_failure(&self, now: Instant, backoff: &Backoff) -> Instant {
        let mut t = self.tracker();
        let until = t.record_failure(now, backoff);
        self.recent_failures
            .store(t.consecutive(), Ordering::Relaxed);
        drop(t);
        self.wake.notify_one();
        until
    }

    /// A request reached this server: forget earlier passive failures.
    pub fn record_success(&self) {
        if self.recent_failures.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut t = self.tracker();
        t.record_success();
        self.recent_failures.store(0, Ordering::Relaxed);
    }

    /// The server has just become ready (a new process, or one that passed its readiness check
    /// again): connect failures the data plane saw before say nothing about it any more. Without
    /// this, a server restarted after a crash would still be in the passive-failure window of
    /// the refusals its predecessor caused, so it would be skipped by the balancer and failed
    /// again by the control plane the moment it came up.
    pub fn forget_failures(&self) {
        let mut t = self.tracker();
        t.record_success();
        self.recent_failures.store(0, Ordering::Relaxed);
    }

    /// Counts one answer with `code` in `rouse_requests_total`.
    pub fn count_response(&self, code: u16, upstream: &str, metrics: &Metrics) {
        let labels = || RequestLabels {
            upstream: upstream.to_owned(),
            server: self.address().to_string(),
            code,
        };
        self.responses.count(code, metrics, labels);
    }

    /// Counts a request from now until the guard is dropped, whatever the cap.
    pub fn begin_request(self: &Arc<Self>) -> InFlightGuard {
        self.begin_request_at(Instant::now())
    }

    fn begin_request_at(self: &Arc<Self>, now: Instant) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.admitted(now)
    }

    /// Counts a request from now until the guard is dropped, if that keeps this server within
    /// `cap` requests in flight (`None`: no limit). The balancer's view of the counters may be
    /// stale when many held requests wake at once on several threads; this compare-and-swap is
    /// what guarantees the cap: never more than `cap` in flight here, whoever races. `now` is
    /// when the request started (a clock read of the caller's, taken again here for nothing
    /// on every request before).
    pub fn try_begin_request(
        self: &Arc<Self>,
        cap: Option<u32>,
        now: Instant,
    ) -> Option<InFlightGuard> {
        match cap {
            None => Some(self.begin_request_at(now)),
            Some(cap) => {
                self.in_flight
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                        (n < cap).then_some(n + 1)
                    })
                    .ok()?;
                Some(self.admitted(now))
            }
        }
    }

    fn admitted(self: &Arc<Self>, now: Instant) -> InFlightGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.touch_at(now);
        InFlightGuard {
            server: Arc::clone(self),
            upgraded: false,
            ended: None,
        }
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, FailureTracker> {
        // A poisoned lock only means another thread panicked mid-update of plain counters;
        // the data is still usable, and the data plane must not panic in turn.
        self.passive.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps a request (or an upgraded connection) counted as in flight on its server.
#[derive(Debug)]
pub struct InFlightGuard {
    server: Arc<Server>,
    upgraded: bool,
    /// When the request ended, if the caller had the instant at hand ([`Self::end_at`]).
    ended: Option<Instant>,
}

impl InFlightGuard {
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    /// The request became a long-lived upgraded connection (WebSocket): it stays in flight, and
    /// is also counted as upgraded, until the guard drops.
    /// Ends the request now, `now` being an instant just read (the guard's drop reads the
    /// clock otherwise): the server's last activity.
    pub fn end_at(mut self, now: Instant) {
        self.ended = Some(now);
    }

    pub fn mark_upgraded(&mut self) {
        if !self.upgraded {
            self.upgraded = true;
            self.server.upgraded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        match self.ended {
            Some(at) => self.server.touch_at(at),
            None => self.server.touch(),
        }
        self.server.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.upgraded {
            self.server.upgraded.fetch_sub(1, Ordering::Relaxed);
        }
        // After the decrement: a held request that found this server full then either sees
        // the room or is counted as waiting by now (see `Waiters`).
        self.server.waiters.wake_one();
    }
}

fn ms_since(epoch: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(epoch).as_millis() as u64
}
