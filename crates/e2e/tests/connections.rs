//! Client connections are bounded from accept: connections that send nothing, trickle their
//! head, sit idle (HTTP/1.1 keep-alive, h2c) or go quiet after a WebSocket upgrade are closed;
//! `listen_backlog` and `max_connections` hold under a burst; timeouts far past any sensible
//! value neither panic nor stop a drain. Real rouse, real sockets, on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{WAIT, answer, start_rouse_with_proxy, static_upstream, url};
use futures_util::{SinkExt, StreamExt};
use rouse_e2e::{spawn_in_process, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

/// Waits for `s` to be closed by rouse (EOF or reset); returns what it sent before.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match timeout(WAIT, s.read(&mut chunk)).await {
            Err(_) => panic!("still open after {WAIT:?}; sent {got:?}"),
            Ok(Ok(0) | Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends `GET path` on `s` (keep-alive) and reads one answer: its status and body.
async fn request(s: &mut TcpStream, path: &str) -> (u16, String) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .expect("request written");
    answer(s).await
}

fn assert_between(took: Duration, low: Duration, high: Duration, what: &str) {
    assert!(
        took >= low && took < high,
        "{what}: took {took:?}, expected {low:?}..{high:?}"
    );
}

// === client_header_timeout ===

/// The "TCP connections that never send a byte" row: nginx closes them after its
/// header timeout, rouse kept all 5000 open. Here every one is closed, silently, after
/// `client_header_timeout` counted from accept, and the open-connection gauge returns to 0.
#[tokio::test]
async fn connections_that_never_send_a_byte_are_closed_after_client_header_timeout() {
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse_with_proxy(
        // A short idle timeout must not be what closes them: the header timeout is shorter.
        "client_header_timeout = \"300ms\"\nclient_idle_timeout = \"75s\"",
        &static_upstream("app", &[], "", &[backend.addr()]),
    )
    .await;
    let t0 = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..50 {
        conns.push(TcpStream::connect(rouse.addr()).await.unwrap());
    }
    let waits = conns.into_iter().map(|mut s| {
        tokio::spawn(async move {
            let sent = until_closed(&mut s).await;
            (sent, t0.elapsed())
        })
    });
    for w in waits {
        let (sent, took) = w.await.unwrap();
        assert!(sent.is_empty(), "closed without an answer: {sent:?}");
        assert_between(
            took,
            Duration::from_millis(290),
            Duration::from_secs(3),
            "a silent connection",
        );
    }
    let metrics = Arc::clone(&rouse.table().metrics);
    wait_until("no client connection open", WAIT, || async {
        metrics.client_connections.get() == 0
    })
    .await;
}

/// After one whole request and its answer, a connection that sends nothing more is closed
/// `client_header_timeout` after the end of that answer.
#[tokio::test]
async fn a_keep_alive_connection_idle_after_a_request_is_closed_after_client_header_timeout() {
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse_with_proxy(
        "client_header_timeout = \"300ms\"",
        &static_upstream("app", &[], "", &[backend.addr()]),
    )
    .await;
    let mut s = TcpStream::connect(rouse.addr()).await.unwrap();
    // Well past the header timeout from accept: the answer's end is what counts now.
    sleep(Duration::from_millis(100)).await;
    assert_eq!(request(&mut s, "/delay/400").await, (200, "a".to_owned()));
    let answered = Instant::now();
    assert!(until_closed(&mut s).await.is_empty());
    assert_between(
        answered.elapsed(),
        Duration::from_millis(250),
        Duration::from_secs(3),
        "idle after an answer",
    );
}

/// A client that reads a large response slowly gets all of it, however short
/// `client_header_timeout`: the wait for the next head counts from the last byte written to
/// the socket, not from the moment hyper took the body's last frame into its write buffer,
/// which may still hold part of the response (here the body outgrows the kernel's buffers:
/// rouse's send buffer grows to 4 MiB, the client's receive buffer is kept small).
#[tokio::test]
async fn a_slow_reader_gets_a_whole_response_however_short_client_header_timeout() {
    const LEN: usize = 8_000_000;
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse_with_proxy(
        "client_header_timeout = \"100ms\"",
        &static_upstream("app", &[], "", &[backend.addr()]),
    )
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut s = socket.connect(rouse.addr()).await.unwrap();
    s.write_all(format!("GET /bytes/{LEN} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    // At most 32 KiB per 20 ms, some 1.6 MB/s. The body comes chunked: it is whole once the
    // last chunk came.
    while !got.ends_with(b"\r\n0\r\n\r\n") {
        match timeout(WAIT, s.read(&mut chunk)).await.expect("bounded") {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
        sleep(Duration::from_millis(20)).await;
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(
        got.len() > LEN && got.ends_with(b"\r\n0\r\n\r\n"),
        "cut after {} bytes",
        got.len()
    );
}

/// A slowloris (its head trickled a byte per 100 ms, which resets any timer counted from the
/// last byte) is cut `client_header_timeout` after accept, even when it held its first byte
/// back: hyper's own header timer starts only at that first byte, after the HTTP/1-or-h2
/// sniff, and would have allowed 1.5 s more.
#[tokio::test]
async fn a_slowloris_is_cut_at_client_header_timeout_counted_from_accept() {
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse_with_proxy(
        "client_header_timeout = \"2s\"",
        &static_upstream("app", &[], "", &[backend.addr()]),
    )
    .await;
    let s = TcpStream::connect(rouse.addr()).await.unwrap();
    let accepted = Instant::now();
    let (mut read, mut write) = s.into_split();
    let trickle = tokio::spawn(async move {
        sleep(Duration::from_millis(1500)).await;
        let head = b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: "
            .iter()
            .chain(b"a".repeat(500).iter())
            .copied()
            .collect::<Vec<u8>>();
        for b in head {
            if write.write_all(&[b]).await.is_err() {
                return;
            }
            sleep(Duration::from_millis(100)).await;
        }
    });
    let mut sent = Vec::new();
    let _ = timeout(WAIT, read.read_to_end(&mut sent))
        .await
        .expect("cut within WAIT");
    let took = accepted.elapsed();
    trickle.abort();
    assert!(sent.is_empty(), "closed without an answer: {sent:?}");
    assert_between(
        took,
        Duration::from_millis(1950),
        Duration::from_millis(3000),
        "listen_backlog = 4096",
    );
}

// === h2c idle ===

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// One frame: its type, flags, stream and payload; `None` once the connection closed.
async fn read_frame(s: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    timeout(WAIT, s.read_exact(&mut head))
        .await
        .expect("a frame or a close within WAIT")
        .ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    timeout(WAIT, s.read_exact(&mut payload))
        .await
        .expect("a whole frame within WAIT")
        .ok()?;
    Some((head[3], head[4], stream, payload))
}

struct H2Close {
    answered: Option<Instant>,
    goaway: Option<Instant>,
    closed: Instant,
}

/// Speaks h2c on `s` as a well-behaved client (acks SETTINGS, answers PINGs), optionally
/// sending `GET /` on stream 1, and reports when the answer ended, GOAWAY came and the
/// connection closed.
async fn h2_until_closed(mut s: TcpStream, ask: bool) -> H2Close {
    const SETTINGS: u8 = 4;
    const PING: u8 = 6;
    const GOAWAY: u8 = 7;
    const ACK: u8 = 1;
    const END_STREAM: u8 = 1;
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    if ask {
        // HPACK: :method GET, :scheme http, :path /, :authority "x".
        let block = [0x82, 0x86, 0x84, 0x41, 0x01, b'x'];
        hello.extend(frame(1, 0x4 | END_STREAM, 1, &block));
    }
    s.write_all(&hello).await.unwrap();
    let mut out = H2Close {
        answered: None,
        goaway: None,
        closed: Instant::now(),
    };
    while let Some((kind, flags, stream, payload)) = read_frame(&mut s).await {
        match kind {
            SETTINGS if flags & ACK == 0 => {
                let _ = s.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
            }
            PING if flags & ACK == 0 => {
                let _ = s.write_all(&frame(PING, ACK, 0, &payload)).await;
            }
            GOAWAY => {
                out.goaway.get_or_insert_with(Instant::now);
            }
            // DATA or HEADERS ending stream 1: the answer is complete.
            0 | 1 if stream == 1 && flags & END_STREAM != 0 => {
                out.answered = Some(Instant::now());
            }
            _ => {}
        }
    }
    out.closed = Instant::now();
    out
}

/// An h2c connection with no open stream gets GOAWAY after `client_idle_timeout` (hyper's h2
/// server has no idle timeout: ping keep-alives kept it open for ever), whether it made a
/// request first or none at all, and is then closed.
#[tokio::test]
async fn an_idle_h2c_connection_gets_goaway_after_client_idle_timeout() {
    common::log_if_asked();
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse_with_proxy(
        "client_idle_timeout = \"500ms\"",
        &static_upstream("app", &[], "", &[backend.addr()]),
    )
    .await;
    let asking = tokio::spawn(h2_until_closed(
        TcpStream::connect(rouse.addr()).await.unwrap(),
        true,
    ));
    let silent_since = Instant::now();
    let silent = tokio::spawn(h2_until_closed(
        TcpStream::connect(rouse.addr()).await.unwrap(),
        false,
    ));

    let asking = asking.await.unwrap();
    let answered = asking.answered.expect("stream 1 was answered");
    let goaway = asking.goaway.expect("GOAWAY before the close");
    assert_between(
        goaway - answered,
        Duration::from_millis(450),
        Duration::from_secs(3),
        "GOAWAY after the answer",
    );
    assert!(asking.closed - goaway < Duration::from_secs(3));

    let silent = silent.await.unwrap();
    let goaway = silent.goaway.expect("GOAWAY on the silent connection too");
    assert_between(
        goaway - silent_since,
        Duration::from_millis(450),
        Duration::from_secs(3),
        "GOAWAY on a connection that asked nothing",
    );
    assert!(silent.closed - goaway < Duration::from_secs(3));
}

/// h2c through a real HTTP/2 client still works back to back: the idle timer counts only
/// while no stream is open.
#[tokio::test]
async fn h2c_requests_longer_than_client_idle_timeout_are_not_cut() {
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse_with_proxy(
        "client_idle_timeout = \"300ms\"",
        &static_upstream("app", &[], "", &[backend.addr()]),
    )
    .await;
    let c = common::h2c_client();
    for _ in 0..3 {
        let r = c.get(url(rouse.addr(), "/delay/700")).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "a");
    }
}

// === upgrade_idle_timeout ===

/// A WebSocket that carries messages stays open past `upgrade_idle_timeout`; once nothing
/// moves either way for that long, rouse closes it and the server's slot is released.
#[tokio::test]
async fn a_websocket_quiet_past_upgrade_idle_timeout_is_closed() {
    let backend = spawn_in_process("ws").await;
    let rouse = start_rouse_with_proxy(
        "upgrade_idle_timeout = \"1s\"",
        &static_upstream("app", &[], "", &[backend.addr()]),
    )
    .await;
    let (mut ws, resp) = common::websocket(rouse.addr()).await;
    assert_eq!(resp.status(), 101);
    let opened = Instant::now();
    let mut quiet = Instant::now();
    while opened.elapsed() < Duration::from_millis(2500) {
        sleep(Duration::from_millis(100)).await;
        ws.send(Message::Text("tick".into())).await.unwrap();
        let got = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(got, Message::Text("tick".into()));
        quiet = Instant::now();
    }
    let end = timeout(WAIT, ws.next()).await.expect("closed within WAIT");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{end:?}"
    );
    assert_between(
        quiet.elapsed(),
        Duration::from_millis(950),
        Duration::from_secs(4),
        "a quiet WebSocket",
    );
    let server = rouse.table().upstreams[0].servers[0].clone();
    wait_until("the upgraded connection released", WAIT, || async {
        server.in_flight() == 0
    })
    .await;
}

// === max_connections ===

async fn metrics_text(admin: SocketAddr) -> String {
    common::client()
        .get(url(admin, "/metrics"))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a body")
}

fn metric(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// With `max_connections = 5`, the 6th to 10th connections are accepted and closed at once
/// (no answer), counted in `rouse_connections_refused_total`, while the five go on being
/// served; once two of them close, new connections are served again.
#[tokio::test]
async fn connections_past_max_connections_are_closed_at_once_and_counted() {
    let backend = spawn_in_process("a").await;
    let rouse = start_rouse_with_proxy(
        "max_connections = 5",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n{}",
            static_upstream("app", &[], "", &[backend.addr()])
        ),
    )
    .await;
    let admin = rouse.admin_addr().expect("an admin listener");
    let mut open = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(rouse.addr()).await.unwrap();
        assert_eq!(request(&mut s, "/").await, (200, "a".to_owned()));
        open.push(s);
    }
    for _ in 0..5 {
        let mut s = TcpStream::connect(rouse.addr()).await.unwrap();
        let t0 = Instant::now();
        // The request may or may not reach the socket before it closes; no answer comes.
        let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(
            until_closed(&mut s).await.is_empty(),
            "refused without an answer"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "closed at once, not left waiting"
        );
    }
    let text = metrics_text(admin).await;
    assert_eq!(
        metric(&text, "rouse_connections_refused_total"),
        Some(5),
        "{text}"
    );
    assert_eq!(metric(&text, "rouse_client_connections"), Some(5), "{text}");
    for s in &mut open {
        assert_eq!(
            request(s, "/").await,
            (200, "a".to_owned()),
            "the five still served"
        );
    }

    open.truncate(3);
    wait_until("two connections released", WAIT, || async {
        metric(&metrics_text(admin).await, "rouse_client_connections") == Some(3)
    })
    .await;
    for _ in 0..2 {
        let mut s = TcpStream::connect(rouse.addr()).await.unwrap();
        assert_eq!(request(&mut s, "/").await, (200, "a".to_owned()));
        open.push(s);
    }
}

// === timeouts far past any sensible value ===

/// The "every [proxy] timeout that large" row: "400000000000y" panicked in hyper's
/// header timer on every connection and in the shutdown deadline on SIGTERM, skipping the
/// drain. Config validation now refuses such values, so the data plane is given them directly
/// (`Duration::MAX`, beyond any file's reach): HTTP/1.1, h2c and a WebSocket are served, and a
/// shutdown with a request in flight lets it finish and returns.
#[tokio::test]
async fn timeouts_as_long_as_a_duration_goes_serve_and_drain_without_panicking() {
    common::log_if_asked();
    let backend = spawn_in_process("a").await;
    let config = common::config(&static_upstream("app", &[], "", &[backend.addr()]));
    let table = Arc::new(rouse_state::Table::new(&config));
    let mut settings = rouse_proxy::Settings::new(&config.proxy, false);
    settings.connect_timeout = Duration::MAX;
    settings.read_timeout = Duration::MAX;
    settings.client_idle_timeout = Duration::MAX;
    settings.client_header_timeout = Duration::MAX;
    settings.client_body_timeout = Duration::MAX;
    settings.send_timeout = Duration::MAX;
    settings.pool_idle_timeout = Duration::MAX;
    settings.shutdown_timeout = Duration::MAX;
    settings.upgrade_idle_timeout = Some(Duration::MAX);
    let proxy = rouse_proxy::Proxy::new(settings, &table);
    let listener = rouse_proxy::listen::bind("127.0.0.1:0".parse().unwrap(), 511).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(rouse_proxy::serve(
        proxy,
        vec![rouse_proxy::Listener::plain(listener).unwrap()],
        async {
            let _ = stopped.await;
        },
    ));

    let mut s = TcpStream::connect(addr).await.unwrap();
    for _ in 0..3 {
        assert_eq!(request(&mut s, "/").await, (200, "a".to_owned()));
    }
    let h2 = common::h2c_client();
    let r = h2.get(url(addr, "/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "a");
    let (mut ws, _) = common::websocket(addr).await;
    ws.send(Message::Text("hi".into())).await.unwrap();
    let echoed = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::Text("hi".into()));
    ws.close(None).await.unwrap();
    drop(ws);
    wait_until("the WebSocket closed on the backend", WAIT, || async {
        backend.stats().in_flight == 0
    })
    .await;

    let slow = tokio::spawn(async move { request(&mut s, "/delay/500").await });
    wait_until("the slow request in flight", WAIT, || async {
        backend.stats().in_flight == 1
    })
    .await;
    let _ = stop.send(());
    assert_eq!(
        slow.await.expect("no panic"),
        (200, "a".to_owned()),
        "the in-flight request finishes during the drain"
    );
    timeout(WAIT, serving)
        .await
        .expect("the drain ends once nothing is in flight")
        .expect("serve does not panic");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
