//! The test backend itself, over real sockets: if it is wrong, every end-to-end test of the
//! proxy is wrong with it.
#![forbid(unsafe_code)]

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rouse_e2e::pattern::{self, Checksum};
use rouse_e2e::{
    BackendConfig, BackendProcess, ServeOutcome, free_addr, spawn_in_process,
    spawn_in_process_with, wait_until,
};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const STEP: Duration = Duration::from_secs(10);
const BIG: u64 = 64 * 1024 * 1024;
// Big transfers run unoptimised; give them room without letting a hang go unnoticed.
const BIG_STEP: Duration = Duration::from_secs(120);

async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took over {limit:?}"))
}

fn client() -> reqwest::Client {
    // no_proxy: an HTTP_PROXY in the environment must not reroute loopback traffic.
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

fn h2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .expect("reqwest h2 client")
}

async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    within(STEP, url, client.get(url).send())
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

async fn text(resp: reqwest::Response) -> String {
    within(STEP, "reading a body", resp.text())
        .await
        .expect("body")
}

async fn json(resp: reqwest::Response) -> Value {
    let body = within(STEP, "reading a body", resp.bytes())
        .await
        .expect("body");
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

fn backend_id(resp: &reqwest::Response) -> Option<&str> {
    resp.headers().get("x-backend-id")?.to_str().ok()
}

async fn assert_refused(addr: SocketAddr) {
    match within(STEP, "connecting", TcpStream::connect(addr)).await {
        Ok(_) => panic!("{addr} still accepts connections"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
    }
}

async fn refused(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(STEP, TcpStream::connect(addr)).await,
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused
    )
}

#[tokio::test]
async fn root_answers_with_the_id() {
    let backend = spawn_in_process("alpha").await;
    let resp = get(&client(), &backend.url("/")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(backend_id(&resp), Some("alpha"));
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(text(resp).await, "alpha");
}

#[tokio::test]
async fn every_response_names_the_backend() {
    let backend = spawn_in_process("beta").await;
    let client = client();
    for path in [
        "/",
        "/nope",
        "/status/503",
        "/status/abc",
        "/headers",
        "/delay/0",
        "/bytes/10",
        "/stats",
        "/ws",
    ] {
        let resp = get(&client, &backend.url(path)).await;
        assert_eq!(backend_id(&resp), Some("beta"), "{path}");
    }
    let resp = within(
        STEP,
        "POST /echo",
        client.post(backend.url("/echo")).body("x").send(),
    )
    .await
    .expect("POST /echo");
    assert_eq!(backend_id(&resp), Some("beta"));
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let backend = spawn_in_process("b").await;
    let client = client();
    for path in ["/nope", "/delay/1/2", "/bytes", "/status"] {
        assert_eq!(
            get(&client, &backend.url(path)).await.status(),
            404,
            "{path}"
        );
    }
    let resp = within(STEP, "POST /", client.post(backend.url("/")).send())
        .await
        .expect("POST /");
    assert_eq!(resp.status(), 404);
    let resp = within(STEP, "GET /echo", client.get(backend.url("/echo")).send())
        .await
        .expect("GET /echo");
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn delay_waits_then_answers() {
    let backend = spawn_in_process("slow").await;
    let client = client();
    let start = Instant::now();
    let resp = get(&client, &backend.url("/delay/200")).await;
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(resp.status(), 200);
    assert_eq!(text(resp).await, "slow");
    for bad in ["/delay/abc", "/delay/-1", "/delay/"] {
        assert_eq!(get(&client, &backend.url(bad)).await.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn status_returns_the_code() {
    let backend = spawn_in_process("s").await;
    let client = client();
    for code in [200u16, 204, 301, 404, 418, 500, 503, 599] {
        let resp = get(&client, &backend.url(&format!("/status/{code}"))).await;
        assert_eq!(resp.status().as_u16(), code);
    }
    for bad in ["/status/42", "/status/101", "/status/1000", "/status/x"] {
        assert_eq!(get(&client, &backend.url(bad)).await.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn headers_reports_the_request() {
    let backend = spawn_in_process("h").await;
    let resp = within(
        STEP,
        "GET /headers",
        client()
            .get(backend.url("/headers?q=1"))
            .header("X-Multi", "a")
            .header("x-multi", "b")
            .header("x-single", "one")
            .send(),
    )
    .await
    .expect("GET /headers");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let headers = json(resp).await;
    assert_eq!(headers["x-multi"], "a, b");
    assert_eq!(headers["x-single"], "one");
    assert_eq!(headers["host"], backend.addr().to_string());
    assert_eq!(headers["_method"], "GET");
    assert_eq!(headers["_uri"], "/headers?q=1");
    assert_eq!(headers["_version"], "HTTP/1.1");
}

#[tokio::test]
async fn h2c_with_prior_knowledge() {
    let backend = spawn_in_process("two").await;
    let client = h2_client();
    let resp = get(&client, &backend.url("/headers")).await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(backend_id(&resp), Some("two"));
    let headers = json(resp).await;
    assert_eq!(headers["_version"], "HTTP/2.0");
    assert_eq!(headers["_method"], "GET");

    // Concurrent requests are multiplexed over the one connection.
    let requests = (0..5).map(|_| {
        let client = client.clone();
        let url = backend.url("/delay/50");
        async move { get(&client, &url).await.status() }
    });
    for status in futures_util::future::join_all(requests).await {
        assert_eq!(status, 200);
    }
    let stats = rouse_e2e::stats(backend.addr()).await;
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.requests, 6);
}

#[tokio::test]
async fn keep_alive_reuses_the_connection() {
    let backend = spawn_in_process("k").await;
    let client = client();
    for _ in 0..2 {
        let resp = get(&client, &backend.url("/")).await;
        assert_eq!(text(resp).await, "k");
    }
    let stats = json(get(&client, &backend.url("/stats")).await).await;
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["requests"], 2);

    // The harness polls /stats on fresh connections, which must not count.
    let stats = rouse_e2e::stats(backend.addr()).await;
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.requests, 2);
    assert_eq!(rouse_e2e::stats(backend.addr()).await.connections, 1);

    // A second client is a second connection.
    get(&self::client(), &backend.url("/")).await;
    assert_eq!(rouse_e2e::stats(backend.addr()).await.connections, 2);
}

#[tokio::test]
async fn stats_track_concurrency() {
    let backend = spawn_in_process("c").await;
    let client = client();
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            let url = backend.url("/delay/400");
            tokio::spawn(async move { get(&client, &url).await.status() })
        })
        .collect();
    let addr = backend.addr();
    wait_until("three requests in flight", STEP, || async move {
        rouse_e2e::stats(addr).await.in_flight == 3
    })
    .await;
    for request in requests {
        assert_eq!(request.await.expect("request task"), 200);
    }
    wait_until("nothing in flight", STEP, || async move {
        rouse_e2e::stats(addr).await.in_flight == 0
    })
    .await;
    let stats = rouse_e2e::stats(addr).await;
    assert_eq!(stats.max_in_flight, 3);
    assert_eq!(stats.requests, 3);
    assert_eq!(stats, backend.stats());
}

#[tokio::test]
async fn concurrency_queues_excess_requests_inside_the_backend_and_says_so() {
    // Like gunicorn with 2 sync workers: the third and fourth request wait for a worker.
    let backend = spawn_in_process_with(BackendConfig::new("w").concurrency(2)).await;
    let client = client();
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            let url = backend.url("/delay/300");
            tokio::spawn(async move {
                let resp = get(&client, &url).await;
                let header = |name: &str| -> u64 {
                    resp.headers()[name]
                        .to_str()
                        .expect("ascii")
                        .parse()
                        .expect("a number")
                };
                (header("x-backend-queued-us"), header("x-backend-time-us"))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.expect("request task"));
    }
    answers.sort();
    // Two went straight to a worker, two waited about one service time.
    for &(queued, time) in &answers[..2] {
        assert!(queued < 100_000, "{answers:?}");
        assert!(time >= 300_000, "{answers:?}");
    }
    for &(queued, time) in &answers[2..] {
        assert!(queued >= 250_000, "{answers:?}");
        assert!(time >= queued + 300_000, "{answers:?}");
    }
    let stats = backend.stats();
    assert_eq!(
        stats.max_in_flight, 4,
        "queued requests are in the backend too"
    );
    assert_eq!(stats.queued, 2);
    assert!(stats.max_queued_us >= 250_000, "{stats:?}");
}

/// Sync workers (`--workers`): the worker a trickling upload gets reads its body to the end,
/// and a quick request behind it waits that long; the stats say how long the read held it.
#[tokio::test]
async fn a_sync_worker_reads_the_whole_body_and_others_wait_for_it() {
    let backend = spawn_in_process_with(BackendConfig::new("w").workers(1)).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let client = client();
    let upload = tokio::spawn({
        let request = client
            .post(backend.url("/count"))
            .body(reqwest::Body::wrap_stream(body));
        async move { request.send().await.expect("upload").json::<Value>().await }
    });
    tx.send(Ok(Bytes::from_static(b"12345"))).await.unwrap();
    within(STEP, "the upload takes the worker", async {
        while backend.stats().busy < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let quick = tokio::spawn({
        let client = client.clone();
        let url = backend.url("/");
        async move {
            let t0 = Instant::now();
            get(&client, &url).await;
            t0.elapsed()
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !quick.is_finished(),
        "the quick request waits for the only worker"
    );
    tx.send(Ok(Bytes::from_static(b"678"))).await.unwrap();
    drop(tx);
    let counted = within(STEP, "the upload", upload).await.unwrap().unwrap();
    assert_eq!(counted["bytes"], 8);
    let waited = within(STEP, "the quick request", quick).await.unwrap();
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    let stats = backend.stats();
    assert_eq!(stats.max_busy, 1);
    assert!(stats.max_body_read_us >= 400_000, "{stats:?}");
    assert_eq!(stats.max_body_bytes, 8);
}

#[tokio::test]
async fn drip_sends_its_lines_apart() {
    let backend = spawn_in_process("d").await;
    let t0 = Instant::now();
    let resp = client()
        .get(backend.url("/drip/3?ms=200"))
        .send()
        .await
        .expect("drip");
    assert!(resp.headers().get("content-length").is_none(), "chunked");
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let mut first = None;
    while let Some(piece) = within(STEP, "a line", stream.next()).await {
        text.push_str(&String::from_utf8_lossy(&piece.expect("a piece")));
        first.get_or_insert(t0.elapsed());
    }
    assert_eq!(text, "line 1\nline 2\nline 3\n");
    let (first, total) = (first.unwrap_or_default(), t0.elapsed());
    assert!(total >= Duration::from_millis(400), "{total:?}");
    assert!(
        total - first >= Duration::from_millis(300),
        "{first:?} {total:?}"
    );
    let bad = get(&client(), &backend.url("/drip/3")).await;
    assert_eq!(bad.status(), 400, "no interval");
}

#[tokio::test]
async fn bytes_with_length_says_it() {
    let backend = spawn_in_process("l").await;
    let resp = get(&client(), &backend.url("/bytes/1000?length")).await;
    assert_eq!(resp.headers()["content-length"], "1000");
    let body = resp.bytes().await.expect("body");
    assert!(pattern::matches(0, &body) && body.len() == 1000);
}

#[tokio::test]
async fn echo_streams_the_body_back_as_it_arrives() {
    let backend = spawn_in_process("e").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let client = client();
    let request = client
        .post(backend.url("/echo"))
        .header("content-type", "application/x-test")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    tx.send(Ok(Bytes::from_static(b"hello ")))
        .await
        .expect("send");
    let mut resp = within(STEP, "echo response head", request)
        .await
        .expect("POST /echo");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-test");

    // Each chunk comes back before the next is sent: nothing waits for the whole body.
    let first = within(STEP, "first echoed chunk", resp.chunk()).await;
    assert_eq!(first.expect("chunk").as_deref(), Some(&b"hello "[..]));
    tx.send(Ok(Bytes::from_static(b"world")))
        .await
        .expect("send");
    let second = within(STEP, "second echoed chunk", resp.chunk()).await;
    assert_eq!(second.expect("chunk").as_deref(), Some(&b"world"[..]));
    drop(tx);
    let end = within(STEP, "end of the echo", resp.chunk()).await;
    assert_eq!(end.expect("end").as_deref(), None);
}

#[tokio::test]
async fn echo_accepts_put_over_h1_and_h2() {
    let backend = spawn_in_process("e").await;
    for client in [client(), h2_client()] {
        let resp = within(
            STEP,
            "PUT /echo",
            client.put(backend.url("/echo")).body("payload").send(),
        )
        .await
        .expect("PUT /echo");
        assert_eq!(resp.status(), 200);
        assert_eq!(text(resp).await, "payload");
    }
}

#[tokio::test]
async fn count_small_body() {
    let backend = spawn_in_process("n").await;
    let resp = within(
        STEP,
        "POST /count",
        client().post(backend.url("/count")).body("abc").send(),
    )
    .await
    .expect("POST /count");
    assert_eq!(resp.status(), 200);
    let counted = json(resp).await;
    assert_eq!(counted["bytes"], 3);
    assert_eq!(counted["checksum"], Checksum::of(b"abc"));
}

#[tokio::test]
async fn count_64_mib_streamed_upload() {
    let backend = spawn_in_process("up").await;
    for client in [client(), h2_client()] {
        let resp = within(
            BIG_STEP,
            "64 MiB upload",
            client
                .post(backend.url("/count"))
                // An awkward piece size, so frame and checksum-word boundaries disagree.
                .body(reqwest::Body::wrap_stream(pattern::stream(BIG, 60_001)))
                .send(),
        )
        .await
        .expect("POST /count");
        assert_eq!(resp.status(), 200);
        let counted = json(resp).await;
        assert_eq!(counted["bytes"], BIG);
        assert_eq!(counted["checksum"], pattern::checksum(BIG));
    }
}

#[tokio::test]
async fn bytes_64_mib_streamed_download() {
    let backend = spawn_in_process("down").await;
    let mut resp = get(&client(), &backend.url(&format!("/bytes/{BIG}"))).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    let mut received = 0u64;
    let deadline = Instant::now() + BIG_STEP;
    while let Some(chunk) = tokio::time::timeout_at(deadline, resp.chunk())
        .await
        .expect("64 MiB download took too long")
        .expect("chunk")
    {
        assert!(
            pattern::matches(received, &chunk),
            "wrong bytes at {received}"
        );
        received += chunk.len() as u64;
    }
    assert_eq!(received, BIG);
}

#[tokio::test]
async fn bytes_edge_cases() {
    let backend = spawn_in_process("d").await;
    let client = client();
    let resp = get(&client, &backend.url("/bytes/0")).await;
    assert_eq!(resp.status(), 200);
    assert!(
        within(STEP, "empty body", resp.bytes())
            .await
            .expect("body")
            .is_empty()
    );
    let resp = get(&h2_client(), &backend.url("/bytes/1000")).await;
    let body = within(STEP, "body", resp.bytes()).await.expect("body");
    assert_eq!(body, pattern::pattern(0, 1000));
    for bad in ["/bytes/abc", "/bytes/-5", "/bytes/99999999999999999999999"] {
        assert_eq!(get(&client, &backend.url(bad)).await.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn websocket_echo() {
    let backend = spawn_in_process("ws").await;
    let url = format!("ws://{}/ws", backend.addr());
    let (mut ws, resp) = within(
        STEP,
        "WebSocket handshake",
        tokio_tungstenite::connect_async(&url),
    )
    .await
    .expect("connect");
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["x-backend-id"], "ws");

    ws.send(Message::text("hi")).await.expect("send text");
    let echoed = within(STEP, "text echo", ws.next()).await;
    assert_eq!(echoed.expect("open").expect("message"), Message::text("hi"));

    let blob = Bytes::from(vec![0u8, 1, 2, 255]);
    ws.send(Message::binary(blob.clone()))
        .await
        .expect("send binary");
    let echoed = within(STEP, "binary echo", ws.next()).await;
    assert_eq!(
        echoed.expect("open").expect("message"),
        Message::binary(blob)
    );

    ws.send(Message::Ping(Bytes::from_static(b"p")))
        .await
        .expect("ping");
    let pong = within(STEP, "pong", ws.next()).await;
    assert_eq!(
        pong.expect("open").expect("message"),
        Message::Pong(Bytes::from_static(b"p"))
    );

    // The socket is load on the backend while it is open.
    assert_eq!(backend.stats().in_flight, 1);

    ws.close(None).await.expect("close");
    let reply = within(STEP, "close reply", ws.next()).await;
    assert!(matches!(reply, Some(Ok(Message::Close(_)))), "{reply:?}");
    let backend_ref = &backend;
    wait_until("socket released", STEP, || async move {
        backend_ref.stats().in_flight == 0
    })
    .await;
}

#[tokio::test]
async fn ws_without_an_upgrade_is_400() {
    let backend = spawn_in_process("w").await;
    let resp = get(&client(), &backend.url("/ws")).await;
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn in_process_backend_stops() {
    let backend = spawn_in_process("p").await;
    let addr = backend.addr();
    assert_eq!(
        rouse_e2e::http_get(addr, "/").await.expect("GET /").text(),
        "p"
    );
    assert_eq!(backend.kill().await, ServeOutcome::Shutdown);
    assert_refused(addr).await;

    let backend = spawn_in_process("q").await;
    let addr = backend.addr();
    drop(backend);
    wait_until("dropped backend closed", STEP, || refused(addr)).await;

    let backend = spawn_in_process("r").await;
    let addr = backend.addr();
    assert_eq!(backend.shutdown().await, ServeOutcome::Shutdown);
    assert_refused(addr).await;
}

#[tokio::test]
async fn in_process_request_limit() {
    let backend = spawn_in_process_with(BackendConfig::new("limited").exit_after_requests(1)).await;
    let addr = backend.addr();
    let resp = rouse_e2e::http_get(addr, "/").await.expect("GET /");
    assert_eq!(resp.backend_id(), Some("limited"));
    let outcome = within(STEP, "backend stop", backend.wait_stopped()).await;
    assert_eq!(outcome, ServeOutcome::RequestLimitReached);
    assert_refused(addr).await;
}

#[tokio::test]
async fn process_serves_and_dies_on_kill() {
    let mut backend = BackendProcess::builder("proc")
        .bin(rouse_e2e::backend_bin!())
        .spawn()
        .await;
    let addr = backend.addr();
    assert!(addr.ip().is_loopback());
    assert!(backend.pid() > 0);
    let resp = get(&client(), &backend.url("/")).await;
    assert_eq!(backend_id(&resp), Some("proc"));
    assert_eq!(text(resp).await, "proc");

    within(STEP, "kill", backend.kill()).await;
    assert!(backend.try_exit_status().is_some());
    assert_refused(addr).await;
}

#[tokio::test]
async fn process_finishes_in_flight_requests_on_sigterm() {
    let mut backend = BackendProcess::spawn("term", None).await;
    let addr = backend.addr();
    let client = client();
    let url = backend.url("/delay/500");
    let slow = tokio::spawn(async move { text(get(&client, &url).await).await });
    wait_until("request in flight", STEP, || async move {
        rouse_e2e::stats(addr).await.in_flight == 1
    })
    .await;

    backend.terminate();
    assert_eq!(slow.await.expect("request task"), "term");
    let status = backend.wait_exit(STEP).await;
    assert!(status.success(), "{status:?}");
    assert_refused(addr).await;
}

#[tokio::test]
async fn process_exits_after_n_requests() {
    let mut backend = BackendProcess::builder("crashy")
        .bin(rouse_e2e::backend_bin!())
        .exit_after_requests(2)
        .spawn()
        .await;
    let addr = backend.addr();
    let client = client();
    for _ in 0..2 {
        assert_eq!(get(&client, &backend.url("/")).await.status(), 200);
    }
    let status = backend.wait_exit(STEP).await;
    assert_eq!(status.code(), Some(1));
    assert_refused(addr).await;
}

#[tokio::test]
async fn process_listen_delay_and_port_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port_file = dir.path().join("port");
    let start = Instant::now();
    let backend = BackendProcess::builder("late")
        .bin(rouse_e2e::backend_bin!())
        .delay_listen(Duration::from_millis(300))
        .port_file(&port_file)
        .spawn()
        .await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    let written = std::fs::read_to_string(&port_file).expect("port file");
    assert_eq!(
        written.trim().parse::<u16>().ok(),
        Some(backend.addr().port())
    );
    // Only the renamed file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
}

#[tokio::test]
async fn process_listens_where_told() {
    let addr = free_addr();
    let backend = BackendProcess::spawn("fixed", Some(addr)).await;
    assert_eq!(backend.addr(), addr);
    assert_eq!(rouse_e2e::stats(addr).await, rouse_e2e::Stats::default());
}

#[tokio::test]
async fn process_rejects_a_bad_id() {
    let out = within(
        STEP,
        "backend with a bad id",
        tokio::process::Command::new(rouse_e2e::backend_bin!())
            .args(["--id", "bad\nid"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run backend");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn lib_finds_the_same_binary() {
    if std::env::var_os("ROUSE_TEST_BACKEND").is_none() {
        let found = rouse_e2e::backend_bin().canonicalize().expect("binary");
        let cargo = rouse_e2e::backend_bin!().canonicalize().expect("binary");
        assert_eq!(found, cargo);
    }
}

#[tokio::test]
#[should_panic(expected = "timed out after 50ms waiting for the impossible")]
async fn wait_until_names_what_timed_out() {
    wait_until("the impossible", Duration::from_millis(50), || async {
        false
    })
    .await;
}

#[tokio::test]
async fn wait_until_returns_the_value() {
    let mut n = 0;
    let got = wait_until("third try", STEP, || {
        n += 1;
        let n = n;
        async move { (n >= 3).then_some(n) }
    })
    .await;
    assert_eq!(got, 3);
}

#[tokio::test]
async fn shutdown_does_not_wait_for_idle_connections() {
    let backend = spawn_in_process("idle").await;
    let h1 = client();
    let h2 = h2_client();
    // Both clients now hold an idle connection in their pools.
    text(get(&h1, &backend.url("/")).await).await;
    text(get(&h2, &backend.url("/")).await).await;
    let start = Instant::now();
    within(STEP, "shutdown", backend.shutdown()).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "shutdown waited {:?} for idle connections",
        start.elapsed()
    );
}

#[tokio::test]
async fn shutdown_closes_websockets_with_going_away() {
    let backend = spawn_in_process("bye").await;
    let url = format!("ws://{}/ws", backend.addr());
    let (mut ws, _) = within(
        STEP,
        "WebSocket handshake",
        tokio_tungstenite::connect_async(&url),
    )
    .await
    .expect("connect");
    let shutdown = tokio::spawn(backend.shutdown());
    let close = within(STEP, "server close", ws.next()).await;
    match close {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(
                frame.code,
                tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Away
            );
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // Reading on completes the closing handshake from this side.
    let _ = within(STEP, "close handshake", ws.next()).await;
    let outcome = within(STEP, "shutdown", shutdown).await.expect("task");
    assert_eq!(outcome, ServeOutcome::Shutdown);
}

#[tokio::test]
async fn latency_delays_every_request_but_stats() {
    const LAG: Duration = Duration::from_secs(1);
    let backend = spawn_in_process_with(BackendConfig::new("lag").latency(LAG)).await;
    let addr = backend.addr();
    let start = Instant::now();
    let requests = ["/", "/status/204", "/nope"].map(|path| {
        let client = client();
        tokio::spawn(async move { get(&client, &url(addr, path)).await.status() })
    });
    // Waiting counts as load, and /stats itself is not held up.
    wait_until("the delayed requests in flight", STEP, || async move {
        rouse_e2e::stats(addr).await.in_flight == 3
    })
    .await;
    assert!(start.elapsed() < LAG, "/stats was delayed too");
    for request in requests {
        request.await.expect("request task");
    }
    assert!(start.elapsed() >= LAG);

    let backend = BackendProcess::builder("lag")
        .bin(rouse_e2e::backend_bin!())
        .latency(Duration::from_millis(200))
        .spawn()
        .await;
    let start = Instant::now();
    get(&client(), &backend.url("/")).await;
    assert!(start.elapsed() >= Duration::from_millis(200));
}

fn url(addr: SocketAddr, path: &str) -> String {
    rouse_e2e::url(addr, path)
}
