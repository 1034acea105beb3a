//! `GET /status`: the live table as JSON, with recent lifecycle events.
//!
//! SPEC.md's fields (`upstreams[].name`, `held`, `servers[].index`, `address`, `program`,
//! `state`, `in_flight`, `requests`) come first and never change; the others are additions
//! for operators and the dashboard. The same types deserialize, for `rouse status`.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use rouse_config::SupervisorRef;
use rouse_state::{Entry, Metrics, Table};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::AdminState;

/// Events listed by default, and at most (the journal keeps 200).
const DEFAULT_EVENTS: usize = 50;
const MAX_EVENTS: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub upstreams: Vec<UpstreamStatus>,
    /// Recent starts, readiness, stops and failures with their reasons, newest first.
    #[serde(default)]
    pub events: Vec<Event>,
    /// Whether POSTs need `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token_required: bool,
    /// rouse's version.
    #[serde(default)]
    pub version: String,
    /// The pid of the rouse process answering: it changes with `rouse upgrade` (and SIGUSR2).
    #[serde(default)]
    pub pid: u32,
    /// `[cluster]`: the replicas coordinated through etcd, as this one sees them; absent
    /// without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<super::cluster::ClusterStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    pub name: String,
    /// Requests waiting for a ready server, or for room on one (`max_conns`, or the target while
    /// another server starts).
    pub held: usize,
    pub servers: Vec<ServerStatus>,
    /// Held requests answered 503 after `start_timeout`, since start.
    #[serde(default)]
    pub held_timeouts: u64,
    #[serde(default)]
    pub queue_limit: usize,
    /// Typical start → ready time seen so far (moving average), if any start was measured.
    #[serde(default)]
    pub typical_start_ms: Option<u64>,
    /// "embedded", "none" (static servers) or a `[supervisors.NAME]` name.
    #[serde(default)]
    pub supervisor: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub path_prefix: String,
    #[serde(default)]
    pub min_servers: usize,
    #[serde(default)]
    pub max_servers: usize,
    /// How long a start may take before it counts as failed (`start_timeout`); `rouse start
    /// --wait` waits a little longer by default.
    #[serde(default)]
    pub start_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub index: usize,
    pub address: String,
    pub program: String,
    /// `stopped`, `starting`, `ready`, `draining`, `stopping` or `failed`.
    pub state: String,
    /// Requests in flight, including open upgraded connections.
    pub in_flight: u32,
    /// Requests sent to this server since rouse started.
    pub requests: u64,
    /// Open upgraded (WebSocket) connections, also counted in `in_flight`.
    #[serde(default)]
    pub upgraded: u32,
    /// How long the server has been in its current state.
    #[serde(default)]
    pub state_for_ms: u64,
    /// Who runs it: "embedded", "none" or a `[supervisors.NAME]` name.
    #[serde(default)]
    pub supervisor: String,
}

/// One lifecycle event of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    /// The same instant as milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    pub upstream: String,
    pub server: usize,
    pub address: String,
    /// "start", "ready", "adopt", "drain", "stop", "stopped", "failed", "start-failed".
    pub what: String,
    /// Why: a stop reason, an error, a duration.
    pub detail: String,
}

impl From<&Entry> for Event {
    fn from(e: &Entry) -> Event {
        let unix =
            e.at.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO);
        Event {
            at: humantime::format_rfc3339_millis(e.at).to_string(),
            at_unix_ms: u64::try_from(unix.as_millis()).unwrap_or(u64::MAX),
            upstream: e.upstream.clone(),
            server: e.server,
            address: e.address.clone(),
            what: e.what.to_owned(),
            detail: e.detail.clone(),
        }
    }
}

fn supervisor_name(s: &SupervisorRef) -> String {
    match s {
        SupervisorRef::Embedded => "embedded".to_owned(),
        SupervisorRef::Static => "none".to_owned(),
        SupervisorRef::Supervisord(name) => name.clone(),
    }
}

/// A snapshot of `table` at `now`, with up to `events` journal entries.
pub fn snapshot(table: &Table, now: Instant, events: usize, token_required: bool) -> Status {
    let upstreams = table
        .upstreams
        .iter()
        .map(|u| UpstreamStatus {
            name: u.name().to_owned(),
            held: u.held(),
            servers: u
                .servers
                .iter()
                .map(|s| ServerStatus {
                    index: s.index(),
                    address: s.address().to_string(),
                    program: s.config.program.clone(),
                    state: s.state().as_str().to_owned(),
                    in_flight: s.in_flight(),
                    requests: s.requests(),
                    upgraded: s.upgraded(),
                    state_for_ms: u64::try_from(
                        now.saturating_duration_since(s.since()).as_millis(),
                    )
                    .unwrap_or(u64::MAX),
                    supervisor: supervisor_name(&s.config.supervisor),
                })
                .collect(),
            held_timeouts: table
                .metrics
                .held_timeouts
                .get_or_create(&Metrics::upstream(u.name()))
                .get(),
            queue_limit: u.config.queue_limit,
            typical_start_ms: u
                .typical_start()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            supervisor: supervisor_name(&u.config.supervisor),
            hosts: u.config.hosts.clone(),
            path_prefix: u.config.path_prefix.clone(),
            min_servers: u.config.min_servers,
            max_servers: u.config.max_servers,
            start_timeout_ms: Some(
                u64::try_from(u.config.start_timeout.as_millis()).unwrap_or(u64::MAX),
            ),
        })
        .collect();
    Status {
        upstreams,
        events: table
            .journal
            .recent(events.min(MAX_EVENTS))
            .iter()
            .map(Event::from)
            .collect(),
        token_required,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        cluster: None,
    }
}

