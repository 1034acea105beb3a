//! The counters behind `GET /stats`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// What `GET /stats` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests received so far, not counting `/stats`. Counted when the request head
    /// arrives, so a request is included by the time its response starts.
    pub requests: u64,
    /// Requests (not `/stats`) whose response body is still being produced. A WebSocket
    /// counts until the socket closes. It drops just before the last bytes are written, so
    /// tests that expect 0 after a response should poll ([`crate::wait_until`]).
    pub in_flight: u64,
    /// The highest `in_flight` so far: the most requests the backend ever had at once, those
    /// waiting for a worker ([`crate::BackendConfig::concurrency`]) included.
    pub max_in_flight: u64,
    /// The longest any request waited for a worker, in µs (0 without a concurrency limit).
    #[serde(default)]
    pub max_queued_us: u64,
    /// Requests that found every worker busy and waited for one.
    #[serde(default)]
    pub queued: u64,
    /// Requests holding a worker ([`crate::BackendConfig::concurrency`]) right now, and the
    /// most there ever were at once: what the backend really serves in parallel.
    #[serde(default)]
    pub busy: u64,
    #[serde(default)]
    pub max_busy: u64,
    /// With [`crate::BackendConfig::workers`]: the longest a worker spent reading a request
    /// body, in µs: how long a slow upload kept a worker from everyone else.
    #[serde(default)]
    pub max_body_read_us: u64,
    /// The most bytes of one request body `POST /count` has read, counted as they come (a
    /// body cut short counts too): what a proxy let through.
    #[serde(default)]
    pub max_body_bytes: u64,
    /// TCP connections accepted so far, less those whose first request was `/stats`: polling
    /// `/stats` over a fresh connection then does not disturb the number a test compares.
    pub connections: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    in_flight: Arc<AtomicU64>,
    max_in_flight: AtomicU64,
    max_queued_us: AtomicU64,
    queued: AtomicU64,
    busy: Arc<AtomicU64>,
    max_busy: AtomicU64,
    max_body_read_us: AtomicU64,
    max_body_bytes: AtomicU64,
    connections: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            requests: self.requests.load(Ordering::SeqCst),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            max_in_flight: self.max_in_flight.load(Ordering::SeqCst),
            max_queued_us: self.max_queued_us.load(Ordering::SeqCst),
            queued: self.queued.load(Ordering::SeqCst),
            busy: self.busy.load(Ordering::SeqCst),
            max_busy: self.max_busy.load(Ordering::SeqCst),
            max_body_read_us: self.max_body_read_us.load(Ordering::SeqCst),
            max_body_bytes: self.max_body_bytes.load(Ordering::SeqCst),
            connections: self.connections.load(Ordering::SeqCst),
        }
    }

    pub(crate) fn connection_accepted(&self) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn connection_was_for_stats(&self) {
        self.connections.fetch_sub(1, Ordering::SeqCst);
    }

    /// Counts a request and returns how many there have been, this one included.
    pub(crate) fn request_received(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Takes back a request that is refused (past the request limit).
    pub(crate) fn request_refused(&self) {
        self.requests.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn begin(&self) -> InFlight {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight {
            in_flight: Arc::clone(&self.in_flight),
            _worker: None,
        }
    }

    /// A request got a worker: it is busy until the request's [`InFlight`] is dropped.
    pub(crate) fn worker_taken(&self, worker: tokio::sync::OwnedSemaphorePermit) -> Worker {
        let now = self.busy.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_busy.fetch_max(now, Ordering::SeqCst);
        Worker {
            busy: Arc::clone(&self.busy),
            _permit: worker,
        }
    }

    /// `POST /count` has read `n` bytes of a body so far.
    pub(crate) fn body_bytes(&self, n: u64) {
        self.max_body_bytes.fetch_max(n, Ordering::SeqCst);
    }

    /// A worker read a request body in `us` µs.
    pub(crate) fn body_read(&self, us: u64) {
        self.max_body_read_us.fetch_max(us, Ordering::SeqCst);
    }

    /// A request found every worker busy and waited `us` µs for one.
    pub(crate) fn waited(&self, us: u64) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.max_queued_us.fetch_max(us, Ordering::SeqCst);
    }
}

/// Counts one request as in flight until dropped, and keeps its worker busy as long.
#[derive(Debug)]
pub(crate) struct InFlight {
    in_flight: Arc<AtomicU64>,
    _worker: Option<Worker>,
}

impl InFlight {
    /// The request has a worker until it is answered (or its WebSocket closes).
    pub(crate) fn occupy(&mut self, worker: Worker) {
        self._worker = Some(worker);
    }
}

/// A worker busy with one request, counted in [`Stats::busy`] until dropped.
#[derive(Debug)]
pub(crate) struct Worker {
    busy: Arc<AtomicU64>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
