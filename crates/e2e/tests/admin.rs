//! The admin API over real sockets: `GET /status`, `GET /metrics`, `GET /`, manual start and
//! stop, the bearer token, and the answers for unknown names, static upstreams, unknown paths
//! and wrong methods. rouse runs in-process with `[admin] listen = "127.0.0.1:0"`; its servers
//! are `rouse-test-backend` processes that its embedded supervisor starts and stops.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::{
    WAIT, backend_server, client, embedded_upstream, free_addrs, log_if_asked, refuses,
    start_rouse, static_upstream,
};
use rouse::Rouse;
use rouse_e2e::wait_until;
use serde_json::Value;

// === helpers ===

const ADMIN: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n";

fn admin(r: &Rouse, path: &str) -> String {
    format!(
        "http://{}{path}",
        r.admin_addr().expect("rouse has an admin listener")
    )
}

/// An answer: status, selected headers, body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(req: reqwest::RequestBuilder) -> Reply {
    let r = req.send().await.expect("the admin API answers");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.expect("a body");
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(r: &Rouse, path: &str) -> Reply {
    send(client().get(admin(r, path))).await
}

async fn post(r: &Rouse, path: &str, token: Option<&str>) -> Reply {
    let mut req = client().post(admin(r, path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    send(req).await
}

async fn status(r: &Rouse) -> Value {
    let reply = get(r, "/status").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()
}

fn server<'a>(status: &'a Value, name: &str, index: usize) -> &'a Value {
    let s = &upstream(status, name)["servers"][index];
    assert!(s.is_object(), "no server {index} of {name} in {status}");
    s
}

fn upstream<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["upstreams"]
        .as_array()
        .expect("upstreams")
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no upstream {name} in {status}"))
}

/// Polls `/status` until server `index` of `upstream` is in `state`.
async fn wait_state(r: &Rouse, upstream: &str, index: usize, state: &str) {
    wait_until(
        &format!("server {index} of {upstream} to be {state} in /status"),
        WAIT,
        || async { server(&status(r).await, upstream, index)["state"] == state },
    )
    .await;
}

/// One sample of the metrics text: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (0.0.4) or OpenMetrics text strictly enough to catch a
/// malformed line: every line is a `# HELP`/`# TYPE`/`# EOF` comment or
/// `name{label="value",...} value`, label values with `\\`, `\"` and `\n` escapes, and every
/// sample belongs to a family declared by a `# TYPE` line before it.
fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut families: Vec<(String, String)> = Vec::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "summary",
                            "untyped",
                            "unknown"
                        ]
                        .contains(&kind),
                        "{}",
                        at()
                    );
                    families.push((name.to_owned(), kind.to_owned()));
                }
                (Some("HELP"), Some(_), _) | (Some("EOF"), None, None) | (Some("UNIT"), _, _) => {}
                _ => panic!("bad comment, {}", at()),
            }
            continue;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or_else(|| panic!("no value, {}", at()));
        let name = &line[..name_end];
        assert!(!name.is_empty(), "no name, {}", at());
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            let (parsed, after) = parse_labels(after).unwrap_or_else(|e| panic!("{e}, {}", at()));
            labels = parsed;
            rest = after;
        }
        let value_text = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value, {}", at()));
        let value_text = value_text.split(' ').next().expect("a value");
        let value: f64 = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|e| panic!("bad value {v:?} ({e}), {}", at())),
        };
        let family = families.iter().rev().find(|(f, kind)| {
            name == f
                || (kind == "counter" && name == format!("{f}_total"))
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name == format!("{f}{s}")))
        });
        assert!(family.is_some(), "sample outside its # TYPE, {}", at());
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

/// `a="1",b="x\"y"}` (after the `{`): the labels, and what follows the `}`.
fn parse_labels(mut rest: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("a label without '='")?;
        let key = &rest[..eq];
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("a label value without quotes")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".into()),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

/// The value of the one sample named `name` whose labels include `labels`; 0 when none.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "several samples {name} {labels:?}: {matching:?}"
    );
    matching.first().map_or(0.0, |s| s.value)
}

