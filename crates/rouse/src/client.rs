//! `rouse status` and `rouse start|stop`: a small HTTP/1.1 client of the admin API, and the
//! table `rouse status` prints.
//!
//! Every network wait is bounded: resolving and connecting by [`CONNECT_TIMEOUT`], the whole
//! exchange by [`REQUEST_TIMEOUT`] (longer than the admin API's own 15 s handler limit).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rouse_admin::{Answer, Event, Status};
use tokio::net::TcpStream;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The admin API's address when neither `--admin` nor a config file says otherwise.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9900";
/// Bodies larger than this are not read (a status of many upstreams is a few hundred KiB).
const MAX_BODY: usize = 16 << 20;

/// The admin API could not be asked at all (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the admin API at {addr}: {why}")]
pub struct Unreachable {
    pub addr: String,
    pub why: String,
}

/// Where to find the admin API, and with which token, from the command line and config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` (an `http://` prefix and a trailing `/` are accepted).
    pub addr: String,
    pub token: Option<String>,
    /// Said when the address is a guess that may be why the admin API cannot be reached.
    pub hint: Option<String>,
}

impl Target {
    /// `--admin` first; else `[admin] listen` of the config file (`config`, or `./rouse.toml`
    /// when it exists); else [`DEFAULT_ADMIN`]. The token: `token` (`--token` or
    /// `ROUSE_ADMIN_TOKEN`), else the config file's `[admin] token`. Problems with an
    /// explicitly given config file are returned as warnings.
    pub fn resolve(
        admin: Option<&str>,
        config: Option<&Path>,
        token: Option<String>,
    ) -> (Target, Vec<String>) {
        let mut warnings = Vec::new();
        // A file found by looking (./rouse.toml, /etc/rouse/rouse.toml) that does not load is
        // passed over in silence; one the operator named (-c, $ROUSE_CONFIG) is warned about.
        let (file, explicit) = match crate::locate::locate(config) {
            Ok(l) => (
                Some(l.path),
                matches!(
                    l.source,
                    crate::locate::Source::Flag | crate::locate::Source::Env
                ),
            ),
            Err(_) => (None, false),
        };
        let loaded = file.as_ref().and_then(|f| match rouse_config::load(f) {
            Ok(c) => Some((f.clone(), c.admin)),
            Err(errors) => {
                // Often the very reason to run `rouse reload`: the file is being changed.
                // Its [admin] section alone may still say where the running rouse listens.
                if let Some(admin) = admin_section(f) {
                    return Some((f.clone(), admin));
                }
                if explicit {
                    warnings.push(format!(
                        "ignoring {} (it does not load: {})",
                        f.display(),
                        errors
                            .errors
                            .first()
                            .map(|e| e.to_string())
                            .unwrap_or_default()
                    ));
                }
                None
            }
        });
        let from_file = loaded.as_ref().map(|(f, a)| (f, a.as_ref()));
        let token = token
            .filter(|t| !t.is_empty())
            .or_else(|| from_file.and_then(|(_, a)| a?.token.clone()));
        let (addr, hint) = match (admin, from_file) {
            (Some(a), _) => (a.to_owned(), None),
            (None, Some((_, Some(a)))) => (connectable(a.listen).to_string(), None),
            (None, Some((f, None))) => (
                DEFAULT_ADMIN.to_owned(),
                Some(format!(
                    "{} has no [admin] section, so that rouse serves no admin API",
                    f.display()
                )),
            ),
            (None, None) => (
                DEFAULT_ADMIN.to_owned(),
                Some("is rouse running with an [admin] section? (--admin ADDR or -c FILE)".into()),
            ),
        };
        (Target { addr, token, hint }, warnings)
    }
}

/// The `[admin]` section of a config file that does not validate as a whole, when that section
/// itself is readable: `Some(None)` when the file has none.
fn admin_section(file: &Path) -> Option<Option<rouse_config::AdminConfig>> {
    let text = std::fs::read_to_string(file).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    let Some(admin) = table.get("admin") else {
        return Some(None);
    };
    let listen = match admin.get("listen") {
        Some(l) => l.as_str()?.parse().ok()?,
        None => DEFAULT_ADMIN.parse().ok()?,
    };
    let token = match admin.get("token") {
        Some(t) => Some(t.as_str()?.to_owned()),
        None => None,
    };
    Some(Some(rouse_config::AdminConfig {
        listen,
        token,
        // The client connects to the listen address itself, which is always accepted.
        hosts: Vec::new(),
    }))
}

