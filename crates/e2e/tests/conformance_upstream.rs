//! Responses per RFC 9112, from a scripted server (raw bytes on a TCP socket, see
//! `raw::server`) through a real rouse to a raw client: interim answers, ambiguous or broken
//! framing, closes on either side, bodies a response must not have, trailers, oversized heads.
//!
//! The rule throughout: a client gets a response framed without ambiguity, or a 502, or (once
//! a response has begun) a connection cut before the response ends; never a response that
//! looks complete but is not, and never bytes of one response read as part of another.

mod common;
mod raw;

use std::time::Duration;

use common::{start_rouse, static_upstream};
use raw::server::{RawServer, Upstream};
use raw::{Raw, RawResponse};
use rouse::Rouse;

const WITHIN: Duration = Duration::from_secs(20);

/// rouse in front of the scripted server `server`.
async fn rouse_before(server: &RawServer, extra: &str) -> Rouse {
    start_rouse(&static_upstream("raw", &[], extra, &[server.addr()])).await
}

/// Sends `request` (a GET of `path` unless given whole) from a new client, has the server
/// answer `response` to it, and returns the client connection, the server's, and the answer
/// as the client read it (`Err` when the client saw a cut connection or no HTTP).
async fn scripted(
    rouse: &Rouse,
    server: &RawServer,
    method: &str,
    response: &[u8],
) -> (Raw, Upstream, Result<Option<RawResponse>, String>) {
    scripted_with(rouse, server, method, Body::None, response).await
}

/// How a scripted request carries its body. Both forms must come to the same answers: a
/// chunked body takes rouse's general path (hyper's), a bodiless request its HTTP/1.1 fast path.
#[derive(Debug, Clone, Copy)]
enum Body {
    None,
    Chunked,
}

async fn scripted_with(
    rouse: &Rouse,
    server: &RawServer,
    method: &str,
    body: Body,
    response: &[u8],
) -> (Raw, Upstream, Result<Option<RawResponse>, String>) {
    let mut client = Raw::connect(rouse.addr(), WITHIN).await;
    let body = match body {
        Body::None => "\r\n",
        Body::Chunked => "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    };
    client
        .send(format!("{method} /scripted HTTP/1.1\r\nHost: raw.test\r\n{body}").as_bytes())
        .await;
    let (mut up, req) = server.accept_request().await;
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        (method, "/scripted")
    );
    up.send(response).await;
    let answer = client.response(method).await;
    (client, up, answer)
}

/// A 502, or a client connection that ends before the response does (or before any): what a
/// broken response must come to. Bytes the client cannot parse mean the broken framing was
/// passed on, and a deadline passed means the client was left hanging: both fail.
fn cut_or_502(what: &str, answer: Result<Option<RawResponse>, String>) {
    match answer {
        Ok(None) => {}
        Ok(Some(r)) => assert_eq!(r.status, 502, "{what}: {} {}", r.status, r.text()),
        Err(e) => assert!(e.starts_with("connection ended"), "{what}: {e}"),
    }
}

/// What a response rouse must not forward comes to: a 502 for the client, and that server
/// connection closed (never reused for the next request).
async fn refused_with_502(
    what: &str,
    answer: Result<Option<RawResponse>, String>,
    up: &mut Upstream,
) {
    let r = answer.expect("an answer").expect("an answer");
    assert_eq!(r.status, 502, "{what}: {}", r.text());
    assert!(
        up.closes().await,
        "{what}: the server's connection stays open"
    );
}

/// After whatever happened, the same rouse serves the next client normally (on a connection to
/// the server it may have to open).
async fn still_serves(rouse: &Rouse, server: &RawServer) {
    let mut client = Raw::connect(rouse.addr(), WITHIN).await;
    next_is_served(&mut client, server).await;
}

/// `client` asks for `/next` and gets the server's answer to it (on a connection to the server
/// rouse may have to open).
async fn next_is_served(client: &mut Raw, server: &RawServer) {
    client
        .send(b"GET /next HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        .await;
    let (mut up, req) = server.accept_request().await;
    assert_eq!(req.target, "/next");
    up.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
        .await;
    let r = client.expect_response("GET").await;
    assert_eq!((r.status, r.text().as_str()), (200, "next"));
}

/// A 1xx the server sends unasked, before the real answer, never takes the place of the final
/// answer nor shifts the framing: the client reads the 200 and its body (with or without the
/// interim answer before it, which a 1.1 client must be able to skip).
#[tokio::test]
async fn interim_answers_never_take_the_place_of_the_final_one() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    for interim in [
        &b"HTTP/1.1 100 Continue\r\n\r\n"[..],
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n",
    ] {
        let response = [
            interim,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
        ]
        .concat();
        let (_c, _up, r) = scripted(&rouse, &server, "GET", &response).await;
        let r = r.expect("an answer").expect("an answer");
        let what = String::from_utf8_lossy(interim);
        assert_eq!((r.status, r.text().as_str()), (200, "final"), "{what}");
        assert!(
            r.interim.iter().all(|s| (100..200).contains(s)),
            "{what}: {:?}",
            r.interim
        );
    }
    still_serves(&rouse, &server).await;
}