async fn metrics(r: &Rouse) -> Vec<Sample> {
    let reply = get(r, "/metrics").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.header("content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse_metrics(&reply.body)
}

/// An embedded upstream `app` of two test backends, plus a static `web`.
async fn app_and_web(extra: &str, token: Option<&str>) -> (Rouse, [SocketAddr; 3]) {
    log_if_asked();
    let [a0, a1, w0] = free_addrs();
    let token_line = token.map_or(String::new(), |t| format!("token = {t:?}\n"));
    let rouse = start_rouse(&format!(
        "{ADMIN}{token_line}{}{}",
        embedded_upstream(
            "app",
            &[],
            extra,
            &[
                backend_server(a0, "s0", &[], ""),
                backend_server(a1, "s1", &[], "")
            ],
        ),
        static_upstream("web", &["web.example"], "", &[w0]),
    ))
    .await;
    (rouse, [a0, a1, w0])
}

// === GET /status, /, unknown paths, wrong methods ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_every_upstream_and_server_with_specs_fields() {
    let (rouse, [a0, a1, w0]) = app_and_web("", None).await;
    let reply = get(&rouse, "/status").await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").starts_with("application/json"));
    let s = reply.json();
    let names: Vec<&str> = s["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "web"]);
    let app = upstream(&s, "app");
    assert_eq!(app["held"], 0);
    assert_eq!(app["supervisor"], "embedded");
    for (i, addr) in [a0, a1].iter().enumerate() {
        let srv = &app["servers"][i];
        assert_eq!(srv["index"], i);
        assert_eq!(srv["address"], addr.to_string());
        assert_eq!(srv["program"], format!("app{i}"));
        assert_eq!(srv["state"], "stopped", "nothing runs before demand");
        assert_eq!(srv["in_flight"], 0);
        assert_eq!(srv["requests"], 0);
    }
    let web = upstream(&s, "web");
    assert_eq!(web["servers"][0]["address"], w0.to_string());
    assert_eq!(web["servers"][0]["state"], "ready");
    assert_eq!(web["supervisor"], "none");
    assert_eq!(s["events"], serde_json::json!([]));
    assert_eq!(s["token_required"], false);

    // The dashboard page.
    let page = get(&rouse, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert!(
        page.header("content-security-policy")
            .contains("default-src 'none'")
    );
    assert!(page.body.contains("<title>rouse</title>"));

    // Unknown paths are 404, wrong methods 405.
    for path in [
        "/nope",
        "/status/x",
        "/upstreams/app",
        "/upstreams/app/restart",
    ] {
        let r = get(&rouse, path).await;
        assert_eq!(r.status, 404, "GET {path}: {r:?}");
        let r = post(&rouse, path, None).await;
        assert_eq!(r.status, 404, "POST {path}: {r:?}");
    }
    for path in ["/upstreams/app/start", "/upstreams/app/servers/0/stop"] {
        let r = get(&rouse, path).await;
        assert_eq!(r.status, 405, "GET {path}: {r:?}");
    }
    for path in ["/status", "/metrics", "/"] {
        let r = post(&rouse, path, None).await;
        assert_eq!(r.status, 405, "POST {path}: {r:?}");
        let r = send(client().delete(admin(&rouse, path))).await;
        assert_eq!(r.status, 405, "DELETE {path}: {r:?}");
    }
    rouse.shutdown().await;
}

// === manual start and stop ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_start_makes_a_server_ready_and_manual_stop_stops_it() {
    let (rouse, [a0, a1, _]) = app_and_web("idle_timeout = \"5m\"", None).await;
    let c = client();

    // One server, by index.
    let r = post(&rouse, "/upstreams/app/servers/1/start", None).await;
    assert_eq!(r.status, 202, "{r:?}");
    let a = r.json();
    assert_eq!(a["accepted"], true);
    assert_eq!(a["server"], 1, "the answer names the server: {a}");
    assert!(
        a["message"].as_str().unwrap().contains(&a1.to_string()),
        "{a}"
    );
    wait_state(&rouse, "app", 1, "ready").await;
    let body = c
        .get(format!("http://{a1}/"))
        .send()
        .await
        .expect("s1 answers on its port")
        .text()
        .await
        .unwrap();
    assert_eq!(body, "s1");
    assert_eq!(
        server(&status(&rouse).await, "app", 0)["state"],
        "stopped",
        "only the server asked for"
    );
    // Starting it again is no error: it already is up.
    let r = post(&rouse, "/upstreams/app/servers/1/start", None).await;
    assert_eq!(r.status, 202, "{r:?}");
    assert!(r.json()["message"].as_str().unwrap().contains("already"));

    let r = post(&rouse, "/upstreams/app/servers/1/stop", None).await;
    assert_eq!(r.status, 202, "{r:?}");
    wait_state(&rouse, "app", 1, "stopped").await;
    wait_until("s1's port to close", WAIT, || refuses(a1)).await;

    // The upstream's next server (the lowest stopped one), then its last running one.
    let r = post(&rouse, "/upstreams/app/start", None).await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json()["server"], 0, "the server it chose: {r:?}");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains(&a0.to_string()),
        "{r:?}"
    );
    wait_state(&rouse, "app", 0, "ready").await;
    let r = post(&rouse, "/upstreams/app/stop", None).await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json()["server"], 0, "the server it chose: {r:?}");
    wait_state(&rouse, "app", 0, "stopped").await;

    // Nothing left to stop: 409, saying why.
    let r = post(&rouse, "/upstreams/app/stop", None).await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["error"], "nothing-to-do");
    assert!(r.json()["message"].as_str().unwrap().contains("no server"));

    // The journal tells what happened, newest first, with the reasons.
    let s = status(&rouse).await;
    let events: Vec<(String, u64, String)> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["what"].as_str().unwrap().to_owned(),
                e["server"].as_u64().unwrap(),
                e["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        events
            .iter()
            .any(|(w, s, d)| w == "stop" && *s == 1 && d == "manual"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|(w, s, _)| w == "ready" && *s == 0),
        "{events:?}"
    );
    assert!(s["events"][0]["at"].as_str().unwrap().ends_with('Z'));
    rouse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_and_indexes_are_404_and_static_upstreams_409() {
    let (rouse, [a0, ..]) = app_and_web("", None).await;
    for path in [
        "/upstreams/nope/start",
        "/upstreams/nope/stop",
        "/upstreams/nope/servers/0/start",
    ] {
        let r = post(&rouse, path, None).await;
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert_eq!(r.json()["error"], "unknown-upstream", "{path}");
        assert!(r.json()["message"].as_str().unwrap().contains("nope"));
    }
    for path in [
        "/upstreams/app/servers/2/start",
        "/upstreams/app/servers/99/stop",
        "/upstreams/app/servers/x/start",
        "/upstreams/app/servers/-1/start",
        "/upstreams/app/servers/18446744073709551616/start",
        "/upstreams/web/servers/1/start",
    ] {
        let r = post(&rouse, path, None).await;
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert_eq!(r.json()["error"], "unknown-server", "{path}");
    }
    for path in [
        "/upstreams/web/start",
        "/upstreams/web/stop",
        "/upstreams/web/servers/0/stop",
    ] {
        let r = post(&rouse, path, None).await;
        assert_eq!(r.status, 409, "{path}: {r:?}");
        assert_eq!(r.json()["error"], "static", "{path}");
        assert!(r.json()["message"].as_str().unwrap().contains("static"));
    }
    // None of that started anything.
    assert_eq!(server(&status(&rouse).await, "app", 0)["state"], "stopped");
    assert!(refuses(a0).await);
    rouse.shutdown().await;
}

