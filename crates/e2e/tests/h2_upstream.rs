//! HTTP/2 to the servers (`protocol = "h2c"`): HTTP/1.1 clients through an h2c upstream, one
//! shared connection per server, trailers both ways, what cannot go over HTTP/2.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use common::{WAIT, client, start_rouse, static_upstream, url};
use futures_util::stream;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rouse_e2e::{spawn_in_process, unique_addr, wait_until};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

const H2C: &str = "protocol = \"h2c\"";

#[tokio::test]
async fn an_http1_client_reaches_an_h2c_upstream_and_back() {
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse(&static_upstream("app", &[], H2C, &[backend.addr()])).await;
    let r = client()
        .get(url(rouse.addr(), "/inspect/x?q=1"))
        .header("connection", "keep-alive, x-private")
        .header("x-private", "hop")
        .header("x-kept", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.version(),
        http::Version::HTTP_11,
        "the client's own version"
    );
    assert_eq!(r.headers()["x-backend-id"], "a");
    let seen: serde_json::Value = r.json().await.unwrap();
    assert_eq!(seen["version"], "HTTP/2.0", "{seen}");
    // Host became :authority, in the target.
    let expected = format!("http://{}/inspect/x?q=1", rouse.addr());
    assert_eq!(seen["uri"], expected.as_str(), "{seen}");
    let headers = &seen["headers"];
    assert!(headers.get("host").is_none(), "{seen}");
    assert!(headers.get("connection").is_none(), "{seen}");
    assert!(headers.get("x-private").is_none(), "{seen}");
    assert_eq!(headers["x-kept"], "yes");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn bodies_stream_both_ways_over_h2c() {
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse(&static_upstream(
        "app",
        &[],
        &format!("{H2C}\nrequest_buffering = false"),
        &[backend.addr()],
    ))
    .await;
    let c = client();
    let body = "x".repeat(3 * 1024 * 1024 + 17);
    let r = c
        .post(url(rouse.addr(), "/echo"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().len(), body.len());
    let r = c.get(url(rouse.addr(), "/bytes/5000000")).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 5_000_000);
}

/// Many requests at once from many client connections go as streams of one upstream
/// connection.
#[tokio::test]
async fn many_concurrent_requests_share_one_upstream_connection() {
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse(&static_upstream("app", &[], H2C, &[backend.addr()])).await;
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let c = c.clone();
        let u = url(rouse.addr(), "/delay/200");
        tasks.push(tokio::spawn(async move {
            let r = c.get(&u).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    for t in tasks {
        let (status, body) = timeout(WAIT, t).await.unwrap().unwrap();
        assert_eq!((status, body.as_str()), (200, "a"));
    }
    let stats = backend.stats();
    assert_eq!(stats.requests, 40);
    assert!(
        stats.max_in_flight > 1,
        "the requests overlapped at the backend: {stats:?}"
    );
    assert_eq!(
        stats.connections, 1,
        "40 concurrent requests share one HTTP/2 connection: {stats:?}"
    );
}

/// Clients that stop reading large unbuffered responses stall their own streams only: the
/// other requests on the same upstream connection go on.
#[tokio::test]
async fn stalled_streams_do_not_block_the_shared_connection() {
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse(&static_upstream(
        "app",
        &[],
        &format!("{H2C}\nresponse_buffering = false"),
        &[backend.addr()],
    ))
    .await;
    // Ten clients ask for 50 MB each and read none of it: with hyper's default windows (2 MiB
    // a stream, 5 MiB the connection) three would stop the whole connection.
    let mut stalled = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(rouse.addr()).await.unwrap();
        s.write_all(b"GET /bytes/50000000 HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    wait_until("the big responses started", WAIT, || async {
        backend.stats().in_flight == 10
    })
    .await;
    let c = client();
    for _ in 0..20 {
        let r = timeout(WAIT, c.get(url(rouse.addr(), "/bytes/300000")).send())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), 300_000);
    }
    let stats = backend.stats();
    assert_eq!(stats.connections, 1, "{stats:?}");
    assert_eq!(
        stats.in_flight, 10,
        "the stalled ones are still there: {stats:?}"
    );
    drop(stalled);
}

/// Past the streams one connection carries (100), a second connection opens, and only one.
#[tokio::test]
async fn past_its_stream_limit_a_second_connection_opens() {
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse(&static_upstream("app", &[], H2C, &[backend.addr()])).await;
    // One client connection with many streams, so the client side costs little.
    let c = common::h2c_client();
    let mut tasks = Vec::new();
    for _ in 0..150 {
        let c = c.clone();
        let u = url(rouse.addr(), "/delay/2000");
        tasks.push(tokio::spawn(async move {
            c.get(&u).send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(timeout(WAIT, t).await.unwrap().unwrap(), 200);
    }
    let stats = backend.stats();
    assert_eq!(stats.requests, 150);
    assert!(stats.max_in_flight > 100, "{stats:?}");
    assert_eq!(stats.connections, 2, "{stats:?}");
}

/// A server that refuses connections is left for the next one, the request untouched.
#[tokio::test]
async fn a_refused_connect_goes_to_the_next_server() {
    let backend = spawn_in_process("b").await;
    // Below the range `bind(0)` draws from: never another listener's port.
    let dead = unique_addr();
    let rouse = start_rouse(&static_upstream(
        "app",
        &[],
        &format!("{H2C}\nbalance = \"round_robin\"\nrequest_buffering = false"),
        &[dead, backend.addr()],
    ))
    .await;
    let c = client();
    for _ in 0..4 {
        let r = c
            .post(url(rouse.addr(), "/echo"))
            .body("payload")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "payload");
    }
}

/// A restarted server: the shared connection it closed is replaced, nothing fails.
#[tokio::test]
async fn a_closed_upstream_connection_is_replaced() {
    let first = spawn_in_process("a").await;
    let addr = first.addr();
    let rouse = start_rouse(&static_upstream("app", &[], H2C, &[addr])).await;
    let c = client();
    let r = c.get(url(rouse.addr(), "/")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "a");
    first.kill().await;
    let again = rouse_e2e::spawn_in_process_at(rouse_e2e::BackendConfig::new("a2"), addr).await;
    let r = c.get(url(rouse.addr(), "/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "a2");
    assert_eq!(again.stats().connections, 1);
}

#[tokio::test]
async fn a_websocket_to_an_h2c_upstream_is_refused_clearly() {
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse(&static_upstream("app", &[], H2C, &[backend.addr()])).await;
    let r = client()
        .get(url(rouse.addr(), "/ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 501);
    assert_eq!(r.headers()["x-rouse-error"], "upgrade-unsupported");
    assert!(r.text().await.unwrap().contains("protocol = \"http1\""));
    assert_eq!(backend.stats().requests, 0);
}

// === trailers ===

/// A request over HTTP/1.1 with a chunked body and trailers, on a connection of its own.
async fn chunked_with_trailers(
    rouse: SocketAddr,
    path: &str,
    te_trailers: bool,
) -> (Response<Incoming>, tokio::task::JoinHandle<()>) {
    let stream = TcpStream::connect(rouse).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut trailers = HeaderMap::new();
    trailers.insert("x-sum", HeaderValue::from_static("42"));
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"hello"))),
        Ok(Frame::data(Bytes::from_static(b" world"))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut req = Request::post(path)
        .header("host", "app.test")
        .header("trailer", "x-sum");
    if te_trailers {
        req = req.header("te", "trailers");
    }
    let req = req.body(StreamBody::new(stream::iter(frames))).unwrap();
    let resp = timeout(WAIT, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    (resp, task)
}

#[tokio::test]
async fn trailers_pass_both_ways_between_an_http1_chunked_client_and_an_h2c_upstream() {
    let backend = spawn_in_process("a").await;
    for buffering in ["true", "false"] {
        let extra =
            format!("{H2C}\nrequest_buffering = {buffering}\nresponse_buffering = {buffering}");
        let rouse = start_rouse(&static_upstream("app", &[], &extra, &[backend.addr()])).await;

        // The server got them.
        let (resp, _conn) = chunked_with_trailers(rouse.addr(), "/inspect", true).await;
        assert_eq!(resp.status(), 200);
        let body = timeout(WAIT, resp.into_body().collect()).await.unwrap();
        let seen: serde_json::Value = serde_json::from_slice(&body.unwrap().to_bytes()).unwrap();
        assert_eq!(seen["body"], "hello world", "{seen}");
        assert_eq!(
            seen["trailers"]["x-sum"], "42",
            "buffering {buffering}: {seen}"
        );
        assert_eq!(seen["headers"]["te"], "trailers", "{seen}");

        // And the server's reach the client: /echo sends the request's back.
        let (resp, _conn) = chunked_with_trailers(rouse.addr(), "/echo", true).await;
        assert_eq!(resp.status(), 200);
        let body = timeout(WAIT, resp.into_body().collect())
            .await
            .unwrap()
            .unwrap();
        let trailers = body.trailers().cloned();
        assert_eq!(&body.to_bytes()[..], b"hello world");
        let trailers = trailers.unwrap_or_else(|| panic!("no trailers (buffering {buffering})"));
        assert_eq!(trailers["x-sum"], "42");

        // A client that did not say `TE: trailers` gets the body without them (HTTP/1.1
        // allows nothing else).
        let (resp, _conn) = chunked_with_trailers(rouse.addr(), "/echo", false).await;
        assert_eq!(resp.status(), 200);
        let body = timeout(WAIT, resp.into_body().collect())
            .await
            .unwrap()
            .unwrap();
        assert!(body.trailers().is_none(), "buffering {buffering}");
        assert_eq!(&body.to_bytes()[..], b"hello world");
    }
}