/// RFC 9112 §6.3: a response whose Content-Length is invalid (two different values, a list of
/// them, no number) cannot be framed: a proxy closes the connection to the server and answers
/// 502.
#[tokio::test]
async fn a_response_with_an_invalid_content_length_is_502() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    for fields in [
        "Content-Length: 2\r\nContent-Length: 3",
        "Content-Length: 2, 3",
        "Content-Length: 2x",
        "Content-Length: -2",
        "Content-Length: +2",
        "Content-Length: 0x2",
    ] {
        let response = format!("HTTP/1.1 200 OK\r\n{fields}\r\n\r\nok!");
        let (_c, mut up, r) = scripted(&rouse, &server, "GET", response.as_bytes()).await;
        refused_with_502(fields, r, &mut up).await;
    }
    still_serves(&rouse, &server).await;
}

/// A chunk size that is no hex number, or too large, is a broken response: once its head has
/// gone on, the client's connection is cut before the response ends, never ended cleanly as
/// if the body were whole.
#[tokio::test]
async fn a_bad_chunk_in_a_response_cuts_the_client_connection() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    for size in ["zz", "-5", "123456789abcdef012", "10000000000000000", " 5"] {
        let response = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n{size}\r\nworld\r\n0\r\n\r\n"
        );
        let (_c, _up, r) = scripted(&rouse, &server, "GET", response.as_bytes()).await;
        cut_or_502(&format!("chunk size {size:?}"), r);
    }
    still_serves(&rouse, &server).await;
}

/// Chunk data not followed by CRLF is a broken response too.
#[tokio::test]
async fn chunk_data_without_its_crlf_cuts_the_client_connection() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    let (_c, _up, r) = scripted(
        &rouse,
        &server,
        "GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhelloXX5\r\nworld\r\n0\r\n\r\n",
    )
    .await;
    cut_or_502("no CRLF after the data", r);
    still_serves(&rouse, &server).await;
}

/// RFC 9112 §6.3 (8): a response with neither Content-Length nor Transfer-Encoding ends when
/// the server closes. An HTTP/1.1 client gets all of it, framed so that it knows where it
/// ends: chunked or with a length (the connection may then stay open), or itself closed.
#[tokio::test]
async fn a_close_delimited_response_reaches_the_client_whole() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    let body = "all of it, up to the close ".repeat(1000);
    let mut client = Raw::connect(rouse.addr(), WITHIN).await;
    client
        .send(b"GET /close-delimited HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        .await;
    let (up, _) = server.accept_request().await;
    let mut up = up;
    up.send(format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n{body}").as_bytes())
        .await;
    drop(up);
    let r = client.expect_response("GET").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), body);
    let framed = r.header("content-length").is_some() || r.header("transfer-encoding").is_some();
    if framed {
        client
            .send(b"GET /again HTTP/1.1\r\nHost: raw.test\r\n\r\n")
            .await;
        let (mut up, req) = server.accept_request().await;
        assert_eq!(req.target, "/again");
        up.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain")
            .await;
        let r = client.expect_response("GET").await;
        assert_eq!(r.text(), "again");
    }
}

/// `Connection: close` from the server (or an HTTP/1.0 answer without keep-alive, RFC 9112
/// §9.3) ends that server connection only: the client's stays open, and the client's next
/// request goes to the server on a new connection, never on the one the server closes.
#[tokio::test]
async fn connection_close_from_the_server_keeps_the_client_connection() {
    for first_answer in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfirst"[..],
        b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
    ] {
        closed_by_the_server(first_answer).await;
    }
}

async fn closed_by_the_server(first_answer: &[u8]) {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    let mut client = Raw::connect(rouse.addr(), WITHIN).await;
    client
        .send(b"GET /first HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        .await;
    let (mut first, _) = server.accept_request().await;
    // The server says it closes, but leaves its end open: rouse must not use it again.
    first.send(first_answer).await;
    let r = client.expect_response("GET").await;
    assert_eq!((r.status, r.text().as_str()), (200, "first"));

    client
        .send(b"GET /second HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        .await;
    let mut second = tokio::select! {
        accepted = server.accept_request() => {
            let (up, req) = accepted;
            assert_eq!(req.target, "/second");
            up
        }
        Some(reused) = first.head() => panic!("rouse sent {reused:?} on the connection the server closes"),
    };
    second
        .send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
        .await;
    let r = client.expect_response("GET").await;
    assert_eq!((r.status, r.text().as_str()), (200, "second"));
}

/// A server that closes an idle kept-alive connection: the next request still succeeds, on a
/// new connection (RFC 9112 §9.3.1: a client retries an idempotent request whose connection
/// closed before any answer).
#[tokio::test]
async fn a_server_closing_an_idle_connection_loses_no_request() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    for round in 0..5 {
        let mut client = Raw::connect(rouse.addr(), WITHIN).await;
        client
            .send(format!("GET /round/{round} HTTP/1.1\r\nHost: raw.test\r\n\r\n").as_bytes())
            .await;
        let (mut up, req) = server.accept_request().await;
        assert_eq!(req.target, format!("/round/{round}"));
        up.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await;
        let r = client.expect_response("GET").await;
        assert_eq!(r.status, 200, "round {round}");
        // Closed while idle in rouse's pool, just as the next request comes.
        drop(up);
    }
    still_serves(&rouse, &server).await;
}

/// A server that closes in the middle of a body: the client's connection is cut before the
/// response ends, never ended as if the body were whole.
#[tokio::test]
async fn a_server_closing_mid_body_cuts_the_client_connection() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    for response in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    ] {
        let mut client = Raw::connect(rouse.addr(), WITHIN).await;
        client
            .send(b"GET /cut HTTP/1.1\r\nHost: raw.test\r\n\r\n")
            .await;
        let (mut up, _) = server.accept_request().await;
        up.send(response).await;
        drop(up);
        let what = String::from_utf8_lossy(response);
        cut_or_502(&what, client.response("GET").await);
    }
    still_serves(&rouse, &server).await;
}