// === the token ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_commands_need_the_bearer_and_reads_stay_open() {
    let (rouse, _) = app_and_web("idle_timeout = \"5m\"", Some("s3cret")).await;
    let path = "/upstreams/app/servers/0/start";
    for (token, why) in [(None, "no token"), (Some("wrong"), "wrong token")] {
        let r = post(&rouse, path, token).await;
        assert_eq!(r.status, 401, "{why}: {r:?}");
        assert!(
            r.header("www-authenticate").starts_with("Bearer"),
            "{why}: {r:?}"
        );
        assert_eq!(r.json()["error"], "unauthorized");
    }
    // Another scheme is no bearer token either.
    let r = send(
        client()
            .post(admin(&rouse, path))
            .basic_auth("admin", Some("s3cret")),
    )
    .await;
    assert_eq!(r.status, 401, "{r:?}");
    // Nothing was started by the refused commands.
    assert_eq!(server(&status(&rouse).await, "app", 0)["state"], "stopped");

    // A browser page of another origin cannot command, even with the token.
    let r = send(
        client()
            .post(admin(&rouse, path))
            .bearer_auth("s3cret")
            .header("origin", "http://evil.example"),
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");

    // Refusals are decided before the name is looked at: no probing names without the token.
    let r = post(&rouse, "/upstreams/nope/start", None).await;
    assert_eq!(r.status, 401, "{r:?}");

    let r = post(&rouse, path, Some("s3cret")).await;
    assert_eq!(r.status, 202, "{r:?}");
    wait_state(&rouse, "app", 0, "ready").await;

    // Reads need no token.
    let s = status(&rouse).await;
    assert_eq!(s["token_required"], true);
    assert_eq!(get(&rouse, "/metrics").await.status, 200);
    assert_eq!(get(&rouse, "/").await.status, 200);
    rouse.shutdown().await;
}

