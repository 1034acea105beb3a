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
    /// The highest `in_flight` so far.
    pub max_in_flight: u64,
    /// TCP connections accepted so far, less those whose first request was `/stats`: polling
    /// `/stats` over a fresh connection then does not disturb the number a test compares.
    pub connections: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    in_flight: Arc<AtomicU64>,
    max_in_flight: AtomicU64,
    connections: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            requests: self.requests.load(Ordering::SeqCst),
            in_flight: self.in_flight.load(Ordering::SeqCst),
            max_in_flight: self.max_in_flight.load(Ordering::SeqCst),
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
        }
    }
}

/// Counts one request as in flight until dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    in_flight: Arc<AtomicU64>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
