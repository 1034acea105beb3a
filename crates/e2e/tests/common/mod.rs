//! Shared by the end-to-end tests: a rouse running in-process on 127.0.0.1:0, built from TOML
//! through the real config pipeline.
#![allow(dead_code)]

pub mod https;
pub mod log;

use std::net::SocketAddr;
use std::time::Duration;

use rouse::Rouse;
use tokio::time::{Instant, timeout};

/// Every network wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

/// The property tests' runner: `PROPTEST_CASES` cases (`default` without it, so the test
/// command stays quick; `bench/fuzz.sh` runs thousands), no regression files, and a failing
/// case shrunk within a minute (each may cost an exchange's whole bound).
pub fn prop_runner(default: u32) -> proptest::test_runner::TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..proptest::test_runner::Config::default()
    })
}

/// Parses `toml`, a whole config but for `[proxy]`, which listens on port 0.
pub fn config(toml: &str) -> rouse_config::Config {
    config_with("connect_timeout = \"1s\"\nread_timeout = \"5s\"", toml)
}

/// Like `config`, with `proxy` as the `[proxy]` keys but `listen`.
pub fn config_with(proxy: &str, toml: &str) -> rouse_config::Config {
    let text = format!("[proxy]\nlisten = [\"127.0.0.1:0\"]\n{proxy}\n{toml}");
    rouse_config::parse("test.toml", &text)
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{text}"))
}

/// Starts rouse on `config(toml)`.
pub async fn start_rouse(toml: &str) -> Rouse {
    Rouse::start(config(toml)).await.expect("rouse starts")
}

/// rouse with `proxy_keys` added to `[proxy]`.
pub async fn start_rouse_with_proxy(proxy_keys: &str, toml: &str) -> Rouse {
    Rouse::start(config_with(proxy_keys, toml))
        .await
        .expect("rouse starts")
}

/// A static upstream section over `servers`.
pub fn static_upstream(name: &str, hosts: &[&str], extra: &str, servers: &[SocketAddr]) -> String {
    let hosts = hosts
        .iter()
        .map(|h| format!("{h:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = format!(
        "[[upstream]]\nname = {name:?}\nhosts = [{hosts}]\nsupervisor = \"none\"\n{extra}\n"
    );
    for a in servers {
        s.push_str(&format!("[[upstream.server]]\naddress = \"{a}\"\n"));
    }
    s
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .no_proxy()
        .build()
        .expect("client")
}

/// An HTTP/2 client connection (prior knowledge) to `addr` with hyper's client: its sender,
/// the connection driven on a task of its own. No Nagle delay: a body's DATA frames would
/// otherwise wait for the ACK of its HEADERS.
pub async fn h2_connection<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = timeout(WAIT, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect within WAIT")
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let io = hyper_util::rt::TokioIo::new(stream);
    let (send, conn) = timeout(
        WAIT,
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io),
    )
    .await
    .expect("an h2c handshake within WAIT")
    .expect("an h2c handshake");
    tokio::spawn(conn);
    send
}

/// A runtime for the property tests, which drive rouse from proptest's synchronous cases.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// rouse in front of one in-process backend answering `name`, as its one static upstream.
pub async fn in_front_of_a_backend(name: &str) -> (Rouse, rouse_e2e::InProcessBackend) {
    let backend = rouse_e2e::spawn_in_process(name).await;
    let rouse = start_rouse(&static_upstream(name, &[], "", &[backend.addr()])).await;
    (rouse, backend)
}

/// As [`client`], speaking h2c with prior knowledge.
pub fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(WAIT)
        .no_proxy()
        .build()
        .expect("h2c client")
}

pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

// === upstreams run by rouse's embedded supervisor ===