// === metrics ===

/// Dashboards and alerts bind to families: every one is declared (HELP and TYPE) from the
/// first scrape, before any request, start or stop happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_family_is_declared_from_the_first_scrape() {
    let (rouse, _) = app_and_web("", None).await;
    for accept in ["text/plain", "application/openmetrics-text; version=1.0.0"] {
        let reply = send(
            client()
                .get(admin(&rouse, "/metrics"))
                .header("accept", accept),
        )
        .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        parse_metrics(&reply.body);
        let openmetrics = accept.starts_with("application/openmetrics-text");
        for (family, kind) in [
            ("rouse_requests_total", "counter"),
            ("rouse_request_duration_seconds", "histogram"),
            ("rouse_in_flight", "gauge"),
            ("rouse_held_requests", "gauge"),
            ("rouse_held_timeouts_total", "counter"),
            ("rouse_server_state", "gauge"),
            ("rouse_starts_total", "counter"),
            ("rouse_start_duration_seconds", "histogram"),
            ("rouse_stops_total", "counter"),
            ("rouse_upgraded_connections", "gauge"),
        ] {
            // OpenMetrics names a counter's family without the sample's `_total`.
            let name = if openmetrics {
                family.trim_end_matches("_total")
            } else {
                family
            };
            for line in [format!("# HELP {name} "), format!("# TYPE {name} {kind}")] {
                assert!(
                    reply.body.lines().any(|l| l.starts_with(&line)),
                    "{accept}: no {line:?} in\n{}",
                    reply.body
                );
            }
        }
    }
    rouse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_requests_starts_and_idle_stops() {
    let (rouse, [a0, a1, _]) = app_and_web("idle_timeout = \"4s\"", None).await;
    let (s0, s1) = (a0.to_string(), a1.to_string());

    let m = metrics(&rouse).await;
    for st in [
        "stopped", "starting", "ready", "draining", "stopping", "failed",
    ] {
        let want = if st == "stopped" { 1.0 } else { 0.0 };
        assert_eq!(
            value(
                &m,
                "rouse_server_state",
                &[("upstream", "app"), ("server", &s0), ("state", st)]
            ),
            want,
            "{st}"
        );
    }
    assert_eq!(
        value(
            &m,
            "rouse_server_state",
            &[("upstream", "web"), ("state", "ready")]
        ),
        1.0
    );
    assert_eq!(
        value(&m, "rouse_held_requests", &[("upstream", "app")]),
        0.0
    );
    assert!(
        m.iter().any(|s| s.name == "rouse_held_timeouts_total"),
        "held timeouts are listed at 0"
    );

    // A cold start, then N requests, all on s0.
    const N: usize = 7;
    let c = client();
    for _ in 0..N {
        let r = c
            .get(format!("http://{}/", rouse.addr()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "s0");
    }
    let m = metrics(&rouse).await;
    let req = |code: &'static str| {
        value(
            &m,
            "rouse_requests_total",
            &[("upstream", "app"), ("server", &s0), ("code", code)],
        )
    };
    assert_eq!(req("200"), N as f64);
    assert_eq!(
        value(
            &m,
            "rouse_request_duration_seconds_count",
            &[("upstream", "app")]
        ),
        N as f64
    );
    assert_eq!(
        value(
            &m,
            "rouse_request_duration_seconds_bucket",
            &[("upstream", "app"), ("le", "+Inf")]
        ),
        N as f64
    );
    assert_eq!(
        value(
            &m,
            "rouse_starts_total",
            &[("upstream", "app"), ("server", &s0), ("result", "ready")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "rouse_starts_total",
            &[("upstream", "app"), ("server", &s1)]
        ),
        0.0,
        "one start only"
    );
    assert_eq!(
        value(
            &m,
            "rouse_start_duration_seconds_count",
            &[("upstream", "app")]
        ),
        1.0
    );
    let took = value(
        &m,
        "rouse_start_duration_seconds_sum",
        &[("upstream", "app")],
    );
    assert!(took > 0.0 && took < 20.0, "start took {took} s");
    assert_eq!(
        value(
            &m,
            "rouse_server_state",
            &[("upstream", "app"), ("server", &s0), ("state", "ready")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "rouse_server_state",
            &[("upstream", "app"), ("server", &s0), ("state", "stopped")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &m,
            "rouse_in_flight",
            &[("upstream", "app"), ("server", &s0)]
        ),
        0.0
    );
    // The same numbers as /status.
    let s = status(&rouse).await;
    assert_eq!(server(&s, "app", 0)["requests"], N);

    // Idle for idle_timeout (4 s): stopped, and counted with its reason.
    wait_state(&rouse, "app", 0, "stopped").await;
    let m = metrics(&rouse).await;
    assert_eq!(
        value(
            &m,
            "rouse_stops_total",
            &[("upstream", "app"), ("server", &s0), ("reason", "idle")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "rouse_server_state",
            &[("upstream", "app"), ("server", &s0), ("state", "stopped")]
        ),
        1.0
    );

    // OpenMetrics when asked for, with the same samples.
    let om = send(
        client()
            .get(admin(&rouse, "/metrics"))
            .header("accept", "application/openmetrics-text; version=1.0.0"),
    )
    .await;
    assert_eq!(
        om.header("content-type"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.body.ends_with("# EOF\n"));
    let om = parse_metrics(&om.body);
    assert_eq!(
        value(
            &om,
            "rouse_requests_total",
            &[("upstream", "app"), ("server", &s0), ("code", "200")]
        ),
        N as f64
    );
    rouse.shutdown().await;
}

// === held requests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_show_held_requests_while_a_slow_server_starts() {
    log_if_asked();
    // s0 takes a minute to listen: requests stay held until the test starts s1 by hand, so
    // nothing here depends on how fast the machine is.
    let [a0, a1] = free_addrs();
    let rouse = start_rouse(&format!(
        "{ADMIN}{}",
        embedded_upstream(
            "slow",
            &[],
            "target_in_flight = 100",
            &[
                backend_server(a0, "s0", &["--delay-listen", "60000"], ""),
                backend_server(a1, "s1", &[], ""),
            ],
        )
    ))
    .await;
    let c = client();
    let u = format!("http://{}/", rouse.addr());
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let (c, u) = (c.clone(), u.clone());
            tokio::spawn(async move {
                let r = c.get(u).send().await?;
                Ok::<_, reqwest::Error>((r.status().as_u16(), r.text().await?))
            })
        })
        .collect();
    wait_until("3 held requests in /status", WAIT, || async {
        upstream(&status(&rouse).await, "slow")["held"] == 3
    })
    .await;
    let s = status(&rouse).await;
    assert_eq!(server(&s, "slow", 0)["state"], "starting", "{s}");
    assert_eq!(server(&s, "slow", 1)["state"], "stopped", "{s}");
    let m = metrics(&rouse).await;
    assert_eq!(
        value(&m, "rouse_held_requests", &[("upstream", "slow")]),
        3.0
    );
    assert_eq!(
        value(
            &m,
            "rouse_server_state",
            &[
                ("upstream", "slow"),
                ("server", &a0.to_string()),
                ("state", "starting")
            ]
        ),
        1.0
    );

    // A ready server releases them.
    let r = post(&rouse, "/upstreams/slow/servers/1/start", None).await;
    assert_eq!(r.status, 202, "{r:?}");
    for w in waiting {
        let answer = tokio::time::timeout(WAIT, w)
            .await
            .expect("a held request is answered")
            .expect("no panic")
            .expect("an HTTP answer");
        assert_eq!(answer, (200, "s1".to_owned()));
    }
    let s = status(&rouse).await;
    assert_eq!(upstream(&s, "slow")["held"], 0);
    assert_eq!(server(&s, "slow", 1)["state"], "ready");
    assert_eq!(server(&s, "slow", 1)["requests"], 3);
    assert!(upstream(&s, "slow")["typical_start_ms"].is_u64(), "{s}");
    let m = metrics(&rouse).await;
    assert_eq!(
        value(&m, "rouse_held_requests", &[("upstream", "slow")]),
        0.0
    );
    rouse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_timeout_is_counted_in_metrics_and_status() {
    log_if_asked();
    let [a0] = free_addrs();
    let rouse = start_rouse(&format!(
        "{ADMIN}{}",
        embedded_upstream(
            "slow",
            &[],
            "start_timeout = \"300ms\"",
            &[backend_server(a0, "s0", &["--delay-listen", "60000"], "")],
        )
    ))
    .await;
    let r = client()
        .get(format!("http://{}/", rouse.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let m = metrics(&rouse).await;
    assert_eq!(
        value(&m, "rouse_held_timeouts_total", &[("upstream", "slow")]),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "rouse_requests_total",
            &[("upstream", "slow"), ("code", "503")]
        ),
        1.0
    );
    let s = status(&rouse).await;
    assert_eq!(upstream(&s, "slow")["held_timeouts"], 1);
    assert_eq!(upstream(&s, "slow")["held"], 0);
    rouse.shutdown().await;
}

#[test]
fn the_metrics_parser_reads_escapes_and_rejects_garbage() {
    let ok = "# HELP x_total A thing.\n# TYPE x_total counter\n\
              x_total{a=\"q\\\"uote\\\\ back\\nnl\",b=\"\"} 3\n# TYPE g gauge\ng 1.5\n# EOF\n";
    let s = parse_metrics(ok);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].labels["a"], "q\"uote\\ back\nnl");
    assert_eq!(value(&s, "g", &[]), 1.5);
    for bad in [
        "x 1\n",
        "# TYPE x gauge\nx\n",
        "# TYPE x gauge\nx{a=\"1} 2\n",
        "# TYPE x gauge\nx{a=1} 2\n",
        "# TYPE x gauge\nx one\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_metrics(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

// === POST /reload ===

/// `POST /reload` re-reads the file rouse was started from: an invalid file is refused with
/// every error's FILE:LINE:COL and changes nothing; a valid one is applied (a server added);
/// with a token, it needs the bearer like every POST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_the_file_or_answers_its_errors() {
    log_if_asked();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("rouse.toml");
    let [a0, a1] = free_addrs();
    let text = |servers: &[String]| {
        format!(
            "[proxy]\nlisten = [\"127.0.0.1:0\"]\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t0k\"\n{}",
            embedded_upstream("app", &[], "", servers)
        )
    };
    std::fs::write(&path, text(&[backend_server(a0, "s0", &[], "")])).unwrap();
    let config = rouse_config::load(&path).expect("valid");
    let rouse = Rouse::start(config).await.expect("rouse starts");
    assert_eq!(rouse.table().upstreams[0].servers.len(), 1);

    // Invalid: every error comes back, with its position; nothing changes.
    std::fs::write(
        &path,
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\nthreads = \"two\"\n[[upstream]]\nnam = \"x\"\n",
    )
    .unwrap();
    let refused = post(&rouse, "/reload", Some("t0k")).await;
    assert_eq!(refused.status, 422, "{refused:?}");
    let answer = refused.json();
    assert_eq!(answer["error"], "invalid-config");
    let message = answer["message"].as_str().unwrap_or_default();
    let file = path.display().to_string();
    assert!(message.contains(&format!("{file}:3:")), "{message}");
    assert!(message.contains(&format!("{file}:5:")), "{message}");
    assert_eq!(
        rouse.table().upstreams[0].servers.len(),
        1,
        "old config kept"
    );

    // Valid, but no token: 401, nothing read.
    std::fs::write(
        &path,
        text(&[
            backend_server(a0, "s0", &[], ""),
            backend_server(a1, "s1", &[], ""),
        ]),
    )
    .unwrap();
    assert_eq!(post(&rouse, "/reload", None).await.status, 401);
    assert_eq!(rouse.table().upstreams[0].servers.len(), 1);

    let applied = post(&rouse, "/reload", Some("t0k")).await;
    assert_eq!(applied.status, 202, "{applied:?}");
    assert_eq!(applied.json()["accepted"], true);
    assert_eq!(rouse.table().upstreams[0].servers.len(), 2);
    let s = status(&rouse).await;
    assert_eq!(server(&s, "app", 1)["address"], a1.to_string());
    rouse.shutdown().await;
    assert!(refuses(a0).await && refuses(a1).await);
}

// === Host: DNS rebinding ===

/// The issue's probe: a page on `evil.example` whose name was re-resolved to 127.0.0.1 sends
/// `POST /reload` with `Host: evil.example` and a matching `Origin`. Refused (421) with or
/// without the token, and reads too; the admin address, loopback names and an `[admin] hosts`
/// entry are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused_even_with_the_token() {
    log_if_asked();
    let backend = rouse_e2e::spawn_in_process("a").await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("rouse.toml");
    std::fs::write(
        &path,
        format!(
            "[proxy]\nlisten = [\"127.0.0.1:0\"]\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t0k\"\nhosts = [\"rouse.internal\"]\n{}",
            static_upstream("web", &[], "", &[backend.addr()])
        ),
    )
    .unwrap();
    let rouse = Rouse::start(rouse_config::load(&path).expect("valid"))
        .await
        .expect("rouse starts");
    let port = rouse.admin_addr().expect("an admin listener").port();
    // As a browser sends it from a page of `host`.
    let from_page = |method: reqwest::Method, path: &str, host: &str| {
        client()
            .request(method, admin(&rouse, path))
            .header("host", host)
            .header("origin", format!("http://{host}"))
    };

    for evil in ["evil.example", &format!("evil.example:{port}")] {
        for token in [None, Some("t0k")] {
            let mut req = from_page(reqwest::Method::POST, "/reload", evil);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = send(req).await;
            assert_eq!(r.status, 421, "{evil}, token {token:?}: {r:?}");
            assert_eq!(r.json()["error"], "misdirected", "{r:?}");
        }
        for path in ["/status", "/metrics", "/", "/nowhere"] {
            let r = send(from_page(reqwest::Method::GET, path, evil)).await;
            assert_eq!(r.status, 421, "GET {path} with Host {evil}: {r:?}");
            assert!(!r.body.contains("web"), "{r:?}");
        }
    }

    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("rouse.internal:{port}"),
        "Rouse.Internal".to_owned(),
    ] {
        let r = send(from_page(reqwest::Method::GET, "/status", &host)).await;
        assert_eq!(r.status, 200, "GET /status with Host {host}: {r:?}");
        assert_eq!(upstream(&r.json(), "web")["servers"][0]["state"], "ready");
        // Past the Host check, the token is still needed.
        let r = send(from_page(reqwest::Method::POST, "/reload", &host)).await;
        assert_eq!(
            r.status, 401,
            "POST /reload with Host {host}, no token: {r:?}"
        );
        let r = send(from_page(reqwest::Method::POST, "/reload", &host).bearer_auth("t0k")).await;
        assert_eq!(r.status, 202, "POST /reload with Host {host}: {r:?}");
    }
    rouse.shutdown().await;
}

/// Below reqwest, which always sends `Host`: an HTTP/1.0 request without one is served (no
/// browser sends such a request), an HTTP/1.1 one is a 400 as RFC 9112 §3.2 says, and so is a
/// request with two `Host` headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_host_is_served_only_in_http_1_0() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = rouse_e2e::spawn_in_process("a").await;
    let rouse = start_rouse(&format!(
        "{ADMIN}{}",
        static_upstream("s", &[], "", &[backend.addr()])
    ))
    .await;
    let addr = rouse.admin_addr().expect("an admin listener");
    let raw = |head: &'static str| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
            .await
            .expect("the admin API answers and closes in time")
            .expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = raw("GET /status HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let answer = raw("GET /status HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw(
        "GET /status HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw("GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    rouse.shutdown().await;
}

/// A rouse whose config did not come from a file has nothing to re-read: 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_without_a_file_is_409() {
    let backend = rouse_e2e::spawn_in_process("a").await;
    let rouse = start_rouse(&format!(
        "{ADMIN}{}",
        static_upstream("s", &[], "", &[backend.addr()])
    ))
    .await;
    let r = post(&rouse, "/reload", None).await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["error"], "no-file");
}