#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    /// How many recent events to list (default 50, at most 200).
    events: Option<usize>,
}

pub async fn handler(State(state): State<AdminState>, query: Query<StatusQuery>) -> Response {
    let table = state.table.load_full();
    let mut status = snapshot(
        &table,
        Instant::now(),
        query.events.unwrap_or(DEFAULT_EVENTS),
        state.token.is_some(),
    );
    status.cluster = state
        .cluster
        .as_ref()
        .map(|c| super::cluster::ClusterStatus::of(&c.snapshot()));
    ([(http::header::CACHE_CONTROL, "no-store")], Json(status)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rouse_core::state::ServerState;

    fn table() -> Table {
        let config = rouse_config::parse(
            "t.toml",
            "[[upstream]]\nname = \"app\"\nhosts = [\"app.example\"]\n\
             [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"x\"\n\
             [[upstream.server]]\naddress = \"127.0.0.1:9102\"\ncommand = \"x\"\n\
             [[upstream]]\nname = \"web\"\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"127.0.0.1:9201\"\n",
        )
        .expect("valid");
        Table::new(&config)
    }

    #[tokio::test]
    async fn the_json_has_specs_fields_with_the_live_values() {
        let t = table();
        let now = Instant::now();
        t.upstreams[0].servers[1].set_state(ServerState::Starting, now);
        let _held = t.upstreams[0].hold().expect("room");
        let _req = t.upstreams[1].servers[0].begin_request();
        t.journal.record(Entry {
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            upstream: "app".into(),
            server: 1,
            address: "127.0.0.1:9102".into(),
            what: "start",
            detail: "demand".into(),
        });

        let json = serde_json::to_value(snapshot(&t, now, 10, true)).unwrap();
        let app = &json["upstreams"][0];
        assert_eq!(app["name"], "app");
        assert_eq!(app["held"], 1);
        assert_eq!(app["supervisor"], "embedded");
        assert_eq!(app["hosts"], serde_json::json!(["app.example"]));
        let s1 = &app["servers"][1];
        for (key, want) in [
            ("index", serde_json::json!(1)),
            ("address", serde_json::json!("127.0.0.1:9102")),
            ("program", serde_json::json!("app1")),
            ("state", serde_json::json!("starting")),
            ("in_flight", serde_json::json!(0)),
            ("requests", serde_json::json!(0)),
        ] {
            assert_eq!(s1[key], want, "{key} in {s1}");
        }
        assert_eq!(app["servers"][0]["state"], "stopped");
        let web = &json["upstreams"][1]["servers"][0];
        assert_eq!(web["state"], "ready", "static servers are ready");
        assert_eq!(
            (web["in_flight"].clone(), web["requests"].clone()),
            (1.into(), 1.into())
        );
        assert_eq!(json["upstreams"][1]["supervisor"], "none");

        let e = &json["events"][0];
        assert_eq!(e["at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(e["at_unix_ms"], 1_700_000_000_123u64);
        assert_eq!(
            (e["what"].clone(), e["detail"].clone()),
            ("start".into(), "demand".into())
        );
        assert_eq!(json["token_required"], true);
    }

    #[tokio::test]
    async fn it_round_trips_for_the_cli() {
        let t = table();
        let status = snapshot(&t, Instant::now(), 10, false);
        let text = serde_json::to_string(&status).unwrap();
        let back: Status = serde_json::from_str(&text).unwrap();
        assert_eq!(back, status);
        // A minimal answer of SPEC's fields alone still reads.
        let minimal: Status = serde_json::from_str(
            r#"{"upstreams":[{"name":"a","held":0,"servers":[{"index":0,"address":"x",
                "program":"p","state":"ready","in_flight":0,"requests":0}]}]}"#,
        )
        .unwrap();
        assert_eq!(minimal.upstreams[0].servers[0].state, "ready");
    }

    #[tokio::test]
    async fn events_are_capped() {
        let t = table();
        for i in 0..300 {
            t.journal.record(Entry {
                at: SystemTime::now(),
                upstream: "app".into(),
                server: i % 2,
                address: String::new(),
                what: "start",
                detail: String::new(),
            });
        }
        assert_eq!(
            snapshot(&t, Instant::now(), usize::MAX, false).events.len(),
            200
        );
        assert_eq!(snapshot(&t, Instant::now(), 3, false).events.len(), 3);
    }
}