/// RFC 9112 §6.3: a response ends after its Content-Length bytes. Bytes the server sends past
/// them, in the same read as the body's last ones, are neither passed on nor taken for the
/// next response: the client gets exactly the body, and that server connection is closed,
/// never reused. The body's end comes in a later read than its head, as a large body's does:
/// a short one (copied out of the read buffer) and a long one (the buffer handed on).
#[tokio::test]
async fn bytes_past_a_content_length_are_not_passed_on() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    for rest in [5, 40_000] {
        past_a_content_length(&rouse, &server, rest).await;
    }
}

/// A response of "hello" and `rest` more bytes, its end sent with a next response's bytes.
async fn past_a_content_length(rouse: &Rouse, server: &RawServer, rest: usize) {
    let mut client = Raw::connect(rouse.addr(), WITHIN).await;
    client
        .send(b"GET /past HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        .await;
    let (mut up, _) = server.accept_request().await;
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\nhello",
        5 + rest
    );
    up.send(head.as_bytes()).await;
    // The head and the body's start reached the client: the rest is a read of its own.
    assert!(client.has_read(b"hello").await, "the body's start");
    let mut end = vec![b'w'; rest];
    end.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfalse");
    up.send(&end).await;
    let r = client.expect_response("GET").await;
    let body = format!("hello{}", "w".repeat(rest));
    assert_eq!(r.status, 200);
    assert!(r.text() == body, "{rest}: {} bytes", r.body.len());
    assert!(
        up.closes().await,
        "a server connection that sent more than its response stays open"
    );
    // The same client connection is served on, by a new server connection.
    next_is_served(&mut client, server).await;
}

/// RFC 9112 §6.3: the answer to HEAD, and 204 and 304 answers, end with their head whatever
/// Content-Length they carry: rouse neither waits for a body nor takes the next response's
/// bytes for one, and the server's connection serves the next request.
#[tokio::test]
async fn head_204_and_304_with_a_content_length_end_at_the_head() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    let mut client = Raw::connect(rouse.addr(), WITHIN).await;
    let cases: [(&str, &[u8], u16); 4] = [
        (
            "HEAD",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
            200,
        ),
        (
            "HEAD",
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n",
            201,
        ),
        (
            "GET",
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            204,
        ),
        (
            "GET",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\nETag: \"x\"\r\n\r\n",
            304,
        ),
    ];
    let mut up: Option<Upstream> = None;
    for (method, response, status) in cases {
        client
            .send(
                format!("{method} /bodiless/{status} HTTP/1.1\r\nHost: raw.test\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        let req = server.next_request(&mut up).await;
        assert_eq!(req.target, format!("/bodiless/{status}"));
        let conn = up.as_mut().expect("a server connection");
        conn.send(response).await;
        let r = client.expect_response(method).await;
        assert_eq!(r.status, status, "{method}: {}", r.text());
        assert!(r.body.is_empty(), "{method} {status}");
        if status == 204 {
            assert_eq!(
                r.header("content-length"),
                None,
                "RFC 9110 §8.6: not in a 204"
            );
        }
        if status == 200 {
            let length = r.header("content-length");
            assert!(
                length.is_none() || length.as_deref() == Some("1000"),
                "{length:?}"
            );
        }
    }
    client
        .send(b"GET /after HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        .await;
    let req = server.next_request(&mut up).await;
    assert_eq!(req.target, "/after");
    let conn = up.as_mut().expect("a server connection");
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nafter")
        .await;
    let r = client.expect_response("GET").await;
    assert_eq!((r.status, r.text().as_str()), (200, "after"));
}

/// A chunked response's trailer fields reach a client that said it takes them (`TE:
/// trailers`), after the whole body.
#[tokio::test]
async fn response_trailers_reach_a_client_that_accepts_them() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    let mut client = Raw::connect(rouse.addr(), WITHIN).await;
    client
        .send(b"GET /trailers HTTP/1.1\r\nHost: raw.test\r\nTE: trailers\r\n\r\n")
        .await;
    let (mut up, _) = server.accept_request().await;
    up.send(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n",
    )
    .await;
    let r = client.expect_response("GET").await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
    assert_eq!(
        r.trailers,
        [("x-checksum".to_owned(), b"42".to_vec())],
        "{:?}",
        r.headers
    );
    // A client that did not say it takes trailers gets the body whole all the same (the
    // trailers may be dropped, RFC 9110 §6.5.1).
    let mut client = Raw::connect(rouse.addr(), WITHIN).await;
    client
        .send(b"GET /trailers HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        .await;
    let mut up = Some(up);
    let req = server.next_request(&mut up).await;
    assert_eq!(req.target, "/trailers");
    let conn = up.as_mut().expect("a server connection");
    conn.send(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n",
    )
    .await;
    let r = client.expect_response("GET").await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
}

/// A response head past any sane limit (a 1 MiB field, or 10,000 fields) is 502 (nginx:
/// "upstream sent too big header"); never cut, never a hang, and rouse serves on.
#[tokio::test]
async fn an_oversized_response_head_is_502() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    let long = format!("X-Big: {}\r\n", "v".repeat(1 << 20));
    let many: String = (0..10_000).map(|i| format!("X-N{i}: {i}\r\n")).collect();
    for (what, fields) in [("a 1 MiB field", long), ("10,000 fields", many)] {
        let response = format!("HTTP/1.1 200 OK\r\n{fields}Content-Length: 2\r\n\r\nok");
        let (_c, _up, r) = scripted(&rouse, &server, "GET", response.as_bytes()).await;
        let r = r.expect("an answer").expect("an answer");
        assert_eq!(r.status, 502, "{what}");
    }
    still_serves(&rouse, &server).await;
}

/// A server may answer before it has read the request body (a 413, a redirect): the client
/// gets that answer, whether rouse read the body first (the default) or streams it.
#[tokio::test]
async fn an_answer_sent_before_the_body_was_read_reaches_the_client() {
    for extra in ["", "request_buffering = false"] {
        let server = RawServer::bind(WITHIN).await;
        let rouse = rouse_before(&server, extra).await;
        let body = vec![b'b'; 4 << 20];
        let addr = rouse.addr();
        let client = tokio::spawn(async move {
            let mut client = Raw::connect(addr, WITHIN).await;
            let head = format!(
                "POST /upload HTTP/1.1\r\nHost: raw.test\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            client.send(&[head.as_bytes(), &body].concat()).await;
            client.response("POST").await
        });
        let mut up = server.accept().await;
        let req = up.head().await.expect("a request");
        assert_eq!(req.target, "/upload", "{extra}");
        up.send(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig",
        )
        .await;
        // Then reads what comes, as servers do before closing, so no reset races the answer.
        let _ = up.read_to_end().await;
        let r = client
            .await
            .expect("the client does not panic")
            .unwrap_or_else(|e| panic!("{extra}: {e}"))
            .unwrap_or_else(|| panic!("{extra}: no answer"));
        assert_eq!((r.status, r.text().as_str()), (413, "big"), "{extra}");
    }
}

/// Bytes a server sends past the end of a response are no answer to anything: the next
/// request, on whatever connection, gets the server's answer to it, never those bytes (a
/// response queued ahead would answer the wrong client).
#[tokio::test]
async fn bytes_after_a_response_never_answer_the_next_request() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    let mut up = None;
    for round in 0..3 {
        let mut client = Raw::connect(rouse.addr(), WITHIN).await;
        client
            .send(format!("GET /round/{round} HTTP/1.1\r\nHost: raw.test\r\n\r\n").as_bytes())
            .await;
        let req = server.next_request(&mut up).await;
        assert_eq!(req.target, format!("/round/{round}"));
        let conn = up.as_mut().expect("a server connection");
        conn.send(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nround {round}\
                 HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
            )
            .as_bytes(),
        )
        .await;
        let r = client.expect_response("GET").await;
        assert_eq!((r.status, r.text()), (200, format!("round {round}")));
    }
}