/// A manual stop drains first (an open WebSocket keeps the server up), but not for ever: after
/// `shutdown_timeout` the server is stopped anyway, as a shutdown would, and the socket ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_stop_waits_for_a_websocket_at_most_shutdown_timeout() {
    use futures_util::StreamExt;
    log_if_asked();
    let [a0] = free_addrs();
    let config = common::config_with(
        "shutdown_timeout = \"1s\"",
        &format!(
            "{ADMIN}{}",
            embedded_upstream(
                "app",
                &[],
                "",
                // The test backend waits for its WebSockets on SIGTERM: SIGKILL comes sooner.
                &[backend_server(a0, "s0", &[], "stop_timeout = \"500ms\"")],
            )
        ),
    );
    let rouse = Rouse::start(config).await.expect("rouse starts");
    let (mut ws, _) = common::websocket(rouse.addr()).await;
    wait_state(&rouse, "app", 0, "ready").await;

    let asked = tokio::time::Instant::now();
    let r = post(&rouse, "/upstreams/app/servers/0/stop", None).await;
    assert_eq!(r.status, 202, "{r:?}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        server(&status(&rouse).await, "app", 0)["state"],
        "draining",
        "its WebSocket is open"
    );
    wait_state(&rouse, "app", 0, "stopped").await;
    assert!(asked.elapsed() >= std::time::Duration::from_millis(900));
    wait_until("s0's port to close", WAIT, || refuses(a0)).await;
    let end = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("the socket ends");
    assert!(
        !matches!(
            end,
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_)))
        ),
        "{end:?}"
    );
    rouse.shutdown().await;
}