/// A `[[upstream.server]]` whose process rouse's embedded supervisor runs: the test backend,
/// listening on `addr` with `--id id` and any further `args` (`--delay-listen MS`,
/// `--latency-ms N`, `--exit-after-requests N`). `extra` is added to the section as is.
pub fn backend_server(addr: SocketAddr, id: &str, args: &[&str], extra: &str) -> String {
    let mut argv: Vec<String> = vec![
        env!("CARGO_BIN_EXE_rouse-test-backend").to_owned(),
        "--listen".to_owned(),
        addr.to_string(),
        "--id".to_owned(),
        id.to_owned(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let argv = argv
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("[[upstream.server]]\naddress = \"{addr}\"\ncommand = [{argv}]\n{extra}\n")
}

/// An upstream of the embedded supervisor (no `supervisor` key) over `servers` sections.
pub fn embedded_upstream(name: &str, hosts: &[&str], extra: &str, servers: &[String]) -> String {
    let hosts = hosts
        .iter()
        .map(|h| format!("{h:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = format!("[[upstream]]\nname = {name:?}\nhosts = [{hosts}]\n{extra}\n");
    for server in servers {
        s.push_str(server);
    }
    s
}

/// `N` distinct addresses on 127.0.0.1 that were free a moment ago, for servers rouse starts
/// itself: [`rouse_e2e::unique_addr`]'s, which no other call in this process returns and the
/// kernel never hands out to a `bind(0)`. An ephemeral port would not do: a server told its
/// port may leave it unbound for seconds (`--delay-listen`, a restart), long enough for
/// another test's backend binding port 0 to be given it, and rouse's probe then finds a
/// stranger listening there (a waiting-page test was answered by another test's backend).
pub fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    std::array::from_fn(|_| rouse_e2e::unique_addr())
}

/// Whether a TCP connect to `addr` is refused (or fails otherwise) within a second.
pub async fn refuses(addr: SocketAddr) -> bool {
    !matches!(
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// The live (not zombie) processes whose command line has `--listen ADDR`: the test backends
/// started for the server at `addr`, found through /proc whoever started them.
pub fn backend_pids(addr: SocketAddr) -> Vec<u32> {
    let want = addr.to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
        let listens = args
            .windows(2)
            .any(|w| w[0] == b"--listen" && w[1] == want.as_bytes());
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 1..];
                rest.split_whitespace()
                    .next()
                    .map(|st| st == "Z" || st == "X")
            })
            .unwrap_or(true);
        if listens && !zombie {
            pids.push(pid);
        }
    }
    pids
}

/// Logs of rouse to stderr, when `RUST_LOG` is set (debugging a test).
pub fn log_if_asked() {
    if std::env::var_os("RUST_LOG").is_some() {
        rouse::logging::init(rouse_config::LogFormat::Text);
    }
}

// === answers as a client sees them ===

/// One answer as a client saw it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// 0: no HTTP answer at all (the error is in `body`).
    pub status: u16,
    /// `x-rouse-error`, when rouse answered itself.
    pub kind: String,
    pub retry_after: Option<String>,
    pub content_type: String,
    pub body: String,
    pub sent: Instant,
    pub took: Duration,
}

pub async fn get(c: &reqwest::Client, u: &str, headers: &[(&str, &str)]) -> Answer {
    let sent = Instant::now();
    let mut req = c.get(u);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match req.send().await {
        Ok(r) => {
            let h = r.headers();
            let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(String::from);
            let status = r.status().as_u16();
            let kind = header("x-rouse-error").unwrap_or_default();
            let retry_after = header("retry-after");
            let content_type = header("content-type").unwrap_or_default();
            let body = r
                .text()
                .await
                .unwrap_or_else(|e| format!("<body error: {e}>"));
            Answer {
                status,
                kind,
                retry_after,
                content_type,
                body,
                sent,
                took: sent.elapsed(),
            }
        }
        Err(e) => Answer {
            status: 0,
            kind: String::new(),
            retry_after: None,
            content_type: String::new(),
            body: format!("<request error: {}>", error_chain(&e)),
            sent,
            took: sent.elapsed(),
        },
    }
}

/// Every answer of every load client, each bounded by `WAIT`.
pub async fn collect(tasks: Vec<tokio::task::JoinHandle<Vec<Answer>>>) -> Vec<Answer> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            timeout(WAIT, t)
                .await
                .expect("a load client finishes")
                .expect("a load client does not panic"),
        );
    }
    all
}

/// Load clients: each sends `GET path` (with `Host: host`, if given) back to back until
/// `finish`.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Answer>>>,
}

