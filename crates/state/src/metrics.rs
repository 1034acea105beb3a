//! The counters and histograms both planes add to. Gauges (in flight, held, states) are not
//! kept here: the admin API reads them off the table when scraped, so they cannot drift. The
//! one exception is the count of open client connections, which no table holds: the accept
//! loop keeps it, and it doubles as the count `max_connections` is checked against.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    pub upstream: String,
    /// The server's address; empty when rouse answered for the upstream without one (a held
    /// request timed out, the queue was full). Requests no upstream matches are not counted.
    pub server: String,
    pub code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StartLabels {
    pub upstream: String,
    pub server: String,
    /// "ready", "failed", "timeout" or "adopted".
    pub result: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StopLabels {
    pub upstream: String,
    pub server: String,
    /// "idle", "load", "failure", "manual", "shutdown".
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorLabels {
    pub upstream: String,
    /// The answer's `x-rouse-error`: `start-timeout`, `server-error`, `read-timeout`, ...
    pub kind: String,
}

/// A metric whose `# HELP` and `# TYPE` are written even while it has no series.
///
/// prometheus-client (since 0.24.1, client_rust PR #279) leaves out a `Family` with no
/// label set yet, so before the first request or start a scrape lacked SPEC.md's families,
/// and dashboards and alerts had nothing to bind to. The encoder asks
/// [`EncodeMetric::is_empty`]; this answers its default, `false`.
#[derive(Debug, Clone)]
pub struct Declared<M>(pub M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

fn histogram_ms_to_minutes() -> Histogram {
    // 1 ms … ~2 min: proxied requests and process starts both fall in this range.
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

#[derive(Debug)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<UpstreamLabels, Histogram>,
    pub starts: Family<StartLabels, Counter>,
    pub start_duration: Family<UpstreamLabels, Histogram>,
    pub stops: Family<StopLabels, Counter>,
    pub held_timeouts: Family<UpstreamLabels, Counter>,
    /// Answers rouse wrote itself (with `x-rouse-error`), by upstream and kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// The same counters by upstream, for the dashboard: a `Family` cannot be listed. Touched
    /// on rouse's own error answers only, never on a proxied one.
    errors_by_upstream: Mutex<HashMap<String, Vec<(String, Counter)>>>,
    /// Client connections closed at accept because `max_connections` were open.
    pub connections_refused: Counter,
    /// Client connections open now (upgraded ones included).
    pub client_connections: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(histogram_ms_to_minutes),
            starts: Family::default(),
            start_duration: Family::new_with_constructor(histogram_ms_to_minutes),
            stops: Family::default(),
            held_timeouts: Family::default(),
            errors: Family::default(),
            errors_by_upstream: Mutex::default(),
            connections_refused: Counter::default(),
            client_connections: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Registers every family under the names SPEC.md gives (`rouse_` prefix added here).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("rouse");
        r.register(
            "requests",
            "Requests answered, by upstream, server and status code",
            Declared(self.requests.clone()),
        );
        r.register(
            "request_duration_seconds",
            "Time from request received to response head sent",
            Declared(self.request_duration.clone()),
        );
        r.register(
            "starts",
            "Server starts issued, by result",
            Declared(self.starts.clone()),
        );
        r.register(
            "start_duration_seconds",
            "Time from start issued to server ready",
            Declared(self.start_duration.clone()),
        );
        r.register(
            "stops",
            "Server stops, by reason",
            Declared(self.stops.clone()),
        );
        r.register(
            "held_timeouts",
            "Held requests answered 503 because no server was ready within start_timeout",
            Declared(self.held_timeouts.clone()),
        );
        r.register(
            "errors",
            "Answers rouse wrote itself (x-rouse-error), by upstream and kind",
            Declared(self.errors.clone()),
        );
        r.register(
            "connections_refused",
            "Client connections accepted and closed at once because max_connections were open",
            self.connections_refused.clone(),
        );
        r.register(
            "client_connections",
            "Client connections open, upgraded ones included",
            self.client_connections.clone(),
        );
    }

    /// Counts one answer of `upstream` that rouse wrote itself, of `kind` (its `x-rouse-error`).
    pub fn count_error(&self, upstream: &str, kind: &str) {
        let mut by = self
            .errors_by_upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let kinds = match by.get_mut(upstream) {
            Some(k) => k,
            None => by.entry(upstream.to_owned()).or_default(),
        };
        if let Some((_, c)) = kinds.iter().find(|(k, _)| k == kind) {
            c.inc();
            return;
        }
        let c = self
            .errors
            .get_or_create(&ErrorLabels {
                upstream: upstream.to_owned(),
                kind: kind.to_owned(),
            })
            .clone();
        c.inc();
        kinds.push((kind.to_owned(), c));
    }

    /// `upstream`'s error answers so far, by kind, in the order first seen.
    pub fn errors_of(&self, upstream: &str) -> Vec<(String, u64)> {
        let by = self
            .errors_by_upstream
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        by.get(upstream)
            .map(|k| k.iter().map(|(kind, c)| (kind.clone(), c.get())).collect())
            .unwrap_or_default()
    }

    pub fn upstream(name: &str) -> UpstreamLabels {
        UpstreamLabels {
            upstream: name.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_are_counted_by_upstream_and_kind() {
        let m = Metrics::default();
        m.count_error("app", "start-timeout");
        m.count_error("app", "server-error");
        m.count_error("app", "start-timeout");
        m.count_error("web", "read-timeout");
        assert_eq!(
            m.errors_of("app"),
            [
                ("start-timeout".to_owned(), 2),
                ("server-error".to_owned(), 1)
            ]
        );
        assert_eq!(m.errors_of("none"), []);
        let series = m.errors.get_or_create(&ErrorLabels {
            upstream: "web".into(),
            kind: "read-timeout".into(),
        });
        assert_eq!(series.get(), 1, "the Prometheus series is the same counter");
    }
}