/// Answers rouse writes itself are counted by upstream and `x-rouse-error` kind, whether the
/// HTTP/1.1 fast path or hyper's (here HTTP/2) answered; proxied answers, errors included,
/// are not. `GET /history` lists the same counts for the dashboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rouses_own_error_answers_are_counted_by_kind_on_both_paths() {
    log_if_asked();
    let [down] = free_addrs();
    let backend = rouse_e2e::BackendProcess::spawn("w0", None).await;
    let r = start_rouse(&format!(
        "{ADMIN}{}{}",
        static_upstream("web", &[], "", &[backend.addr()]),
        // By path: an HTTP/2 request's authority is its target's, not a Host header.
        static_upstream("down", &[], "path_prefix = \"/down\"", &[down]),
    ))
    .await;
    let h1 = client();
    let h2 = common::h2c_client();
    for c in [&h1, &h2] {
        let a = c
            .get(format!("http://{}/down/x", r.addr()))
            .send()
            .await
            .expect("rouse answers");
        assert_eq!(a.status(), 502);
        assert_eq!(a.headers()["x-rouse-error"], "unreachable");
        // The server's own 404 is its answer, not rouse's.
        let a = c
            .get(format!("http://{}/status/404", r.addr()))
            .send()
            .await
            .expect("rouse answers");
        assert_eq!(a.status(), 404);
        assert!(a.headers().get("x-rouse-error").is_none());
    }
    let metrics = h1
        .get(admin(&r, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("rouse_errors_total{"))
        .collect();
    assert_eq!(
        lines,
        [r#"rouse_errors_total{upstream="down",kind="unreachable"} 2"#]
    );
    let history: Value = h1
        .get(admin(&r, "/history?upstream=down"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        history["upstreams"][0]["errors"],
        serde_json::json!([{"kind": "unreachable", "count": 2}])
    );
    r.shutdown().await;
}
