//! `max_connections`: how many client connections may be open at once.
//!
//! One past the limit is accepted and closed at once rather than left unaccepted: a connection
//! left in the kernel's accept queue would look open to its client, fill the backlog for
//! everyone, and be served late instead of failed fast. The open count is the
//! `rouse_client_connections` gauge itself, so the metric cannot drift from what is enforced.

use std::sync::Arc;

use rouse_state::Metrics;

#[derive(Debug, Clone)]
pub(crate) struct ConnLimit {
    max: i64,
    metrics: Arc<Metrics>,
}

/// Room for one client connection; given back when dropped, which happens with the socket
/// (an upgraded connection keeps it until the splice ends).
#[derive(Debug)]
pub(crate) struct Slot {
    metrics: Arc<Metrics>,
}

impl ConnLimit {
    pub fn new(max: usize, metrics: Arc<Metrics>) -> ConnLimit {
        ConnLimit {
            max: i64::try_from(max).unwrap_or(i64::MAX),
            metrics,
        }
    }

    /// A slot, or `None` (counted as refused) when `max` connections are open.
    pub fn admit(&self) -> Option<Slot> {
        let open = &self.metrics.client_connections;
        if open.inc() >= self.max {
            open.dec();
            self.metrics.connections_refused.inc();
            return None;
        }
        Some(Slot {
            metrics: Arc::clone(&self.metrics),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.client_connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_limit_connections_are_refused_and_counted_until_one_closes() {
        let metrics = Arc::new(Metrics::default());
        let limit = ConnLimit::new(2, Arc::clone(&metrics));
        let a = limit.admit().expect("first");
        let _b = limit.admit().expect("second");
        assert!(limit.admit().is_none());
        assert!(limit.admit().is_none());
        assert_eq!(metrics.connections_refused.get(), 2);
        assert_eq!(metrics.client_connections.get(), 2);
        drop(a);
        assert_eq!(metrics.client_connections.get(), 1);
        assert!(limit.admit().is_some());
    }

    #[test]
    fn zero_refuses_everything() {
        let metrics = Arc::new(Metrics::default());
        assert!(ConnLimit::new(0, Arc::clone(&metrics)).admit().is_none());
        assert_eq!(metrics.client_connections.get(), 0);
    }
}
