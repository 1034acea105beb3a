//! HTTP/2 clients in front of an HTTP/1.1 server (`protocol = "http1"`): a request without a
//! body is sent on rouse's raw pooled connections (`h1::relay`), not through hyper's client.
//! A real HTTP/2 client (hyper's) talks to a real rouse in front of a scripted server
//! (`raw::server`), so each case sends exactly the bytes it needs: the request as the server
//! gets it, every framing a response may have, interim answers, trailers, broken bodies, and
//! the connection kept for the next request only when the last one ended cleanly.

mod common;
mod raw;

use std::time::Duration;

use bytes::Bytes;
use common::{start_rouse, static_upstream};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use raw::server::{RawServer, Upstream};
use rouse::Rouse;
use tokio::time::timeout;

const WITHIN: Duration = Duration::from_secs(20);

/// What the HTTP/2 client got: the head, the body and the trailers, or why not.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
}

/// A scripted server, rouse in front of it, and an HTTP/2 client connection to rouse.
async fn start() -> (RawServer, Rouse, SendRequest<Empty<Bytes>>) {
    let server = RawServer::bind(WITHIN).await;
    let rouse = start_rouse(&static_upstream("raw", &[], "", &[server.addr()])).await;
    let send = common::h2_connection(rouse.addr()).await;
    (server, rouse, send)
}

/// Sends `method path` on a new stream; the whole answer, or the error that ended it.
async fn ask(
    send: &mut SendRequest<Empty<Bytes>>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://raw.test{path}"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req.body(Empty::new()).expect("a request");
    let asked = async {
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.map_err(|e| e.to_string())?;
        let trailers = collected.trailers().cloned();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes().to_vec(),
            trailers,
        })
    };
    timeout(WITHIN, asked)
        .await
        .unwrap_or_else(|_| Err("no answer in time".into()))
}

/// Asks `path` on a new stream while the server answers `response` to it (on `up` if it comes
/// there, else on a new connection, left in `up`).
async fn scripted(
    send: &mut SendRequest<Empty<Bytes>>,
    server: &RawServer,
    up: &mut Option<Upstream>,
    method: &str,
    response: &'static [u8],
) -> Result<Answer, String> {
    let asking = ask(send, method, "/scripted", &[]);
    let serving = async {
        let req = server.next_request(up).await;
        assert_eq!(
            (req.method.as_str(), req.target.as_str()),
            (method, "/scripted")
        );
        up.as_mut()
            .expect("a server connection")
            .send(response)
            .await;
    };
    let (answer, ()) = tokio::join!(asking, serving);
    answer
}

/// The body of the answer to a GET the server answers `response` to (which must come whole).
async fn body_for(
    send: &mut SendRequest<Empty<Bytes>>,
    server: &RawServer,
    up: &mut Option<Upstream>,
    response: &'static [u8],
) -> Vec<u8> {
    scripted(send, server, up, "GET", response)
        .await
        .unwrap_or_else(|e| panic!("no whole answer: {e}"))
        .body
}

