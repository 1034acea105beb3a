//! `GET /history`: the last 15 minutes of each upstream, for the dashboard's charts: its
//! samples (requests per second, p50 and p99 latency, in flight, held), its error answers by
//! `x-rouse-error` kind, and each server's states over the window.
//!
//! `?upstream=NAME` limits the answer to one upstream.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use rouse_config::SupervisorRef;
use rouse_state::{Entry, Table};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::AdminState;
use crate::history::History;
use crate::history::timeline::{Segment, timeline, unix_ms};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryJson {
    /// Time between two samples.
    pub interval_ms: u64,
    /// How far back samples and timelines go.
    pub window_ms: u64,
    pub now_unix_ms: u64,
    pub upstreams: Vec<UpstreamHistory>,
}

/// Samples are columns: entry `k` of each list is sample `k`, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamHistory {
    pub name: String,
    pub at_unix_ms: Vec<u64>,
    /// Requests answered per second over the interval ending at the sample.
    pub req_per_s: Vec<f64>,
    /// Latency percentiles of those requests (from request received to response head sent);
    /// `null` for an interval without requests.
    pub p50_ms: Vec<Option<f64>>,
    pub p99_ms: Vec<Option<f64>>,
    /// In flight and held at the sample.
    pub in_flight: Vec<u16>,
    pub held: Vec<u16>,
    /// Answers rouse wrote itself since it started, by `x-rouse-error` kind.
    pub errors: Vec<ErrorCount>,
    pub servers: Vec<ServerTimeline>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCount {
    pub kind: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerTimeline {
    pub index: usize,
    pub address: String,
    pub states: Vec<Segment>,
}

/// Rounds for the wire: a chart needs no more than 3 decimals.
fn round(v: f32) -> f64 {
    (f64::from(v) * 1000.0).round() / 1000.0
}

pub fn snapshot(
    table: &Table,
    history: &History,
    only: Option<&str>,
    now: Instant,
    wall: SystemTime,
) -> HistoryJson {
    let from = wall
        .checked_sub(history.window())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut journal = table.journal.recent(usize::MAX);
    journal.reverse();
    let journal_full = table.journal.is_full();
    // Grouped once: 10,000 servers each scanning the whole journal would be 2 million looks.
    let mut by_server: HashMap<(&str, usize), Vec<&Entry>> = HashMap::new();
    for e in &journal {
        by_server
            .entry((e.upstream.as_str(), e.server))
            .or_default()
            .push(e);
    }
    let upstreams = table
        .upstreams
        .iter()
        .filter(|u| only.is_none_or(|n| n == u.name()))
        .map(|u| {
            let points = history.points(u.name());
            let pct = |v: f32| (!v.is_nan()).then(|| round(v));
            let initial = match u.config.supervisor {
                SupervisorRef::Static => "ready",
                _ => "stopped",
            };
            UpstreamHistory {
                name: u.name().to_owned(),
                at_unix_ms: points.iter().map(|p| u64::from(p.at_s) * 1000).collect(),
                req_per_s: points.iter().map(|p| round(p.rps)).collect(),
                p50_ms: points.iter().map(|p| pct(p.p50_ms)).collect(),
                p99_ms: points.iter().map(|p| pct(p.p99_ms)).collect(),
                in_flight: points.iter().map(|p| p.in_flight).collect(),
                held: points.iter().map(|p| p.held).collect(),
                errors: table
                    .metrics
                    .errors_of(u.name())
                    .into_iter()
                    .map(|(kind, count)| ErrorCount { kind, count })
                    .collect(),
                servers: u
                    .servers
                    .iter()
                    .map(|s| {
                        let events = by_server
                            .get(&(u.name(), s.index()))
                            .map_or(&[][..], Vec::as_slice);
                        let since = wall
                            .checked_sub(now.saturating_duration_since(s.since()))
                            .unwrap_or(SystemTime::UNIX_EPOCH);
                        // With a full journal, older events may be gone: what came before the
                        // first one kept is not known.
                        let before = (!journal_full).then_some(initial);
                        ServerTimeline {
                            index: s.index(),
                            address: s.address().to_string(),
                            states: timeline(events, before, s.state().as_str(), since, from),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    HistoryJson {
        interval_ms: u64::try_from(history.every().as_millis()).unwrap_or(u64::MAX),
        window_ms: u64::try_from(history.window().as_millis()).unwrap_or(u64::MAX),
        now_unix_ms: unix_ms(wall),
        upstreams,
    }
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    upstream: Option<String>,
}

pub async fn handler(State(state): State<AdminState>, query: Query<HistoryQuery>) -> Response {
    let table = state.table.load_full();
    let body = snapshot(
        &table,
        &state.history,
        query.upstream.as_deref(),
        Instant::now(),
        SystemTime::now(),
    );
    ([(http::header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rouse_core::state::ServerState;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_json_has_samples_errors_and_timelines() {
        let config = rouse_config::parse(
            "t.toml",
            "[[upstream]]\nname = \"app\"\n\
             [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"x\"\n\
             [[upstream]]\nname = \"web\"\nhosts = [\"web.example\"]\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"127.0.0.1:9201\"\n",
        )
        .expect("valid");
        let t = Table::new(&config);
        let h = History::new(Duration::from_secs(5), Duration::from_secs(60));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        h.sample(&t, Instant::now(), t0);
        tokio::time::advance(Duration::from_secs(5)).await;
        t.upstreams[0].observe_duration(Duration::from_millis(3), &t.metrics);
        t.metrics.count_error("app", "start-timeout");
        t.upstreams[0].servers[0].set_state(ServerState::Ready, Instant::now());
        t.journal.record(Entry {
            at: t0 + Duration::from_secs(5),
            upstream: "app".into(),
            server: 0,
            address: "127.0.0.1:9101".into(),
            what: "start",
            detail: "demand".into(),
        });
        h.sample(&t, Instant::now(), t0 + Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(1)).await;

        let j = snapshot(&t, &h, None, Instant::now(), t0 + Duration::from_secs(6));
        let json = serde_json::to_value(&j).unwrap();
        assert_eq!(json["interval_ms"], 5000);
        assert_eq!(json["window_ms"], 60000);
        let app = &json["upstreams"][0];
        assert_eq!(app["at_unix_ms"], serde_json::json!([1_700_000_005_000u64]));
        assert_eq!(app["req_per_s"], serde_json::json!([0.2]));
        assert!(app["p50_ms"][0].as_f64().unwrap() > 2.0);
        assert_eq!(
            app["errors"],
            serde_json::json!([{"kind": "start-timeout", "count": 1}])
        );
        let states = &app["servers"][0]["states"];
        assert_eq!(states[0]["state"], "stopped", "{states}");
        assert_eq!(
            states[states.as_array().unwrap().len() - 1]["state"],
            "ready"
        );
        let web = &json["upstreams"][1];
        assert_eq!(web["req_per_s"], serde_json::json!([]));
        assert_eq!(web["servers"][0]["states"][0]["state"], "ready");

        let one = snapshot(&t, &h, Some("web"), Instant::now(), t0);
        assert_eq!(one.upstreams.len(), 1);
        let back: HistoryJson = serde_json::from_str(&serde_json::to_string(&j).unwrap()).unwrap();
        assert_eq!(back, j);
    }
}