/// Hop-by-hop fields of a response (RFC 9110 §7.6.1: those `Connection` names, and
/// `Keep-Alive`) stay with the server; the others reach the client.
#[tokio::test]
async fn hop_by_hop_fields_of_a_response_stay_with_the_server() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    let (_c, _up, r) = scripted(
        &rouse,
        &server,
        "GET",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
          Keep-Alive: timeout=5\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let r = r.expect("an answer").expect("an answer");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(r.header("x-kept").as_deref(), Some("1"));
    for gone in ["x-secret", "keep-alive"] {
        assert_eq!(
            r.header(gone),
            None,
            "{gone} reached the client: {:?}",
            r.headers
        );
    }
}

/// Responses that are no HTTP/1.1 (garbage, a status past three digits, a broken field
/// line) are 502, and the connection to that server is not used again.
#[tokio::test]
async fn a_response_that_is_no_http_is_502() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    for response in [
        &b"hello, this is no HTTP\r\n\r\n"[..],
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\0\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: empty name\r\nContent-Length: 0\r\n\r\n",
    ] {
        let what = String::from_utf8_lossy(response);
        let (_c, mut up, r) = scripted(&rouse, &server, "GET", response).await;
        refused_with_502(&what, r, &mut up).await;
    }
    still_serves(&rouse, &server).await;
}

/// RFC 9112 §5.2: an obs-fold line in a response is refused (502) or replaced by spaces: the
/// client never gets a folded field. A status line without reason phrase, or with an unknown
/// code, is fine; so are framing fields in any case, with OWS, or a length with leading zeros.
#[tokio::test]
async fn response_heads_are_read_as_rfc_9112_says() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    let (_c, _up, r) = scripted(
        &rouse,
        &server,
        "GET",
        b"HTTP/1.1 200 OK\r\nX-Folded: one\r\n two\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let r = r.expect("an answer").expect("an answer");
    if r.status != 502 {
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
        let folded = r.header("x-folded").unwrap_or_default();
        assert!(
            !folded.contains('\n') && !folded.contains('\r'),
            "{folded:?}"
        );
        assert!(r.header("two").is_none(), "the fold became a field");
    }

    for (response, status, body) in [
        (
            &b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"[..],
            200,
            "ok",
        ),
        (
            b"HTTP/1.1 299 Whatever It Is\r\nContent-Length: 3\r\n\r\nodd",
            299,
            "odd",
        ),
        (b"HTTP/1.1 599 \r\nContent-Length: 3\r\n\r\nodd", 599, "odd"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 002\r\n\r\nok",
            200,
            "ok",
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length:\t 2 \r\n\r\nok",
            200,
            "ok",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            200,
            "ok",
        ),
    ] {
        let (_c, _up, r) = scripted(&rouse, &server, "GET", response).await;
        let r = r.expect("an answer").expect("an answer");
        assert_eq!((r.status, r.text().as_str()), (status, body));
    }
}