impl Load {
    pub fn start(rouse: SocketAddr, path: &str, host: Option<&str>, clients: usize) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let c = client();
        let tasks = (0..clients)
            .map(|_| {
                let c = c.clone();
                let u = url(rouse, path);
                let host = host.map(str::to_owned);
                let stop = std::sync::Arc::clone(&stop);
                tokio::spawn(async move {
                    let headers: Vec<(&str, &str)> =
                        host.as_deref().map(|h| ("host", h)).into_iter().collect();
                    let mut answers = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        answers.push(get(&c, &u, &headers).await);
                    }
                    answers
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops the clients and returns every answer they got.
    pub async fn finish(self) -> Vec<Answer> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        collect(self.tasks).await
    }
}

/// How many answers of each `status kind body` there were.
pub fn by_body(answers: &[Answer]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for a in answers {
        *m.entry(format!("{} {} {}", a.status, a.kind, a.body.trim()))
            .or_default() += 1;
    }
    m
}

/// Asserts that no answer failed (all are 200) and that each of `ids` gave some of them.
pub fn assert_all_ok_from(answers: &[Answer], ids: &[&str]) {
    let counts = by_body(answers);
    assert!(
        answers.iter().all(|x| x.status == 200),
        "no failed request: {counts:?}"
    );
    for id in ids {
        assert!(
            counts.contains_key(&format!("200  {id}")),
            "{id} answered: {counts:?}"
        );
    }
}

/// A WebSocket client connected to the test backend's `/ws` through rouse at `rouse`; panics
/// unless the handshake (101) completes within `WAIT`.
pub async fn websocket(
    rouse: SocketAddr,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::handshake::client::Response,
) {
    timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{rouse}/ws")),
    )
    .await
    .expect("the WebSocket handshake within WAIT")
    .expect("a WebSocket handshake through rouse")
}

// === the states rouse's table shows ===

/// The state of server `i` of upstream `u`, as `/status` names it.
pub fn state(r: &Rouse, u: usize, i: usize) -> &'static str {
    r.table().upstreams[u].servers[i].state().as_str()
}

pub fn states(r: &Rouse, u: usize) -> Vec<&'static str> {
    r.table().upstreams[u]
        .servers
        .iter()
        .map(|s| s.state().as_str())
        .collect()
}

pub fn held(r: &Rouse, u: usize) -> usize {
    r.table().upstreams[u].held()
}

/// Waits, at most `within`, for server `i` of upstream `u` to be `want`. Past it, says what
/// the server is then, and the journal's last lines: what it went through, and since when.
pub async fn wait_state(r: &Rouse, u: usize, i: usize, want: &str, within: Duration) {
    let reached = timeout(within, async {
        while state(r, u, i) != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if reached.is_ok() {
        return;
    }
    let since_epoch = |t: std::time::SystemTime| {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        format!("{}.{:03}", d.as_secs(), d.subsec_millis())
    };
    let journal: Vec<String> = r
        .table()
        .journal
        .recent(10)
        .into_iter()
        .map(|e| {
            let at = since_epoch(e.at);
            format!("{at} {}[{}] {} {}", e.upstream, e.server, e.what, e.detail)
        })
        .collect();
    panic!(
        "timed out after {within:?} waiting for server {i} of upstream {u} to be {want}: it is \
         {} at {}; the journal, newest first: {journal:#?}",
        state(r, u, i),
        since_epoch(std::time::SystemTime::now()),
    );
}

/// An error with its causes, `a: b: c`: reqwest's own text alone hides what went wrong.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// `n` concurrent `GET u` (with `headers`), each in a task of its own.
pub fn spawn_gets(
    c: &reqwest::Client,
    u: &str,
    headers: &'static [(&'static str, &'static str)],
    n: usize,
) -> Vec<tokio::task::JoinHandle<Answer>> {
    (0..n)
        .map(|_| {
            let (c, u) = (c.clone(), u.to_owned());
            tokio::spawn(async move { get(&c, &u, headers).await })
        })
        .collect()
}

/// Reads one answer from `s`: its status and (Content-Length) body.
pub async fn answer(s: &mut tokio::net::TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().expect("a content-length"));
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().expect("a status");
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return (status, body);
            }
        }
        let n = timeout(WAIT, tokio::io::AsyncReadExt::read(s, &mut chunk))
            .await
            .expect("an answer within WAIT")
            .expect("read");
        assert!(n > 0, "closed before a whole answer: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}