#[tokio::test]
async fn a_request_reaches_the_server_as_http11_and_its_connection_is_kept_for_the_next() {
    let (server, rouse, mut send) = start().await;
    let asking = ask(
        &mut send,
        "GET",
        "/a?b=c",
        &[
            ("x-app", "kept"),
            ("te", "trailers"),
            ("x-forwarded-for", "192.0.2.7"),
        ],
    );
    let serving = async {
        let (mut up, req) = server.accept_request().await;
        up.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Served: yes\r\nKeep-Alive: timeout=5\r\n\r\nhello")
            .await;
        (up, req)
    };
    let (answer, (up, req)) = tokio::join!(asking, serving);
    let head = String::from_utf8_lossy(&req.raw_head).into_owned();
    assert!(head.starts_with("GET /a?b=c HTTP/1.1\r\n"), "{head}");
    assert_eq!(req.header("host"), Some("raw.test"), "{head}");
    assert_eq!(req.header("x-app"), Some("kept"), "{head}");
    assert_eq!(
        req.header("x-forwarded-for"),
        Some("192.0.2.7, 127.0.0.1"),
        "{head}"
    );
    assert_eq!(req.header("x-forwarded-proto"), Some("http"), "{head}");
    assert_eq!(req.header("x-forwarded-host"), Some("raw.test"), "{head}");
    assert!(req.header("x-request-id").is_some(), "{head}");
    for gone in ["te", "transfer-encoding"] {
        assert_eq!(req.header(gone), None, "{gone}: {head}");
    }
    let answer = answer.expect("an answer");
    assert_eq!(
        (answer.status, answer.body.as_slice()),
        (StatusCode::OK, &b"hello"[..])
    );
    assert_eq!(answer.headers["x-served"], "yes");
    assert!(
        answer.headers.get("keep-alive").is_none(),
        "hop-by-hop: {:?}",
        answer.headers
    );

    // The next request (a new stream, even a new client connection) finds the same server
    // connection, with nothing left over on it.
    let mut up = Some(up);
    let mut other = common::h2_connection(rouse.addr()).await;
    for send in [&mut send, &mut other] {
        let asking = ask(send, "GET", "/again", &[]);
        let serving = async {
            let conn = up.as_mut().expect("the kept connection");
            let req = conn
                .request()
                .await
                .expect("the next request on the same connection");
            assert_eq!(req.target, "/again");
            conn.send(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        };
        let (answer, ()) = tokio::join!(asking, serving);
        assert_eq!(answer.expect("an answer").status, StatusCode::NO_CONTENT);
    }
}

#[tokio::test]
async fn every_framing_of_a_response_reaches_the_client_whole() {
    let (server, _rouse, mut send) = start().await;
    let mut up = None;
    let cases: [(&str, &[u8], &[u8]); 5] = [
        ("content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", b"hello world"),
        (
            "chunked, with extensions",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"hello world",
        ),
        ("empty", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b""),
        ("204", b"HTTP/1.1 204 No Content\r\n\r\n", b""),
        (
            "304 with a length",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n",
            b"",
        ),
    ];
    for (what, response, body) in cases {
        let answer = scripted(&mut send, &server, &mut up, "GET", response).await;
        let answer = answer.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(answer.body, body, "{what}");
        assert!(answer.headers.get("transfer-encoding").is_none(), "{what}");
    }
    // A body that ends with the connection (the server closes it after the data) is whole.
    let asking = ask(&mut send, "GET", "/scripted", &[]);
    let serving = async {
        let req = server.next_request(&mut up).await;
        assert_eq!(req.target, "/scripted");
        let mut conn = up.take().expect("a server connection");
        conn.send(b"HTTP/1.1 200 OK\r\n\r\nuntil the end").await;
        drop(conn);
    };
    let (answer, ()) = tokio::join!(asking, serving);
    let answer = answer.expect("a close-delimited answer");
    assert_eq!(answer.body, b"until the end");
    // HEAD: a length but no body.
    let answer = scripted(
        &mut send,
        &server,
        &mut up,
        "HEAD",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
    )
    .await
    .expect("a HEAD answer");
    assert_eq!((answer.status, answer.body.len()), (StatusCode::OK, 0));
    assert_eq!(answer.headers["content-length"], "1234");
}

#[tokio::test]
async fn interim_answers_are_passed_over_and_trailers_reach_the_client() {
    let (server, _rouse, mut send) = start().await;
    let mut up = None;
    let answer = scripted(
        &mut send,
        &server,
        &mut up,
        "GET",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n\
          HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
          5\r\nhello\r\n0\r\nX-Checksum: 42\r\n\r\n",
    )
    .await
    .expect("the final answer");
    assert_eq!(
        (answer.status, answer.body.as_slice()),
        (StatusCode::OK, &b"hello"[..])
    );
    let trailers = answer.trailers.expect("trailers");
    assert_eq!(trailers["x-checksum"], "42");
    // And the connection serves the next request.
    let body = body_for(
        &mut send,
        &server,
        &mut up,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    assert_eq!(body, b"ok");
}

#[tokio::test]
async fn broken_responses_are_502_or_a_reset_stream_and_never_reused() {
    let (server, _rouse, mut send) = start().await;
    // Before the body: rouse answers 502 itself and closes the server's connection.
    for (what, response) in [
        (
            "two lengths",
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx"[..],
        ),
        ("no HTTP", b"SSH-2.0-OpenSSH\r\n\r\n"),
        (
            "an unasked 101",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        ),
    ] {
        let mut up = None;
        let answer = scripted(&mut send, &server, &mut up, "GET", response)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{what}");
        assert!(
            up.expect("a connection").closes().await,
            "{what}: the connection is closed"
        );
    }
    // Mid-body: the client's stream ends in an error, never as if complete.
    for (what, response) in [
        (
            "a bad chunk size",
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"[..],
        ),
        (
            "chunk data without its CRLF",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhelloX\r\n0\r\n\r\n",
        ),
    ] {
        let mut up = None;
        let answer = scripted(&mut send, &server, &mut up, "GET", response).await;
        assert!(answer.is_err(), "{what}: {answer:?}");
        assert!(
            up.expect("a connection").closes().await,
            "{what}: the connection is closed"
        );
    }
    // The server closing mid-body: the client sees an error, not a short body.
    let mut up = None;
    let asking = ask(&mut send, "GET", "/scripted", &[]);
    let serving = async {
        let req = server.next_request(&mut up).await;
        assert_eq!(req.target, "/scripted");
        let mut conn = up.take().expect("a server connection");
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
            .await;
        drop(conn);
    };
    let (answer, ()) = tokio::join!(asking, serving);
    assert!(answer.is_err(), "a truncated body: {answer:?}");
    // Bytes after a response never answer the next request, which the server answers itself
    // (on a new connection: the one with stray bytes is not kept).
    let mut up = None;
    let body = body_for(&mut send, &server, &mut up, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale").await;
    assert_eq!(body, b"ok");
    let body = body_for(
        &mut send,
        &server,
        &mut up,
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext",
    )
    .await;
    assert_eq!(body, b"next");
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_loses_no_request() {
    let (server, _rouse, mut send) = start().await;
    let mut up = None;
    let body = body_for(
        &mut send,
        &server,
        &mut up,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
    )
    .await;
    assert_eq!(body, b"a");
    // The server closes the idle connection; the next request goes on a new one, answered.
    drop(up.take());
    let body = body_for(
        &mut send,
        &server,
        &mut up,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
    )
    .await;
    assert_eq!(body, b"b");
}