/// A response arriving one byte per write (head, chunk sizes with extensions, upper-case hex
/// and leading zeros, trailers) reaches the client whole.
#[tokio::test]
async fn a_response_arriving_one_byte_at_a_time_is_whole() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    let mut client = Raw::connect(rouse.addr(), WITHIN).await;
    client
        .send(b"GET /slow HTTP/1.1\r\nHost: raw.test\r\nTE: trailers\r\n\r\n")
        .await;
    let (mut up, _) = server.accept_request().await;
    up.send_bytewise(
        b"HTTP/1.1 200 OK\r\nX-Long-Name: a value\r\nTransfer-Encoding: chunked\r\n\
          Trailer: X-T\r\n\r\n5;ext=\"q\"\r\nhello\r\n00A\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
    )
    .await;
    let r = client.expect_response("GET").await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello0123456789"));
    assert_eq!(r.header("x-long-name").as_deref(), Some("a value"));
    assert_eq!(r.trailers, [("x-t".to_owned(), b"1".to_vec())]);
}

/// Response heads within the limits pass whole: 90 fields, a 16 KiB one, repeated names in
/// their order (a proxy with a small fixed field table would refuse or drop them).
#[tokio::test]
async fn large_response_heads_within_limits_pass_whole() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    let many: String = (0..90).map(|i| format!("X-N{i}: {i}\r\n")).collect();
    let big = "v".repeat(16 * 1024);
    let response = format!(
        "HTTP/1.1 200 OK\r\n{many}X-Big: {big}\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\
         Content-Length: 2\r\n\r\nok"
    );
    let (_c, _up, r) = scripted(&rouse, &server, "GET", response.as_bytes()).await;
    let r = r.expect("an answer").expect("an answer");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    for i in 0..90 {
        assert_eq!(r.header(&format!("x-n{i}")), Some(i.to_string()), "x-n{i}");
    }
    assert_eq!(r.header("x-big").map(|v| v.len()), Some(big.len()));
    let cookies: Vec<&[u8]> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.as_slice())
        .collect();
    assert_eq!(
        cookies,
        [&b"a=1"[..], b"b=2"],
        "Set-Cookie lines kept apart, in order"
    );
}

