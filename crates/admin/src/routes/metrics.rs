//! `GET /metrics`: the counters and histograms both planes keep (`rouse_state::Metrics`), plus
//! gauges read off the live table at scrape time, so they cannot drift from it:
//! `rouse_in_flight{upstream,server}`, `rouse_upgraded_connections{upstream,server}`,
//! `rouse_held_requests{upstream}` and `rouse_server_state{upstream,server,state}` (1 for the
//! current state, 0 for the five others). `server` is the server's address, as in every family.
//! With `[cluster]`, also `rouse_cluster_leader`, `rouse_cluster_members` and
//! `rouse_cluster_etcd_up` ([`super::cluster`]).
//!
//! Prometheus text (0.0.4) by default; OpenMetrics when the scraper's `Accept` asks for it.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rouse_core::state::ServerState;
use rouse_state::metrics::Declared;
use rouse_state::{Metrics, Table};

use crate::AdminState;

pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text (ends with `# EOF`).
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when `Accept` names it (as Prometheus' own scraper does), else plain text.
    pub fn negotiate(headers: &HeaderMap) -> Format {
        let wants_openmetrics = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/openmetrics-text"));
        if wants_openmetrics {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => PROMETHEUS_TEXT,
            Format::OpenMetrics => OPENMETRICS_TEXT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServerLabels {
    upstream: String,
    server: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    upstream: String,
    server: String,
    state: String,
}

/// Every metric of `table`, encoded in `format`.
pub fn render(table: &Table, format: Format) -> Result<String, std::fmt::Error> {
    render_with(table, None, format)
}

/// [`render`], and the `rouse_cluster_*` gauges of `cluster`'s snapshot at the instant given,
/// when rouse runs with `[cluster]`.
pub fn render_with(
    table: &Table,
    cluster: Option<(&rouse_cluster::Snapshot, tokio::time::Instant)>,
    format: Format,
) -> Result<String, std::fmt::Error> {
    let in_flight = Family::<ServerLabels, Gauge>::default();
    let upgraded = Family::<ServerLabels, Gauge>::default();
    let held = Family::<rouse_state::metrics::UpstreamLabels, Gauge>::default();
    let states = Family::<StateLabels, Gauge>::default();
    for u in &table.upstreams {
        held.get_or_create(&Metrics::upstream(u.name()))
            .set(i64::try_from(u.held()).unwrap_or(i64::MAX));
        // Present (at 0) before the first timeout, so rate() and alerts see the series.
        let _ = table
            .metrics
            .held_timeouts
            .get_or_create(&Metrics::upstream(u.name()));
        for s in &u.servers {
            let server = s.address().to_string();
            let labels = ServerLabels {
                upstream: u.name().to_owned(),
                server: server.clone(),
            };
            in_flight
                .get_or_create(&labels)
                .set(i64::from(s.in_flight()));
            upgraded.get_or_create(&labels).set(i64::from(s.upgraded()));
            let current = s.state();
            for st in ServerState::ALL {
                states
                    .get_or_create(&StateLabels {
                        upstream: u.name().to_owned(),
                        server: server.clone(),
                        state: st.as_str().to_owned(),
                    })
                    .set(i64::from(st == current));
            }
        }
    }

    let mut registry = Registry::default();
    table.metrics.register(&mut registry);
    let r = registry.sub_registry_with_prefix("rouse");
    r.register(
        "in_flight",
        "Requests in flight per server, including open upgraded connections",
        Declared(in_flight),
    );
    r.register(
        "upgraded_connections",
        "Open upgraded (WebSocket) connections per server",
        Declared(upgraded),
    );
    r.register(
        "held_requests",
        "Requests waiting for a ready server or for room on one",
        Declared(held),
    );
    r.register(
        "server_state",
        "1 for each server's current state (stopped, starting, ready, draining, stopping, failed), else 0",
        Declared(states),
    );
    if let Some((snapshot, now)) = cluster {
        super::cluster::register(&mut registry, snapshot, now);
    }

    let mut out = String::new();
    match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

pub async fn handler(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(&headers);
    let table = state.table.load_full();
    let cluster = state.cluster.as_ref().map(|c| c.snapshot());
    let now = tokio::time::Instant::now();
    match render_with(&table, cluster.as_deref().map(|s| (s, now)), format) {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, format.content_type()),
                (header::CACHE_CONTROL, "no-store"),
            ],
            text,
        )
            .into_response(),
        Err(_) => crate::routes::answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics",
            "cannot encode the metrics",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rouse_state::metrics::{RequestLabels, StopLabels};
    use tokio::time::Instant;

    fn table() -> Table {
        let config = rouse_config::parse(
            "t.toml",
            "[[upstream]]\nname = \"app\"\n\
             [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"x\"\n",
        )
        .expect("valid");
        Table::new(&config)
    }

    #[tokio::test]
    async fn every_spec_family_is_there_under_its_name() {
        let t = table();
        t.upstreams[0].servers[0].set_state(ServerState::Ready, Instant::now());
        let _req = t.upstreams[0].servers[0].begin_request();
        let _held = t.upstreams[0].hold().unwrap();
        t.metrics
            .requests
            .get_or_create(&RequestLabels {
                upstream: "app".into(),
                server: "127.0.0.1:9101".into(),
                code: 200,
            })
            .inc();
        t.metrics
            .stops
            .get_or_create(&StopLabels {
                upstream: "app".into(),
                server: "127.0.0.1:9101".into(),
                reason: "idle".into(),
            })
            .inc();
        t.metrics
            .start_duration
            .get_or_create(&Metrics::upstream("app"))
            .observe(0.25);
        t.metrics
            .request_duration
            .get_or_create(&Metrics::upstream("app"))
            .observe(0.01);

        for format in [Format::Prometheus, Format::OpenMetrics] {
            let text = render(&t, format).unwrap();
            for line in [
                r#"rouse_requests_total{upstream="app",server="127.0.0.1:9101",code="200"} 1"#,
                r#"rouse_stops_total{upstream="app",server="127.0.0.1:9101",reason="idle"} 1"#,
                r#"rouse_held_timeouts_total{upstream="app"} 0"#,
                r#"rouse_start_duration_seconds_count{upstream="app"} 1"#,
                r#"rouse_request_duration_seconds_count{upstream="app"} 1"#,
                r#"rouse_in_flight{upstream="app",server="127.0.0.1:9101"} 1"#,
                r#"rouse_held_requests{upstream="app"} 1"#,
                r#"rouse_server_state{upstream="app",server="127.0.0.1:9101",state="ready"} 1"#,
                r#"rouse_server_state{upstream="app",server="127.0.0.1:9101",state="stopped"} 0"#,
                "# TYPE rouse_start_duration_seconds histogram",
            ] {
                assert!(
                    text.lines().any(|l| l == line),
                    "{format:?}: no line {line}\n{text}"
                );
            }
            assert_eq!(
                text.lines()
                    .filter(|l| l.starts_with("rouse_server_state{"))
                    .count(),
                6,
                "one series per state"
            );
            assert_eq!(text.ends_with("# EOF\n"), format == Format::OpenMetrics);
        }
    }

    /// Before any request, start or stop, every family is declared, so dashboards and alerts
    /// find them from the first scrape.
    #[test]
    fn every_family_is_declared_before_anything_happened() {
        let t = table();
        for (format, suffix) in [(Format::Prometheus, "_total"), (Format::OpenMetrics, "")] {
            let text = render(&t, format).unwrap();
            for (family, kind) in [
                ("rouse_requests", "counter"),
                ("rouse_request_duration_seconds", "histogram"),
                ("rouse_in_flight", "gauge"),
                ("rouse_held_requests", "gauge"),
                ("rouse_held_timeouts", "counter"),
                ("rouse_server_state", "gauge"),
                ("rouse_starts", "counter"),
                ("rouse_start_duration_seconds", "histogram"),
                ("rouse_stops", "counter"),
                ("rouse_upgraded_connections", "gauge"),
                ("rouse_client_connections", "gauge"),
                ("rouse_connections_refused", "counter"),
                ("rouse_errors", "counter"),
            ] {
                let name = if kind == "counter" {
                    format!("{family}{suffix}")
                } else {
                    family.to_owned()
                };
                for line in [format!("# HELP {name} "), format!("# TYPE {name} {kind}")] {
                    assert!(
                        text.lines().any(|l| l.starts_with(&line)),
                        "{format:?}: no {line:?}\n{text}"
                    );
                }
            }
        }
    }

    #[test]
    fn openmetrics_only_when_asked() {
        let mut h = HeaderMap::new();
        assert_eq!(Format::negotiate(&h), Format::Prometheus);
        h.insert(
            header::ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
                .parse()
                .unwrap(),
        );
        assert_eq!(Format::negotiate(&h), Format::OpenMetrics);
    }
}