/// Where to connect to reach a listener bound to `listen`: an unspecified address (0.0.0.0,
/// [::]) is reached on loopback.
pub fn connectable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    }
}

fn authority(addr: &str) -> &str {
    let a = addr.trim();
    let a = a.strip_prefix("http://").unwrap_or(a);
    a.trim_end_matches('/')
}

/// One request to the admin API; the answer's status and body.
pub async fn request(
    addr: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> Result<(StatusCode, Bytes), Unreachable> {
    let host = authority(addr).to_owned();
    let fail = |why: String| Unreachable {
        addr: host.clone(),
        why,
    };
    let exchange = async {
        let stream = connect(&host).await.map_err(fail)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host.as_str())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("rouse/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| fail(format!("reading the answer: {e}")))?
            .to_bytes();
        driver.abort();
        Ok((status, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {REQUEST_TIMEOUT:?}")))?
}

async fn connect(host: &str) -> Result<TcpStream, String> {
    let attempt = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(host)
            .await
            .map_err(|e| format!("bad address {host:?}: {e} (want HOST:PORT)"))?
            .collect();
        let mut last = format!("{host:?} resolves to no address");
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
}

/// `GET /status`, decoded.
pub async fn status(addr: &str) -> Result<Status, Unreachable> {
    status_with(addr, "/status").await
}

async fn status_with(addr: &str, path: &str) -> Result<Status, Unreachable> {
    let (code, body) = request(addr, Method::GET, path, None).await?;
    let bad = |why: String| Unreachable {
        addr: authority(addr).to_owned(),
        why,
    };
    if code != StatusCode::OK {
        return Err(bad(format!(
            "GET /status answered {code}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    serde_json::from_slice(&body).map_err(|e| bad(format!("not a rouse status answer: {e}")))
}

/// What a command's answer says, for people: the admin API's message, or the raw body.
pub fn message(body: &[u8]) -> String {
    match serde_json::from_slice::<Answer>(body) {
        Ok(a) => a.message,
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    }
}

/// The server a manual command's 202 says it acted on.
pub fn server_of(body: &[u8]) -> Option<usize> {
    serde_json::from_slice::<Answer>(body).ok()?.server
}

/// What `rouse start|stop --wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Ready,
    Stopped,
}

/// How a wait for a server ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server got where it was asked to go.
    Reached { address: String },
    /// It will not get there: why.
    Failed { address: String, why: String },
    /// It was not there by the deadline; `state` is where it was.
    TimedOut { address: String, state: String },
}

/// How often a wait asks `GET /status`: a start is seen about this soon after it happens.
pub const WAIT_POLL: Duration = Duration::from_millis(50);
/// Journal events a wait reads each time (the admin API's most): enough that a busy rouse's
/// other events do not push the ones about this server out between two polls.
const WAIT_EVENTS: usize = 200;

/// The status a wait starts from: its newest event marks where "after the command" begins, so
/// that nothing from the clock of the machine rouse runs on is needed.
pub async fn baseline(addr: &str) -> Result<Status, Unreachable> {
    status_with(addr, &format!("/status?events={WAIT_EVENTS}")).await
}

/// The events of `now` that are newer than the newest of `before`, oldest first. Should the
/// journal have moved on past `before`'s newest, all of them are.
fn events_since<'a>(now: &'a Status, before: Option<&Event>) -> impl Iterator<Item = &'a Event> {
    let new = match before {
        Some(b) => now
            .events
            .iter()
            .position(|e| e == b)
            .unwrap_or(now.events.len()),
        None => now.events.len(),
    };
    now.events[..new].iter().rev()
}

/// Whether `now` settles the wait for server `index` of `upstream`: its journal events since
/// the command first (a state can come and go between two polls, an event stays), then its
/// state. `None`: not yet.
pub fn judge(
    now: &Status,
    before: Option<&Event>,
    upstream: &str,
    index: usize,
    goal: Goal,
) -> Option<Outcome> {
    let Some(server) = now
        .upstreams
        .iter()
        .find(|u| u.name == upstream)
        .and_then(|u| u.servers.iter().find(|s| s.index == index))
    else {
        return Some(Outcome::Failed {
            address: String::new(),
            why: format!("upstream {upstream:?} has no server {index} any more (reloaded?)"),
        });
    };
    let address = server.address.clone();
    let failed = |why: String| {
        Some(Outcome::Failed {
            address: address.clone(),
            why,
        })
    };
    let reached = || {
        Some(Outcome::Reached {
            address: address.clone(),
        })
    };
    let with_detail = |what: &str, detail: &str| {
        if detail.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {detail}")
        }
    };
    let mine = events_since(now, before).filter(|e| e.upstream == upstream && e.server == index);
    for e in mine {
        match (goal, e.what.as_str()) {
            (Goal::Ready, "ready" | "adopt") => return reached(),
            (Goal::Ready, "start-failed") => return failed(with_detail("start failed", &e.detail)),
            (Goal::Ready, "failed") => return failed(with_detail("failed", &e.detail)),
            (Goal::Ready, "stop") => {
                return failed(with_detail("stopped before it was ready", &e.detail));
            }
            (Goal::Ready, "stopped") => return failed("stopped before it was ready".into()),
            (Goal::Stopped, "stopped") => return reached(),
            _ => {}
        }
    }
    match (goal, server.state.as_str()) {
        (Goal::Ready, "ready") | (Goal::Stopped, "stopped") => reached(),
        (Goal::Ready, "failed") => {
            // The event that said why, when the journal still has it.
            let why = now
                .events
                .iter()
                .find(|e| {
                    e.upstream == upstream
                        && e.server == index
                        && matches!(e.what.as_str(), "start-failed" | "failed")
                })
                .map_or_else(|| "failed".to_owned(), |e| with_detail(&e.what, &e.detail));
            failed(why)
        }
        (Goal::Ready, "stopped" | "stopping" | "draining") => {
            failed(format!("{} without becoming ready", server.state))
        }
        _ => None,
    }
}

/// Polls the admin API every [`WAIT_POLL`] until [`judge`] settles the wait or `timeout`
/// passes. `before` is the [`baseline`] taken before the command was sent.
pub async fn wait_for(
    addr: &str,
    before: &Status,
    upstream: &str,
    index: usize,
    goal: Goal,
    timeout: Duration,
) -> Result<Outcome, Unreachable> {
    let deadline = rouse_core::time::deadline(tokio::time::Instant::now(), timeout);
    let path = format!("/status?events={WAIT_EVENTS}");
    let newest = before.events.first();
    loop {
        let now = status_with(addr, &path).await?;
        if let Some(outcome) = judge(&now, newest, upstream, index, goal) {
            return Ok(outcome);
        }
        if tokio::time::Instant::now() + WAIT_POLL >= deadline {
            let server = now
                .upstreams
                .iter()
                .find(|u| u.name == upstream)
                .and_then(|u| u.servers.iter().find(|s| s.index == index));
            return Ok(Outcome::TimedOut {
                address: server.map(|s| s.address.clone()).unwrap_or_default(),
                state: server.map(|s| s.state.clone()).unwrap_or_default(),
            });
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// The command's path: `/upstreams/NAME[/servers/INDEX]/start|stop`, the name escaped.
pub fn command_path(upstream: &str, index: Option<usize>, op: &str) -> String {
    let mut name = String::new();
    for b in upstream.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            name.push(char::from(b));
        } else {
            let _ = write!(name, "%{b:02X}");
        }
    }
    match index {
        Some(i) => format!("/upstreams/{name}/servers/{i}/{op}"),
        None => format!("/upstreams/{name}/{op}"),
    }
}

fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..172_800 => format!("{}h{:02}m", s / 3600, (s / 60) % 60),
        _ => format!("{}d{:02}h", s / 86_400, (s / 3600) % 24),
    }
}

/// The table `rouse status` prints: one row per server, columns aligned, then the most recent
/// lifecycle events.
pub fn format_status(status: &Status, events: usize) -> String {
    const HEAD: [&str; 9] = [
        "UPSTREAM",
        "HELD",
        "#",
        "ADDRESS",
        "PROGRAM",
        "STATE",
        "FOR",
        "IN-FLIGHT",
        "REQUESTS",
    ];
    // Right-aligned columns: the numbers.
    const RIGHT: [bool; 9] = [false, true, true, false, false, false, true, true, true];
    let mut rows: Vec<[String; 9]> = vec![HEAD.map(String::from)];
    for u in &status.upstreams {
        for s in &u.servers {
            let in_flight = if s.upgraded > 0 {
                format!("{} ({} ws)", s.in_flight, s.upgraded)
            } else {
                s.in_flight.to_string()
            };
            rows.push([
                u.name.clone(),
                u.held.to_string(),
                s.index.to_string(),
                s.address.clone(),
                s.program.clone(),
                s.state.clone(),
                duration(s.state_for_ms),
                in_flight,
                s.requests.to_string(),
            ]);
        }
    }
    let mut widths = [0usize; 9];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let pad = widths[c].saturating_sub(cell.chars().count());
            if RIGHT[c] {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if status.upstreams.is_empty() {
        out.push_str("(no upstreams)\n");
    }
    if let Some(c) = &status.cluster {
        let leader = match &c.leader {
            Some(leader) if *leader == c.id => format!("{leader} (this one)"),
            Some(leader) => leader.clone(),
            None => "none".to_owned(),
        };
        let _ = writeln!(
            out,
            "\ncluster {:?}: this replica {}, leader {leader}, members {}; etcd {}",
            c.name,
            c.id,
            c.members.join(", "),
            c.etcd
        );
    }
    let timeouts: Vec<String> = status
        .upstreams
        .iter()
        .filter(|u| u.held_timeouts > 0)
        .map(|u| format!("{} {}", u.name, u.held_timeouts))
        .collect();
    if !timeouts.is_empty() {
        let _ = writeln!(out, "\nheld requests timed out: {}", timeouts.join(", "));
    }
    if events > 0 && !status.events.is_empty() {
        out.push_str("\nrecent events (newest first):\n");
        for e in status.events.iter().take(events) {
            let detail = if e.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", e.detail)
            };
            let _ = writeln!(
                out,
                "  {}  {} server {} ({})  {}{detail}",
                e.at, e.upstream, e.server, e.address, e.what
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rouse_admin::{Event, ServerStatus, UpstreamStatus};

    fn server(index: usize, state: &str, in_flight: u32, requests: u64) -> ServerStatus {
        ServerStatus {
            index,
            address: format!("127.0.0.1:910{index}"),
            program: format!("app{index}"),
            state: state.into(),
            in_flight,
            requests,
            upgraded: 0,
            state_for_ms: 65_000,
            supervisor: "embedded".into(),
        }
    }

    #[test]
    fn the_table_is_aligned_with_a_row_per_server() {
        let status = Status {
            upstreams: vec![UpstreamStatus {
                name: "app".into(),
                held: 3,
                servers: vec![server(0, "ready", 12, 12345), server(1, "starting", 0, 0)],
                held_timeouts: 0,
                queue_limit: 1000,
                typical_start_ms: None,
                supervisor: "embedded".into(),
                hosts: vec![],
                path_prefix: "/".into(),
                min_servers: 0,
                max_servers: 2,
                start_timeout_ms: Some(30_000),
            }],
            events: vec![Event {
                at: "2024-01-01T00:00:00.000Z".into(),
                at_unix_ms: 0,
                upstream: "app".into(),
                server: 1,
                address: "127.0.0.1:9101".into(),
                what: "start".into(),
                detail: "demand".into(),
            }],
            token_required: false,
            version: String::new(),
            pid: 0,
            cluster: None,
        };
        let text = format_status(&status, 5);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..3],
            [
                "UPSTREAM  HELD  #  ADDRESS         PROGRAM  STATE       FOR  IN-FLIGHT  REQUESTS",
                "app          3  0  127.0.0.1:9100  app0     ready     1m05s         12     12345",
                "app          3  1  127.0.0.1:9101  app1     starting  1m05s          0         0",
            ],
            "\n{text}"
        );
        assert!(
            text.contains("2024-01-01T00:00:00.000Z  app server 1 (127.0.0.1:9101)  start: demand"),
            "{text}"
        );
    }

    #[test]
    fn the_cluster_line_is_there_with_a_cluster_only() {
        let mut status = app("ready", Vec::new());
        assert!(!format_status(&status, 5).contains("cluster"));
        status.cluster = Some(rouse_admin::ClusterStatus {
            name: "edge".into(),
            id: "edge-1".into(),
            leader: Some("edge-2".into()),
            members: vec!["edge-1".into(), "edge-2".into()],
            etcd: "ok".into(),
        });
        let text = format_status(&status, 5);
        assert!(
            text.lines().any(|l| l
                == "cluster \"edge\": this replica edge-1, leader edge-2, members edge-1, \
                    edge-2; etcd ok"),
            "{text}"
        );
        let c = status.cluster.as_mut().unwrap();
        c.leader = None;
        c.etcd = "unreachable".into();
        let text = format_status(&status, 5);
        assert!(text.contains("leader none, "), "{text}");
        assert!(text.contains("; etcd unreachable"), "{text}");
        status.cluster.as_mut().unwrap().leader = Some("edge-1".into());
        assert!(format_status(&status, 5).contains("leader edge-1 (this one), "));
    }

    fn event(what: &str, server: usize, detail: &str, at: u64) -> Event {
        Event {
            at: String::new(),
            at_unix_ms: at,
            upstream: "app".into(),
            server,
            address: format!("127.0.0.1:910{server}"),
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// `app` with server 0 in `state`, and `events` newest first.
    fn app(state: &str, events: Vec<Event>) -> Status {
        Status {
            upstreams: vec![UpstreamStatus {
                name: "app".into(),
                held: 0,
                servers: vec![server(0, state, 0, 0)],
                held_timeouts: 0,
                queue_limit: 1000,
                typical_start_ms: None,
                supervisor: "embedded".into(),
                hosts: vec![],
                path_prefix: "/".into(),
                min_servers: 0,
                max_servers: 1,
                start_timeout_ms: None,
            }],
            events,
            token_required: false,
            version: String::new(),
            pid: 0,
            cluster: None,
        }
    }

    #[test]
    fn a_wait_is_settled_by_the_events_since_the_command_then_the_state() {
        let old_fail = event("start-failed", 0, "an old failure", 1);
        let before = app("stopped", vec![old_fail.clone()]);
        let baseline = before.events.first();
        // Still starting, only the old failure in the journal: keep waiting.
        let now = app("starting", vec![event("start", 0, "", 2), old_fail.clone()]);
        assert_eq!(judge(&now, baseline, "app", 0, Goal::Ready), None);
        // The new failure, with its reason, though the state moved on between two polls.
        let now = app(
            "stopped",
            vec![
                event("start-failed", 0, "exited with status 127", 3),
                event("start", 0, "", 2),
                old_fail.clone(),
            ],
        );
        assert_eq!(
            judge(&now, baseline, "app", 0, Goal::Ready),
            Some(Outcome::Failed {
                address: "127.0.0.1:9100".into(),
                why: "start failed: exited with status 127".into()
            })
        );
        // Ready, then stopped again before the poll: it was ready.
        let now = app(
            "stopped",
            vec![
                event("stopped", 0, "", 4),
                event("ready", 0, "2 ms", 3),
                old_fail.clone(),
            ],
        );
        assert!(matches!(
            judge(&now, baseline, "app", 0, Goal::Ready),
            Some(Outcome::Reached { .. })
        ));
        // Another server's events are not this one's.
        let now = app("starting", vec![event("ready", 1, "", 3), old_fail.clone()]);
        assert_eq!(judge(&now, baseline, "app", 0, Goal::Ready), None);
        // A stop: stopped once, even if started again since.
        let now = app(
            "starting",
            vec![event("start", 0, "", 5), event("stopped", 0, "", 4)],
        );
        assert!(matches!(
            judge(&now, None, "app", 0, Goal::Stopped),
            Some(Outcome::Reached { .. })
        ));
        // A server that is gone.
        assert!(matches!(
            judge(&now, None, "app", 3, Goal::Stopped),
            Some(Outcome::Failed { .. })
        ));
    }

    #[test]
    fn command_paths_escape_the_name() {
        assert_eq!(command_path("app", None, "start"), "/upstreams/app/start");
        assert_eq!(
            command_path("a b/c", Some(2), "stop"),
            "/upstreams/a%20b%2Fc/servers/2/stop"
        );
    }

    #[test]
    fn listen_addresses_become_connectable_ones() {
        assert_eq!(
            connectable("0.0.0.0:9900".parse().unwrap()),
            "127.0.0.1:9900".parse().unwrap()
        );
        assert_eq!(
            connectable("[::]:9900".parse().unwrap()),
            "[::1]:9900".parse().unwrap()
        );
        assert_eq!(
            connectable("10.1.2.3:9900".parse().unwrap()),
            "10.1.2.3:9900".parse().unwrap()
        );
        assert_eq!(authority("http://127.0.0.1:9900/"), "127.0.0.1:9900");
    }

    #[test]
    fn answers_are_shown_by_their_message() {
        assert_eq!(
            message(br#"{"accepted":false,"error":"static","message":"no"}"#),
            "no"
        );
        assert_eq!(message(b"plain text\n"), "plain text");
        assert_eq!(
            server_of(br#"{"accepted":true,"message":"starting","server":2}"#),
            Some(2)
        );
        assert_eq!(server_of(br#"{"accepted":true,"message":"x"}"#), None);
    }
}