/// `Expect: 100-continue` from a client that waits for it: the client gets `100 Continue`
/// (from rouse when it reads the body first, from rouse or the server when it streams it), its
/// body reaches the server whole, and the server's answer reaches the client.
#[tokio::test]
async fn expect_100_continue_reaches_the_server_and_back() {
    for extra in ["", "request_buffering = false"] {
        let server = RawServer::bind(WITHIN).await;
        let rouse = rouse_before(&server, extra).await;
        let addr = rouse.addr();
        let client = tokio::spawn(async move {
            let mut c = Raw::connect(addr, WITHIN).await;
            c.send(
                b"PUT /upload HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 5\r\n\
                  Expect: 100-continue\r\n\r\n",
            )
            .await;
            let interim = c.expect_interim().await;
            c.send(b"hello").await;
            (interim, c.expect_response("PUT").await)
        });
        let mut up = server.accept().await;
        let req = up.head().await.expect("a request");
        if req.header("expect").is_some() {
            up.send(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        }
        let (body, _) = up.body_of(&req).await.expect("the whole body");
        assert_eq!(body, b"hello", "{extra}");
        up.send(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone")
            .await;
        let (interim, r) = client.await.expect("the client does not panic");
        assert_eq!(interim, 100, "{extra}");
        assert_eq!((r.status, r.text().as_str()), (201, "done"), "{extra}");
    }
}

/// A client that leaves in the middle of a response: what the server still sends of that
/// body is never read as the answer to the next request (the connection to the server is
/// read to the end of that response, or closed), whether rouse buffers responses or not.
#[tokio::test]
async fn a_response_left_mid_body_never_leaks_into_the_next() {
    for extra in ["", "response_buffering = false"] {
        let server = RawServer::bind(WITHIN).await;
        let rouse = rouse_before(&server, extra).await;
        let half = vec![b'x'; 256 * 1024];
        let mut gone = Raw::connect(rouse.addr(), WITHIN).await;
        gone.send(b"GET /big HTTP/1.1\r\nHost: raw.test\r\n\r\n")
            .await;
        let (up, _) = server.accept_request().await;
        let mut up = Some(up);
        let conn = up.as_mut().expect("a server connection");
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            2 * half.len()
        );
        conn.send(&[head.as_bytes(), &half].concat()).await;
        drop(gone);
        // The rest, into a connection rouse may have closed: written in the background, the
        // socket's buffers may not take it all at once.
        let mut rest = up.take().expect("a server connection");
        let tail = half.clone();
        let writer = tokio::spawn(async move {
            rest.send(&tail).await;
            rest
        });
        let mut next = Raw::connect(rouse.addr(), WITHIN).await;
        next.send(b"GET /next HTTP/1.1\r\nHost: raw.test\r\n\r\n")
            .await;
        up = Some(writer.await.expect("the writer does not panic"));
        let req = server.next_request(&mut up).await;
        assert_eq!(req.target, "/next", "{extra}");
        let conn = up.as_mut().expect("a server connection");
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
            .await;
        let r = next.expect_response("GET").await;
        assert_eq!((r.status, r.text().as_str()), (200, "next"), "{extra}");
    }
}

/// RFC 9112 §6.3: a response with both Transfer-Encoding and Content-Length is framed by
/// Transfer-Encoding if it is forwarded at all, without its Content-Length; or refused, 502.
/// Either way the client never gets both: with the server's `Content-Length: 3` beside 5 bytes
/// of chunks, a client would take "hel" for the whole answer.
#[tokio::test]
async fn a_response_with_content_length_and_chunked_is_framed_by_te_or_502() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    for body in [Body::None, Body::Chunked] {
        for fields in [
            "Transfer-Encoding: chunked\r\nContent-Length: 3",
            "Content-Length: 100\r\nTransfer-Encoding: chunked",
        ] {
            let what = format!("{body:?} request, {fields}");
            let response = format!("HTTP/1.1 200 OK\r\n{fields}\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
            let (_c, _up, r) =
                scripted_with(&rouse, &server, "POST", body, response.as_bytes()).await;
            let r = r.expect("an answer").expect("an answer");
            match r.status {
                502 => {}
                200 => {
                    assert_eq!(r.text(), "hello", "{what}: framed by the chunks");
                    let te = r.header("transfer-encoding");
                    let cl = r.header("content-length");
                    assert!(
                        te.is_none() || cl.is_none(),
                        "{what}: the client got both: {:?}",
                        r.headers
                    );
                    assert!(cl.is_none() || cl.as_deref() == Some("5"), "{what}: {cl:?}");
                }
                s => panic!("{what}: {s} {}", r.text()),
            }
        }
    }
    still_serves(&rouse, &server).await;
}

/// RFC 9110 §15.2.2: a server sends 101 only to a request that asked to upgrade; a proxy that
/// passes an unasked 101 on turns the client's connection into a raw tunnel to that server,
/// past routing and every check (the "WebSocket smuggling" pattern). It must be 502, and that
/// server connection is not used again.
#[tokio::test]
async fn an_unasked_101_is_502() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    for body in [Body::None, Body::Chunked] {
        let (_c, mut up, r) = scripted_with(
            &rouse,
            &server,
            "POST",
            body,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n",
        )
        .await;
        refused_with_502(&format!("{body:?} request"), r, &mut up).await;
    }
    still_serves(&rouse, &server).await;
}

/// RFC 9110 §15.2: a proxy forwards 1xx answers (here 103 Early Hints, which lets a browser
/// preload while the server still works) ahead of the final one, on the same connection. The
/// HTTP/1.1 fast path does; hyper's path, which serves chunked request bodies, drops them
/// (hyper's client reads past 1xx answers and its server cannot send them).
#[tokio::test]
async fn early_hints_reach_the_client_before_the_final_answer() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    let (_c, _up, r) = scripted(
        &rouse,
        &server,
        "GET",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let r = r.expect("an answer").expect("an answer");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(r.interim, [103], "the 103 went missing");
}

