//! The data plane over real sockets: keep-alive, balancing, failover, streaming, h2c, WebSocket,
//! routing, header rewriting, timeouts and graceful shutdown.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{WAIT, client, start_rouse, start_rouse_with_proxy, static_upstream, url};
use futures_util::{SinkExt, StreamExt};
use rouse_e2e::{
    BackendConfig, BackendProcess, spawn_in_process, spawn_in_process_with, unique_addr, wait_until,
};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn keep_alive_connections_are_reused_on_both_sides() {
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse(&static_upstream("app", &[], "", &[backend.addr()])).await;
    let c = client();
    for _ in 0..50 {
        let r = c.get(url(rouse.addr(), "/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "a");
    }
    let stats = backend.stats();
    assert_eq!(stats.requests, 50);
    assert_eq!(
        stats.connections, 1,
        "50 sequential requests must share one pooled upstream connection"
    );
}

#[tokio::test]
async fn fair_spreads_by_in_flight_away_from_a_slow_server() {
    let fast1 = spawn_in_process("fast1").await;
    let fast2 = spawn_in_process("fast2").await;
    let slow =
        spawn_in_process_with(BackendConfig::new("slow").latency(Duration::from_millis(150))).await;
    let rouse = start_rouse(&static_upstream(
        "app",
        &[],
        "balance = \"fair\"",
        &[fast1.addr(), slow.addr(), fast2.addr()],
    ))
    .await;
    let c = client();
    // 6 concurrent clients, 40 requests each: a least-in-flight balancer keeps the slow server
    // busy with about one request at a time while the fast ones take the rest.
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let c = c.clone();
        let u = url(rouse.addr(), "/delay/5");
        tasks.push(tokio::spawn(async move {
            let mut seen: HashMap<String, u32> = HashMap::new();
            for _ in 0..40 {
                let r = c.get(&u).send().await.unwrap();
                assert_eq!(r.status(), 200);
                *seen.entry(r.text().await.unwrap()).or_default() += 1;
            }
            seen
        }));
    }
    let mut total: HashMap<String, u32> = HashMap::new();
    for t in tasks {
        for (k, v) in timeout(WAIT, t).await.unwrap().unwrap() {
            *total.entry(k).or_default() += v;
        }
    }
    let get = |k: &str| total.get(k).copied().unwrap_or(0);
    assert_eq!(get("fast1") + get("fast2") + get("slow"), 240);
    assert!(
        get("slow") >= 1,
        "the slow server still gets some: {total:?}"
    );
    assert!(
        get("slow") * 3 < get("fast1").min(get("fast2")),
        "the slow server must get far fewer requests: {total:?}"
    );
    assert!(
        slow.stats().max_in_flight <= 3,
        "fair never piles requests on the slow server: {:?}",
        slow.stats()
    );
}

#[tokio::test]
async fn round_robin_rotates_evenly() {
    let a = spawn_in_process("a").await;
    let b = spawn_in_process("b").await;
    let rouse = start_rouse(&static_upstream(
        "app",
        &[],
        "balance = \"round_robin\"",
        &[a.addr(), b.addr()],
    ))
    .await;
    let c = client();
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(
            c.get(url(rouse.addr(), "/"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    assert_eq!(seen.iter().filter(|s| *s == "a").count(), 5, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] != w[1]),
        "alternates: {seen:?}"
    );
}

#[tokio::test]
async fn a_killed_server_is_failed_over_without_client_errors() {
    let mut a = BackendProcess::spawn("a", None).await;
    let b = BackendProcess::spawn("b", None).await;
    let c3 = BackendProcess::spawn("c", None).await;
    let rouse = start_rouse(&static_upstream(
        "app",
        &[],
        "fail_timeout = \"30s\"",
        &[a.addr(), b.addr(), c3.addr()],
    ))
    .await;
    let c = client();
    for _ in 0..9 {
        assert_eq!(
            c.get(url(rouse.addr(), "/")).send().await.unwrap().status(),
            200
        );
    }
    a.kill().await;
    let mut seen = HashMap::<String, u32>::new();
    for _ in 0..60 {
        let r = c.get(url(rouse.addr(), "/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "no client sees the dead server");
        *seen.entry(r.text().await.unwrap()).or_default() += 1;
    }
    assert!(!seen.contains_key("a"), "{seen:?}");
    assert!(
        seen["b"] > 10 && seen["c"] > 10,
        "the others share the load: {seen:?}"
    );
    let table = rouse.table();
    let dead = &table.upstreams[0].servers[0];
    assert!(
        dead.passively_failed(tokio::time::Instant::now()),
        "the killed server is left out of rotation"
    );
}

#[tokio::test]
async fn bad_gateway_only_when_every_server_is_down() {
    // Below the range `bind(0)` draws from: never a backend's port, and never each other's.
    let [dead1, dead2] = [unique_addr(), unique_addr()];
    let rouse = start_rouse(&static_upstream("app", &[], "", &[dead1, dead2])).await;
    let r = client().get(url(rouse.addr(), "/")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-rouse-error"], "unreachable");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("app"),
        "the answer says which upstream: {body}"
    );
}

#[tokio::test]
async fn a_refused_connect_is_retried_on_another_server_with_its_body() {
    // Below the range `bind(0)` draws from: the live backend's port 0 never hands it out.
    let dead = unique_addr();
    let live = spawn_in_process("live").await;
    // round robin so the dead server is certainly chosen first for one of the two requests.
    let rouse = start_rouse(&static_upstream(
        "app",
        &[],
        "balance = \"round_robin\"",
        &[dead, live.addr()],
    ))
    .await;
    let c = client();
    for _ in 0..2 {
        let r = c
            .post(url(rouse.addr(), "/echo"))
            .body("payload that must survive the retry")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.text().await.unwrap(),
            "payload that must survive the retry"
        );
    }
}

#[tokio::test]
async fn websocket_echo_through_rouse() {
    let backend = spawn_in_process("ws").await;
    let rouse = start_rouse(&static_upstream("app", &[], "", &[backend.addr()])).await;
    let (mut ws, resp) = common::websocket(rouse.addr()).await;
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        let text = format!("hello {i}");
        ws.send(Message::Text(text.clone().into())).await.unwrap();
        let got = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(got, Message::Text(text.into()));
    }
    ws.send(Message::Binary(vec![0u8, 1, 2, 255].into()))
        .await
        .unwrap();
    let got = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::Binary(vec![0u8, 1, 2, 255].into()));

    // While the socket is open the server counts it as in flight (never idle).
    let server = rouse.table().upstreams[0].servers[0].clone();
    assert_eq!(server.in_flight(), 1);
    assert_eq!(server.upgraded(), 1);
    ws.close(None).await.unwrap();
    drop(ws);
    wait_until("upgraded connection released", WAIT, || async {
        server.in_flight() == 0
    })
    .await;
}

#[tokio::test]
async fn h2c_prior_knowledge_is_proxied_as_http11_with_forwarded_headers() {
    let backend = spawn_in_process("h2").await;
    let rouse = start_rouse(&static_upstream("app", &[], "", &[backend.addr()])).await;
    let c = common::h2c_client();
    let r = c.get(url(rouse.addr(), "/headers")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let h: serde_json::Value = r.json().await.unwrap();
    assert_eq!(h["_version"], "HTTP/1.1", "servers get HTTP/1.1: {h}");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    // HTTP/2's :authority becomes the Host the server sees.
    assert_eq!(h["host"], rouse.addr().to_string(), "{h}");
    assert_eq!(h["x-forwarded-host"], rouse.addr().to_string(), "{h}");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_forwarded_headers_added() {
    let backend = spawn_in_process("h").await;
    let rouse = start_rouse(&static_upstream("app", &[], "", &[backend.addr()])).await;
    let r = client()
        .get(url(rouse.addr(), "/headers"))
        .header("connection", "keep-alive, x-private")
        .header("x-private", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-forwarded-for", "192.0.2.7")
        .header("x-app", "kept")
        .send()
        .await
        .unwrap();
    let h: serde_json::Value = r.json().await.unwrap();
    for gone in ["x-private", "keep-alive", "proxy-authorization"] {
        assert!(
            h.get(gone).is_none(),
            "{gone} must not reach the server: {h}"
        );
    }
    assert_eq!(h["x-app"], "kept");
    assert_eq!(h["x-forwarded-for"], "192.0.2.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-host"], rouse.addr().to_string());
}

/// Fields whose name holds an underscore never reach a server by default, as nginx's
/// `underscores_in_headers off` (a CGI-style server reads `X_Forwarded_For` as
/// `X-Forwarded-For`), on every path: the fast path (a plain head, and one whose `Connection`
/// names a field, written field by field), hyper's (an absolute-form target) and HTTP/2.
/// `underscores_in_headers = true` lets them through.
#[tokio::test]
async fn fields_named_with_an_underscore_are_dropped_as_nginx_does() {
    use tokio::io::AsyncWriteExt;
    let backend = spawn_in_process("u").await;
    let h2 = common::h2c_client();
    for allowed in [false, true] {
        let rouse = start_rouse_with_proxy(
            &format!("underscores_in_headers = {allowed}"),
            &static_upstream("app", &[], "", &[backend.addr()]),
        )
        .await;
        let mut seen = Vec::new();
        for (c, connection) in [
            (&client(), None),
            (&client(), Some("x-private")),
            (&h2, None),
        ] {
            let mut r = c
                .get(url(rouse.addr(), "/headers"))
                .header("x_forwarded_for", "192.0.2.66")
                .header("x_app", "1")
                .header("x-ok", "1");
            if let Some(named) = connection {
                r = r.header("connection", named).header("x-private", "p");
            }
            seen.push(
                r.send()
                    .await
                    .unwrap()
                    .json::<serde_json::Value>()
                    .await
                    .unwrap(),
            );
        }
        let mut s = tokio::net::TcpStream::connect(rouse.addr()).await.unwrap();
        s.write_all(b"GET http://a/headers HTTP/1.0\r\nHost: a\r\nX_Forwarded_For: 192.0.2.66\r\nX_App: 1\r\nX-Ok: 1\r\n\r\n")
            .await
            .unwrap();
        let answer = read_all(&mut s).await;
        let body = answer.split_once("\r\n\r\n").expect("a whole answer").1;
        seen.push(serde_json::from_str(body).unwrap());
        for (path, h) in seen.iter().enumerate() {
            assert_eq!(h["x-ok"], "1", "path {path}: {h}");
            assert_eq!(h["x-forwarded-for"], "127.0.0.1", "path {path}: {h}");
            for name in ["x_app", "x_forwarded_for"] {
                assert_eq!(h.get(name).is_some(), allowed, "path {path}, {name}: {h}");
            }
        }
    }
}

#[tokio::test]
async fn host_and_path_prefix_routing() {
    let app = spawn_in_process("app").await;
    let api = spawn_in_process("api").await;
    let other = spawn_in_process("default").await;
    let cfg = [
        static_upstream("app", &["app.example"], "", &[app.addr()]),
        static_upstream(
            "api",
            &["app.example"],
            "path_prefix = \"/api\"",
            &[api.addr()],
        ),
        static_upstream("fallback", &[], "", &[other.addr()]),
    ]
    .join("\n");
    let rouse = start_rouse(&cfg).await;
    let c = client();
    let get = |host: &'static str, path: &'static str| {
        let c = c.clone();
        let u = url(rouse.addr(), path);
        async move {
            let r = c.get(u).header("host", host).send().await.unwrap();
            // Which server answered, whatever it answered (the api server has no /api/v1).
            let id = r.headers()["x-backend-id"].to_str().unwrap().to_owned();
            (r.status().as_u16(), id)
        }
    };
    assert_eq!(get("app.example", "/").await, (200, "app".into()));
    assert_eq!(
        get("APP.example:8080", "/api/v1").await,
        (404, "api".into())
    );
    assert_eq!(get("other.example", "/api").await, (404, "default".into()));
    assert_eq!(get("other.example", "/").await, (200, "default".into()));
    assert_eq!(get("app.example", "/delay/0").await, (200, "app".into()));
}

#[tokio::test]
async fn no_route_is_404_and_missing_host_is_400() {
    let app = spawn_in_process("app").await;
    let rouse = start_rouse(&static_upstream("app", &["app.example"], "", &[app.addr()])).await;
    let r = client()
        .get(url(rouse.addr(), "/"))
        .header("host", "nobody.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-rouse-error"], "no-route");

    // A raw HTTP/1.1 request without Host.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(rouse.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}

#[tokio::test]
async fn chunked_download_and_upload_stream_intact() {
    let backend = BackendProcess::spawn("s", None).await;
    let rouse = start_rouse(&static_upstream("app", &[], "", &[backend.addr()])).await;
    let c = client();

    // Download 32 MiB sent chunked by the server, checked byte by byte as it streams.
    let n: u64 = 32 << 20;
    let r = c
        .get(url(rouse.addr(), &format!("/bytes/{n}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-length").is_none(), "stays chunked");
    let mut stream = r.bytes_stream();
    let mut at: u64 = 0;
    while let Some(chunk) = timeout(WAIT, stream.next()).await.unwrap() {
        for b in chunk.unwrap() {
            assert_eq!(b, rouse_e2e::pattern::byte_at(at));
            at += 1;
        }
    }
    assert_eq!(at, n);

    // Upload 64 MiB chunked (no content-length); the server counts and checksums it.
    let m: u64 = 64 << 20;
    let body = reqwest::Body::wrap_stream(rouse_e2e::pattern::stream(m, 256 << 10));
    let r = c
        .post(url(rouse.addr(), "/count"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["bytes"], m);
    assert_eq!(v["checksum"], rouse_e2e::pattern::checksum(m));
}

#[tokio::test]
async fn a_server_that_answers_too_late_gets_504() {
    let backend = spawn_in_process("slow").await;
    let rouse = start_rouse(&static_upstream("app", &[], "", &[backend.addr()])).await;
    // read_timeout is 5s in start_rouse.
    let r = client()
        .get(url(rouse.addr(), "/delay/7000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["x-rouse-error"], "read-timeout");
}

/// The wait for a response head is timed on the client connection's own timer, pushed later
/// by each request (not a timer made per request): on one keep-alive connection, after many
/// quick answers, a server too slow still gets 504 at `read_timeout` (not sooner, not at the
/// old deadline); and the connection goes on serving after one, its timer armed again. With
/// the head's timeout longer than `read_timeout` each request moves the timer earlier; with
/// them equal (as by default), only later.
#[tokio::test]
async fn read_timeout_holds_for_every_request_of_a_keep_alive_connection() {
    let backend = spawn_in_process("k").await;
    for head_timeout in ["60s", "400ms"] {
        let rouse = start_rouse_with_proxy(
            &format!("read_timeout = \"400ms\"\nclient_header_timeout = \"{head_timeout}\""),
            &static_upstream("app", &[], "", &[backend.addr()]),
        )
        .await;
        slow_answers_time_out_among_quick_ones(rouse.addr()).await;
    }
}

async fn slow_answers_time_out_among_quick_ones(addr: std::net::SocketAddr) {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    for round in 0..3 {
        let quick = tokio::time::Instant::now();
        // Quick answers for longer than the timeout: the deadline armed first passes.
        while quick.elapsed() < Duration::from_millis(600) {
            s.write_all(get("/").as_bytes()).await.unwrap();
            assert_eq!(common::answer(&mut s).await, (200, "k".to_owned()));
        }
        s.write_all(get("/delay/3000").as_bytes()).await.unwrap();
        let t0 = tokio::time::Instant::now();
        let (status, _) = common::answer(&mut s).await;
        let took = t0.elapsed();
        assert_eq!(status, 504, "round {round}");
        assert!(
            took >= Duration::from_millis(350) && took < Duration::from_millis(2500),
            "round {round}: 504 after {took:?}"
        );
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    let backend = spawn_in_process("g").await;
    let rouse = start_rouse(&static_upstream("app", &[], "", &[backend.addr()])).await;
    let addr = rouse.addr();
    let c = client();
    let slow = tokio::spawn({
        let c = c.clone();
        async move { c.get(url(addr, "/delay/800")).send().await.unwrap() }
    });
    wait_until("request in flight", WAIT, || async {
        backend.stats().in_flight == 1
    })
    .await;
    let shutdown = tokio::spawn(rouse.shutdown());
    let r = timeout(WAIT, slow).await.unwrap().unwrap();
    assert_eq!(r.status(), 200, "the in-flight request completes");
    assert_eq!(r.text().await.unwrap(), "g");
    timeout(WAIT, shutdown).await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting after shutdown"
    );
}

/// Reads what `s` sends until it closes or `WAIT` passes.
async fn read_all(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let _ = timeout(WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A client that stops sending its upload half-way gets 408 after `client_body_timeout`,
/// instead of holding a connection to the server for ever.
#[tokio::test]
async fn an_upload_that_stalls_gets_408_after_client_body_timeout() {
    use tokio::io::AsyncWriteExt;
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse_with_proxy(
        "client_body_timeout = \"300ms\"",
        &static_upstream("app", &[], "", &[backend.addr()]),
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(rouse.addr()).await.unwrap();
    s.write_all(b"POST /count HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let answer = read_all(&mut s).await;
    let took = t0.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("x-rouse-error: client-body-timeout"),
        "{answer}"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let server = &rouse.table().upstreams[0].servers[0];
    wait_until("nothing in flight", WAIT, || async {
        server.in_flight() == 0
    })
    .await;
}

/// A server that sends its response head and then nothing more is cut off after
/// `read_timeout` (the client's connection closes with the body short), and the request stops
/// counting as in flight.
#[tokio::test]
async fn a_response_that_stalls_is_cut_after_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stuck = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = stuck.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut c, _) = stuck.accept().await.unwrap();
        let mut head = vec![0u8; 4096];
        let _ = c.read(&mut head).await;
        c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
            .await
            .unwrap();
        // Then nothing, with the connection open, until the test ends.
        tokio::time::sleep(WAIT).await;
        drop(c);
    });
    let rouse = start_rouse_with_proxy(
        "read_timeout = \"300ms\"",
        &static_upstream("app", &[], "", &[addr]),
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(rouse.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let answer = read_all(&mut s).await;
    let took = t0.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nhello"),
        "the body is short: {answer:?}"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed after read_timeout, not at WAIT: {took:?}"
    );
    let s0 = &rouse.table().upstreams[0].servers[0];
    wait_until("nothing in flight", WAIT, || async { s0.in_flight() == 0 }).await;
    server.abort();
}

/// A client that stops reading a large response is disconnected after `send_timeout`, and
/// the request stops counting as in flight (it would otherwise pin its server for ever).
/// The response is larger than `max_response_buffer`, so that the server's connection is
/// held by the client's pace, not freed early by a spool that took the whole body (a temp
/// file takes 256 MiB faster than `send_timeout` passes).
#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_send_timeout() {
    use tokio::io::AsyncWriteExt;
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse_with_proxy(
        "send_timeout = \"500ms\"",
        &static_upstream(
            "app",
            &[],
            "max_response_buffer = \"4MiB\"",
            &[backend.addr()],
        ),
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(rouse.addr()).await.unwrap();
    s.write_all(b"GET /bytes/268435456 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let server = &rouse.table().upstreams[0].servers[0];
    wait_until("the response is under way", WAIT, || async {
        server.in_flight() == 1
    })
    .await;
    let t0 = tokio::time::Instant::now();
    // The client reads nothing: the socket buffers fill, then rouse's writes stall.
    wait_until("nothing in flight", WAIT, || async {
        server.in_flight() == 0
    })
    .await;
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    // The connection was closed: what is left to read ends (or is reset) well short of 256 MiB.
    let read = read_all(&mut s).await;
    assert!(read.len() < 256 << 20, "{}", read.len());
}