/// A request the fast path declines is hyper's alone: the connection comes back to the fast
/// path after its answer (hyper kept it for good before). Who answered shows in the field
/// names: the fast path passes the server's head on as it came (`X-Case`), hyper writes names
/// in lower case. Chunked and `Expect: 100-continue` uploads give it back, and no answer says
/// `Connection: close`; a request pipelined after one, which hyper reads with it, or a fourth
/// declined request in a row leaves the connection with hyper, as before. A request hyper closes after (both Transfer-Encoding and
/// Content-Length, or `Connection: close`) closes it, and so does one answered before its
/// body was in (413): each answer says `Connection: close`, and what followed is never served.
#[tokio::test]
async fn a_declined_request_gives_the_connection_back_to_the_fast_path() {
    let server = std::sync::Arc::new(RawServer::bind(WITHIN).await);
    let rouse = rouse_before(&server, "max_request_body = \"1KiB\"").await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let serving = tokio::spawn({
        let (server, seen) = (server.clone(), seen.clone());
        async move {
            loop {
                let mut up = server.accept().await;
                let seen = seen.clone();
                tokio::spawn(async move {
                    while let Some(req) = up.request().await {
                        seen.lock().unwrap().push(req.target.clone());
                        up.send(b"HTTP/1.1 200 OK\r\nX-Case: Kept\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                    }
                });
            }
        }
    });
    let by = |r: &RawResponse| {
        assert_eq!((r.status, r.text().as_str()), (200, "ok"));
        // A connection that stays open is not said to close (a client would believe it).
        assert_eq!(r.header("connection"), None, "{:?}", r.headers);
        match (
            r.names.contains(&"X-Case".into()),
            r.names.contains(&"x-case".into()),
        ) {
            (true, false) => "fast path",
            (false, true) => "hyper",
            _ => panic!("no X-Case in {:?}", r.names),
        }
    };
    let chunked = |target: &str| {
        format!(
            "POST {target} HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding: chunked\r\n\r\n\
             2\r\nhi\r\n0\r\n\r\n"
        )
    };
    let get = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: raw.test\r\n\r\n");

    let mut c = Raw::connect(rouse.addr(), WITHIN).await;
    for (request, method, who) in [
        (get("/first"), "GET", "fast path"),
        (chunked("/chunked"), "POST", "hyper"),
        (get("/after-chunked"), "GET", "fast path"),
        (
            "PUT /expect HTTP/1.1\r\nHost: raw.test\r\nExpect: 100-continue\r\n\
             Content-Length: 2\r\n\r\nhi"
                .to_owned(),
            "PUT",
            "hyper",
        ),
        (get("/after-expect"), "GET", "fast path"),
    ] {
        c.send(request.as_bytes()).await;
        let r = c.expect_response(method).await;
        assert_eq!(by(&r), who, "{request:?}");
    }
    // Pipelined: hyper reads the request after the declined one with it, and then keeps the
    // connection (as it kept every one before): answered in order, and open.
    c.send(format!("{}{}", chunked("/pipelined-chunked"), get("/pipelined-get")).as_bytes())
        .await;
    assert_eq!(by(&c.expect_response("POST").await), "hyper");
    assert_eq!(by(&c.expect_response("GET").await), "hyper");
    c.send(get("/then").as_bytes()).await;
    assert_eq!(by(&c.expect_response("GET").await), "hyper");
    // Declined three times in a row, it still comes back; the fourth time, hyper keeps it (a
    // client that only uploads would pay for each hand-back).
    let mut c = Raw::connect(rouse.addr(), WITHIN).await;
    for (uploads, then) in [(3, "fast path"), (4, "hyper")] {
        for i in 0..uploads {
            c.send(chunked(&format!("/row-{uploads}-{i}")).as_bytes())
                .await;
            assert_eq!(by(&c.expect_response("POST").await), "hyper");
        }
        c.send(get(&format!("/after-{uploads}")).as_bytes()).await;
        assert_eq!(by(&c.expect_response("GET").await), then, "after {uploads}");
    }
    // Each on a connection of its own: answered, then closed. What followed is never served:
    // what a Content-Length reader would take for the next request, the request after
    // `Connection: close`, the body past the limit (which holds requests).
    let body = get("/in-the-body").repeat(100);
    for (what, request, status) in [
        (
            "both framings",
            "POST /both HTTP/1.1\r\nHost: raw.test\r\nContent-Length: 4\r\n\
             Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n\
             GET /smuggled HTTP/1.1\r\nHost: raw.test\r\n\r\n"
                .to_owned(),
            200,
        ),
        (
            "Connection: close",
            chunked("/close").replace("Host:", "Connection: close\r\nHost:") + &get("/after"),
            200,
        ),
        (
            "a body past max_request_body",
            format!(
                "POST /too-large HTTP/1.1\r\nHost: raw.test\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            413,
        ),
    ] {
        let mut c = Raw::connect(rouse.addr(), WITHIN).await;
        c.send(request.as_bytes()).await;
        let r = c.expect_response("POST").await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let close = r.header("connection");
        assert_eq!(close.as_deref(), Some("close"), "{what}: {:?}", r.headers);
        assert!(c.closes().await, "{what}: the connection closes");
    }

    let seen = seen.lock().unwrap().clone();
    serving.abort();
    assert_eq!(
        seen,
        [
            "/first",
            "/chunked",
            "/after-chunked",
            "/expect",
            "/after-expect",
            "/pipelined-chunked",
            "/pipelined-get",
            "/then",
            "/row-3-0",
            "/row-3-1",
            "/row-3-2",
            "/after-3",
            "/row-4-0",
            "/row-4-1",
            "/row-4-2",
            "/row-4-3",
            "/after-4",
            "/both",
            "/close",
        ]
    );
}

/// Sends `request` from `client`, has the server answer `answer` (on the kept connection `up`
/// or a new one, then in `up`), and returns what the server got and what the client read.
async fn through(
    client: &mut Raw,
    server: &RawServer,
    up: &mut Option<Upstream>,
    (request, method): (&str, &str),
    answer: &[u8],
) -> (raw::server::Forwarded, RawResponse) {
    client.send(request.as_bytes()).await;
    let req = server.next_request(up).await;
    up.as_mut().expect("a server connection").send(answer).await;
    (req, client.expect_response(method).await)
}

/// An HTTP/1.0 client is served by the fast path (the server's `X-Case` comes back as it was
/// sent), as RFC 9112 and 9110 say for one: its request goes to the server as HTTP/1.1 (the
/// server's connection stays in the pool); it never gets a 1xx (RFC 9110 §15.2) nor a chunked
/// body, which it reads unchunked to the close instead; its connection stays open after an
/// answer only when it asked (`Connection: keep-alive`), and the answer then says
/// `keep-alive` (RFC 9112 §9.3), rouse's own answers included. A request the fast path
/// declines (a body past 64 KiB) is hyper's, and the connection comes back after it.
#[tokio::test]
async fn http10_clients_are_served_by_the_fast_path_as_rfc_9112_says() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = rouse_before(&server, "").await;
    let keep = "Connection: keep-alive\r\n";
    let get = |target: &str, extra: &str| {
        format!("GET {target} HTTP/1.0\r\nHost: raw.test\r\n{extra}\r\n")
    };
    let fast = |r: &RawResponse| {
        assert!(
            r.names.contains(&"X-Case".into()),
            "not the fast path's: {:?}",
            r.names
        );
        assert_eq!(r.header("transfer-encoding"), None, "{:?}", r.headers);
        r.header("connection")
    };
    let ok = b"HTTP/1.1 200 OK\r\nX-Case: Kept\r\nContent-Length: 2\r\n\r\nok";
    let mut up = None;
    let mut c = Raw::connect(rouse.addr(), WITHIN).await;
    // A 103 and a 200: the 200 alone, and the connection kept.
    let hinted = [
        &b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"[..],
        ok,
    ]
    .concat();
    let first = get("/first", keep);
    let (req, r) = through(&mut c, &server, &mut up, (&first, "GET"), &hinted).await;
    let head = String::from_utf8_lossy(&req.raw_head);
    assert!(head.starts_with("GET /first HTTP/1.1\r\n"), "{head}");
    assert_eq!(req.header("connection"), None, "{head}");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(
        r.interim,
        Vec::<u16>::new(),
        "a 1xx went to an HTTP/1.0 client"
    );
    assert_eq!(fast(&r).as_deref(), Some("keep-alive"));
    // A body with its length, and a HEAD: still kept.
    let post =
        format!("POST /post HTTP/1.0\r\nHost: raw.test\r\n{keep}Content-Length: 5\r\n\r\nhello");
    let created = b"HTTP/1.1 201 Created\r\nX-Case: Kept\r\nContent-Length: 0\r\n\r\n";
    let (req, r) = through(&mut c, &server, &mut up, (&post, "POST"), created).await;
    assert_eq!(
        (req.target.as_str(), &req.body[..]),
        ("/post", &b"hello"[..])
    );
    assert_eq!((r.status, fast(&r).as_deref()), (201, Some("keep-alive")));
    let head = get("/head", keep).replacen("GET", "HEAD", 1);
    let length_only = b"HTTP/1.1 200 OK\r\nX-Case: Kept\r\nContent-Length: 9\r\n\r\n";
    let (req, r) = through(&mut c, &server, &mut up, (&head, "HEAD"), length_only).await;
    assert_eq!(req.method, "HEAD");
    assert_eq!((r.status, fast(&r).as_deref()), (200, Some("keep-alive")));
    // A body past the fast path's 64 KiB is hyper's (it writes names in lower case), and the
    // connection comes back after it: hyper keeps a 1.0 connection that asked.
    let upload = format!(
        "POST /upload HTTP/1.0\r\nHost: raw.test\r\n{keep}Content-Length: 70000\r\n\r\n{}",
        "u".repeat(70_000)
    );
    let (req, r) = through(&mut c, &server, &mut up, (&upload, "POST"), created).await;
    assert_eq!((req.target.as_str(), req.body.len()), ("/upload", 70_000));
    assert_eq!(r.status, 201);
    assert!(
        r.names.contains(&"x-case".into()),
        "not hyper's: {:?}",
        r.names
    );
    assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
    let after = get("/after-upload", keep);
    let (_, r) = through(&mut c, &server, &mut up, (&after, "GET"), ok).await;
    assert_eq!(fast(&r).as_deref(), Some("keep-alive"));
    // rouse's own answer (a 502 for a head it cannot frame) keeps it too.
    let bad = b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n";
    let (_, r) = through(&mut c, &server, &mut up, (&get("/bad", keep), "GET"), bad).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
    // That server connection is closed; the next request opens another.
    up = None;
    // A chunked body: its data alone, to the close, which ends the connection.
    let chunked = b"HTTP/1.1 200 OK\r\nX-Case: Kept\r\nTransfer-Encoding: chunked\r\n\
                    Content-Length: 99\r\n\r\n2\r\nhi\r\n4\r\n you\r\n0\r\nX-Sum: 1\r\n\r\n";
    let (_, r) = through(
        &mut c,
        &server,
        &mut up,
        (&get("/chunked", keep), "GET"),
        chunked,
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "hi you"));
    assert_eq!(fast(&r).as_deref(), Some("close"));
    assert_eq!(r.header("content-length"), None, "{:?}", r.headers);
    assert!(
        c.closes().await,
        "the connection outlives a body read to the close"
    );
    // Without keep-alive: answered, said to close, closed.
    let mut c = Raw::connect(rouse.addr(), WITHIN).await;
    let (req, r) = through(&mut c, &server, &mut up, (&get("/once", ""), "GET"), ok).await;
    assert_eq!(req.target, "/once");
    assert_eq!(
        (r.text().as_str(), fast(&r).as_deref()),
        ("ok", Some("close"))
    );
    assert!(
        c.closes().await,
        "an HTTP/1.0 connection without keep-alive stays open"
    );
    // A body that ends with the server's connection: the same, unchunked, to the close.
    let mut c = Raw::connect(rouse.addr(), WITHIN).await;
    c.send(get("/to-the-close", keep).as_bytes()).await;
    let _ = server.next_request(&mut up).await;
    let mut server_up = up.take().expect("a server connection");
    server_up
        .send(b"HTTP/1.1 200 OK\r\nX-Case: Kept\r\n\r\nuntil the end")
        .await;
    drop(server_up);
    let r = c.expect_response("GET").await;
    assert_eq!(
        (r.text().as_str(), fast(&r).as_deref()),
        ("until the end", Some("close"))
    );
    assert!(c.closes().await);
    still_serves(&rouse, &server).await;
}
