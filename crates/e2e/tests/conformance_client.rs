//! Requests per RFC 9112, over raw TCP to a real rouse: the cases conformance.rs leaves out,
//! where a hand-written parser or body framer goes wrong. Each says what the client is
//! answered and what the server received: the test backend's `/inspect` echoes the request it
//! got and its counters say how many it got; a scripted server (`raw::server`) shows the bytes.
//!
//! The rule throughout: the server never sees two requests where the client sent one, nor one
//! where the client sent none (a body cut short), nor bytes of one request inside another.

mod common;
mod raw;

use std::time::Duration;

use common::{start_rouse, static_upstream};
use raw::server::RawServer;
use raw::{Raw, RawResponse, exchange};
use rouse::Rouse;
use rouse_e2e::{InProcessBackend, spawn_in_process};

const WITHIN: Duration = Duration::from_secs(20);

/// The two ways rouse passes a request body: read whole first (the default), or streamed.
const BODY_MODES: [&str; 2] = ["", "request_buffering = false"];

/// rouse in front of one test backend, for every host.
struct Site {
    rouse: Rouse,
    backend: InProcessBackend,
}

impl Site {
    async fn with(extra: &str) -> Site {
        let backend = spawn_in_process("a").await;
        let rouse = start_rouse(&static_upstream("a", &[], extra, &[backend.addr()])).await;
        Site { rouse, backend }
    }

    async fn connect(&self) -> Raw {
        Raw::connect(self.rouse.addr(), WITHIN).await
    }

    async fn send(&self, request: &[u8], method: &str) -> RawResponse {
        exchange(self.rouse.addr(), request, method).await
    }

    fn served(&self) -> u64 {
        self.backend.stats().requests
    }
}

/// Each of `cases` is answered with one of `statuses` by rouse itself, the connection is
/// closed after it (RFC 9112 §6.1, §6.3: the framing is lost), and none reaches the server.
async fn refused(site: &Site, cases: &[(&str, String)], statuses: &[u16]) {
    for (what, request) in cases {
        let mut c = site.connect().await;
        c.send(request.as_bytes()).await;
        let r = c
            .response("POST")
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .unwrap_or_else(|| panic!("{what}: closed without an answer"));
        assert!(
            statuses.contains(&r.status),
            "{what}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.is_from_backend(), "{what}: a server answered");
        assert!(c.closes().await, "{what}: the connection stays open");
    }
    assert_eq!(site.served(), 0, "a refused request reached the server");
}

fn post(fields: &str, body: &str) -> String {
    format!("POST /inspect HTTP/1.1\r\nHost: a.test\r\n{fields}\r\n\r\n{body}")
}

/// RFC 9112 §6.1: a request whose last transfer coding is not chunked cannot be framed: 400
/// (or 501, nginx's answer to a coding it does not know), and the connection closed.
#[tokio::test]
async fn transfer_codings_not_ending_in_chunked_are_refused() {
    let site = Site::with("").await;
    let cases = [
        (
            "chunked, identity",
            post("Transfer-Encoding: chunked, identity", "0\r\n\r\n"),
        ),
        (
            "chunked then identity on two lines",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
                "0\r\n\r\n",
            ),
        ),
        ("identity", post("Transfer-Encoding: identity", "hello")),
        (
            "gzip",
            post("Transfer-Encoding: gzip\r\nContent-Length: 5", "hello"),
        ),
        ("an empty coding", post("Transfer-Encoding: ", "hello")),
        (
            "a coding that only contains chunked",
            post("Transfer-Encoding: xchunked", "0\r\n\r\n"),
        ),
        (
            "chunked with parameters",
            post("Transfer-Encoding: chunked;q=1", "0\r\n\r\n"),
        ),
    ];
    refused(&site, &cases, &[400, 501]).await;
}

/// RFC 9110 §8.6: a Content-Length is digits only: a sign, hex, a fraction or two numbers
/// make it invalid (RFC 9112 §6.3: 400, connection closed); a number too large for any body
/// is refused too (400, or 413 as past `max_request_body`).
#[tokio::test]
async fn content_lengths_that_are_not_plain_digits_are_refused() {
    let site = Site::with("").await;
    let cases: Vec<(&str, String)> = ["+5", "-5", "0x5", "5.0", "5 5", "1e1", ""]
        .iter()
        .map(|v| (*v, post(&format!("Content-Length: {v}"), "hello")))
        .collect();
    refused(&site, &cases, &[400]).await;
    let huge = [(
        "past 64 bits",
        post("Content-Length: 18446744073709551616", "hello"),
    )];
    refused(&site, &huge, &[400, 413]).await;
}

/// RFC 9110 §8.6: the same Content-Length twice (two lines, or a list) may be refused or taken
/// as one; taken, the server gets one Content-Length and the body once.
#[tokio::test]
async fn one_content_length_repeated_is_one_length_or_400() {
    for mode in BODY_MODES {
        let site = Site::with(mode).await;
        for fields in [
            "Content-Length: 5\r\nContent-Length: 5",
            "Content-Length: 5, 5",
        ] {
            let mut c = site.connect().await;
            c.send(post(fields, "hello").as_bytes()).await;
            let r = c.expect_response("POST").await;
            match r.status {
                400 => assert!(!r.is_from_backend(), "{mode} {fields}"),
                200 => {
                    let seen = r.json();
                    assert_eq!(seen["body"], "hello", "{mode} {fields}");
                    let length = &seen["headers"]["content-length"];
                    assert!(
                        length.is_null() || length == "5",
                        "{mode} {fields}: the server got Content-Length {length}"
                    );
                }
                s => panic!("{mode} {fields}: {s} {}", r.text()),
            }
        }
    }
}

/// RFC 9112 §7.1.1: chunk extensions are allowed and mean nothing to a proxy; leading zeros
/// in a size are still the size.
#[tokio::test]
async fn chunk_extensions_and_leading_zeros_are_read_past() {
    for mode in BODY_MODES {
        let site = Site::with(mode).await;
        let r = site
            .send(
                post(
                    "Transfer-Encoding: chunked",
                    "5;name=value\r\nhello\r\n0006;q=\"a;b\";flag\r\n world\r\n0;last=1\r\n\r\n",
                )
                .as_bytes(),
                "POST",
            )
            .await;
        assert_eq!(r.status, 200, "{mode}: {}", r.text());
        assert_eq!(r.json()["body"], "hello world", "{mode}");
    }
}

/// Chunk data must be followed by CRLF (RFC 9112 §7.1): otherwise 400, nothing forwarded when
/// the body is read first.
#[tokio::test]
async fn chunk_data_not_followed_by_crlf_is_400() {
    let site = Site::with("").await;
    let cases = [
        (
            "junk after the data",
            post("Transfer-Encoding: chunked", "5\r\nhelloXX0\r\n\r\n"),
        ),
        (
            "the next size right after the data",
            post("Transfer-Encoding: chunked", "5\r\nhello0\r\n\r\n"),
        ),
        (
            "more data than the size",
            post("Transfer-Encoding: chunked", "3\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "a size line with no digits",
            post("Transfer-Encoding: chunked", "\r\nhello\r\n0\r\n\r\n"),
        ),
    ];
    refused(&site, &cases, &[400]).await;
}

/// RFC 9112 §6.3: a Content-Length body ends at its length; what follows on the connection is
/// the next request, never more body: the server gets the first request's body exactly, and
/// the bytes after it as a request of their own (or none, if they are no request).
#[tokio::test]
async fn bytes_past_the_content_length_are_the_next_request() {
    for mode in BODY_MODES {
        let site = Site::with(mode).await;
        let mut c = site.connect().await;
        c.send(
            b"POST /inspect/first HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\n\
              helloGET /inspect/second HTTP/1.1\r\nHost: a.test\r\n\r\n",
        )
        .await;
        let first = c.expect_response("POST").await.json();
        assert_eq!(
            (first["uri"].as_str(), first["body_len"].as_u64()),
            (Some("/inspect/first"), Some(5)),
            "{mode}"
        );
        assert_eq!(first["body"], "hello", "{mode}");
        let second = c.expect_response("GET").await.json();
        assert_eq!(second["uri"], "/inspect/second", "{mode}");
        assert_eq!(second["body_len"], 0, "{mode}");
        assert_eq!(site.served(), 2, "{mode}");

        // Bytes that are no request: the first is answered, the rest refused, never forwarded.
        let mut c = site.connect().await;
        c.send(
            b"POST /inspect/third HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\n\
              hello!!junk that is no request\r\n\r\n",
        )
        .await;
        let third = c.expect_response("POST").await.json();
        assert_eq!(third["body"], "hello", "{mode}");
        match c.response("GET").await {
            Ok(Some(r)) => assert_eq!(r.status, 400, "{mode}: {}", r.text()),
            Ok(None) => {}
            // A hang (the deadline) fails.
            Err(e) => assert!(e.starts_with("connection ended"), "{mode}: {e}"),
        }
        assert_eq!(site.served(), 3, "{mode}: the junk reached the server");
    }
}

/// Requests with bodies (Content-Length, chunked, chunked with trailers) sent back to back in
/// one write: each reaches the server once, with its own body, and is answered in order.
#[tokio::test]
async fn pipelined_requests_with_bodies_each_reach_the_server_once() {
    for mode in BODY_MODES {
        let site = Site::with(mode).await;
        let mut c = site.connect().await;
        c.send(
            b"POST /inspect/1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\none\
              POST /inspect/2 HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\ntwo\r\n0\r\n\r\n\
              PUT /inspect/3 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nthree\
              POST /inspect/4 HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\
              Trailer: X-Sum\r\n\r\n4\r\nfour\r\n0\r\nX-Sum: 4\r\n\r\n\
              GET /inspect/5 HTTP/1.1\r\nHost: a.test\r\n\r\n\
              POST /inspect/6 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        for (i, method, body) in [
            (1, "POST", "one"),
            (2, "POST", "two"),
            (3, "PUT", "three"),
            (4, "POST", "four"),
            (5, "GET", ""),
            (6, "POST", ""),
        ] {
            let r = c.expect_response(method).await;
            assert_eq!(r.status, 200, "{mode} #{i}: {}", r.text());
            let seen = r.json();
            assert_eq!(seen["uri"], format!("/inspect/{i}"), "{mode}");
            assert_eq!(seen["method"], method, "{mode} #{i}");
            assert_eq!(seen["body"], body, "{mode} #{i}");
            if i == 4 {
                assert_eq!(seen["trailers"]["x-sum"], "4", "{mode}: {seen}");
            }
        }
        assert_eq!(site.served(), 6, "{mode}");
    }
}

/// RFC 9112 §9.6: `Connection: close` from the client: the answer (saying `close`), then the
/// connection closed; a request pipelined after it is never read.
#[tokio::test]
async fn connection_close_from_the_client_answers_then_closes() {
    let site = Site::with("").await;
    let mut c = site.connect().await;
    c.send(
        b"GET /inspect/1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n\
          GET /inspect/2 HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    .await;
    let r = c.expect_response("GET").await;
    assert_eq!(r.json()["uri"], "/inspect/1");
    assert_eq!(
        r.header("connection").map(|v| v.to_ascii_lowercase()),
        Some("close".to_owned())
    );
    assert!(c.closes().await, "the connection stays open");
    assert_eq!(site.served(), 1, "the request after the close was served");
}

/// RFC 9112 §9.3: an HTTP/1.0 request without `Connection: keep-alive` is answered, then the
/// connection closed; with it, the answer says `keep-alive` and the connection serves the next
/// one. A 1.0 client cannot read chunked: a streamed response goes to it unchunked. On both
/// paths: the fast path's (origin-form) and hyper's (absolute-form, which the fast path
/// declines).
#[tokio::test]
async fn http10_closes_after_the_answer_unless_keep_alive() {
    let site = Site::with("").await;
    for prefix in ["", "http://a.test"] {
        let mut c = site.connect().await;
        c.send(format!("GET {prefix}/inspect/plain HTTP/1.0\r\nHost: a.test\r\n\r\n").as_bytes())
            .await;
        let r = c.expect_response("GET").await;
        assert_eq!(
            (r.status, r.json()["uri"].as_str()),
            (200, Some("/inspect/plain")),
            "{prefix}"
        );
        assert!(
            c.closes().await,
            "{prefix}: an HTTP/1.0 connection stays open"
        );

        let mut c = site.connect().await;
        for i in 0..2 {
            c.send(
                format!(
                    "GET {prefix}/inspect/{i} HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n"
                )
                .as_bytes(),
            )
            .await;
            let r = c.expect_response("GET").await;
            assert_eq!(r.json()["uri"], format!("/inspect/{i}"), "{prefix}");
            assert_eq!(
                r.header("connection").map(|v| v.to_ascii_lowercase()),
                Some("keep-alive".to_owned()),
                "{prefix}: a 1.0 client keeps the connection only when told"
            );
        }

        for keep_alive in ["", "Connection: keep-alive\r\n"] {
            let mut c = site.connect().await;
            c.send(
                format!("GET {prefix}/drip/3?ms=1 HTTP/1.0\r\nHost: a.test\r\n{keep_alive}\r\n")
                    .as_bytes(),
            )
            .await;
            let r = c.expect_response("GET").await;
            assert_eq!(r.status, 200, "{prefix} {keep_alive}");
            assert_eq!(
                r.header("transfer-encoding"),
                None,
                "chunked to HTTP/1.0 {prefix} {keep_alive}"
            );
            assert_eq!(
                r.text(),
                "line 1\nline 2\nline 3\n",
                "{prefix} {keep_alive}"
            );
            assert!(
                c.closes().await,
                "{prefix} {keep_alive}: open after a body read to the close"
            );
        }
    }
}

/// RFC 9110 §10.1.1: a client that sends `Expect: 100-continue` and waits gets `100
/// Continue` (from rouse or the server), then, its body sent, the answer.
#[tokio::test]
async fn expect_100_continue_gets_100_then_the_answer() {
    for mode in BODY_MODES {
        let site = Site::with(mode).await;
        let mut c = site.connect().await;
        c.send(
            b"POST /inspect HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await;
        assert_eq!(c.expect_interim().await, 100, "{mode}");
        c.send(b"hello").await;
        let r = c.expect_response("POST").await;
        assert_eq!(r.status, 200, "{mode}: {}", r.text());
        assert_eq!(r.json()["body"], "hello", "{mode}");
        assert_eq!(site.served(), 1, "{mode}");
    }
}

/// A request arriving one byte per write (head, chunked body and all) is put together and
/// served as if it came at once.
#[tokio::test]
async fn a_request_sent_one_byte_at_a_time_is_served() {
    for mode in BODY_MODES {
        let site = Site::with(mode).await;
        let mut c = site.connect().await;
        c.send_bytewise(
            b"POST /inspect/slow HTTP/1.1\r\nHost: a.test\r\nX-Long-Name: some value\r\n\
              Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
              GET /inspect/next HTTP/1.1\r\nHost: a.test\r\n\r\n",
        )
        .await;
        let r = c.expect_response("POST").await;
        assert_eq!(r.status, 200, "{mode}: {}", r.text());
        let seen = r.json();
        assert_eq!(seen["uri"], "/inspect/slow", "{mode}");
        assert_eq!(seen["headers"]["x-long-name"], "some value", "{mode}");
        assert_eq!(seen["body"], "hello", "{mode}");
        let r = c.expect_response("GET").await;
        assert_eq!(r.json()["uri"], "/inspect/next", "{mode}");
    }
}

/// A client that goes away in the middle of its body: the server never gets a complete request
/// (read first, it gets nothing; streamed, its connection ends before the body does), and the
/// next client is served.
#[tokio::test]
async fn a_client_gone_mid_body_never_makes_a_complete_request() {
    for mode in BODY_MODES {
        for cut in [
            "Content-Length: 100\r\n\r\n0123456789",
            "Transfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n",
            "Transfer-Encoding: chunked\r\n\r\n64\r\n0123456789",
        ] {
            let server = RawServer::bind(WITHIN).await;
            let rouse = start_rouse(&static_upstream("raw", &[], mode, &[server.addr()])).await;
            let mut gone = Raw::connect(rouse.addr(), WITHIN).await;
            gone.send(format!("POST /cut HTTP/1.1\r\nHost: raw.test\r\n{cut}").as_bytes())
                .await;
            drop(gone);
            let mut next = Raw::connect(rouse.addr(), WITHIN).await;
            next.send(b"GET /after HTTP/1.1\r\nHost: raw.test\r\n\r\n")
                .await;
            loop {
                let mut up = server.accept().await;
                let Some(req) = up.head().await else {
                    continue;
                };
                if req.target == "/cut" {
                    let body = up.body_of(&req).await;
                    assert!(body.is_err(), "{mode} {cut:?}: the server got {body:?}");
                    continue;
                }
                assert_eq!(req.target, "/after", "{mode} {cut:?}");
                up.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                break;
            }
            let r = next.expect_response("GET").await;
            assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{mode} {cut:?}");
        }
    }
}

/// Malformed request lines and field lines are 400 (an unknown version 505), before anything
/// reaches a server.
#[tokio::test]
async fn malformed_request_lines_and_fields_are_refused() {
    let site = Site::with("").await;
    let cases = [
        (
            "a space inside the target",
            "GET /in spect HTTP/1.1\r\nHost: a.test\r\n\r\n",
        ),
        (
            "a lower-case version",
            "GET /inspect http/1.1\r\nHost: a.test\r\n\r\n",
        ),
        ("no version", "GET /inspect\r\nHost: a.test\r\n\r\n"),
        (
            "a field with no colon",
            "GET /inspect HTTP/1.1\r\nHost: a.test\r\nX-No-Colon\r\n\r\n",
        ),
        (
            "a space in a field name",
            "GET /inspect HTTP/1.1\r\nHost: a.test\r\nX A: 1\r\n\r\n",
        ),
        (
            "an empty field name",
            "GET /inspect HTTP/1.1\r\nHost: a.test\r\n: 1\r\n\r\n",
        ),
        (
            "a NUL in a value",
            "GET /inspect HTTP/1.1\r\nHost: a.test\r\nX-A: a\0b\r\n\r\n",
        ),
        (
            "a bare CR in a value",
            "GET /inspect HTTP/1.1\r\nHost: a.test\r\nX-A: a\rb\r\n\r\n",
        ),
        (
            "a field line before the request line",
            "Host: a.test\r\nGET /inspect HTTP/1.1\r\n\r\n",
        ),
    ];
    let cases: Vec<(&str, String)> = cases.iter().map(|(w, r)| (*w, (*r).to_owned())).collect();
    refused(&site, &cases, &[400]).await;
    let versions = [
        (
            "HTTP/1.2",
            "GET /inspect HTTP/1.2\r\nHost: a.test\r\n\r\n".to_owned(),
        ),
        (
            "HTTP/2.0",
            "GET /inspect HTTP/2.0\r\nHost: a.test\r\n\r\n".to_owned(),
        ),
    ];
    refused(&site, &versions, &[400, 505]).await;
}

/// RFC 9112 §2.2 lets a recipient take a bare LF as a line end; a proxy that does must not
/// pass it on, where a server reading only CRLF would frame the head differently: the head
/// is refused (400), or reaches the server with CRLF line ends only.
#[tokio::test]
async fn a_bare_lf_never_reaches_the_server() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = start_rouse(&static_upstream("raw", &[], "", &[server.addr()])).await;
    for request in bare_lf_heads() {
        let mut c = Raw::connect(rouse.addr(), WITHIN).await;
        c.send(request.as_bytes()).await;
        tokio::select! {
            r = c.response("GET") => match r {
                Ok(Some(r)) => assert_eq!(r.status, 400, "{request:?}: {}", r.text()),
                other => panic!("{request:?}: no answer: {other:?}"),
            },
            (mut up, req) = server.accept_request() => {
                let head = &req.raw_head;
                let lone_lf = (0..head.len()).any(|i| head[i] == b'\n' && (i == 0 || head[i - 1] != b'\r'));
                assert!(!lone_lf, "{request:?} went on as {:?}", String::from_utf8_lossy(head));
                assert_eq!((req.target.as_str(), req.header("x-a")), ("/lf", Some("1")), "{request:?}");
                up.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                let r = c.expect_response("GET").await;
                assert_eq!(r.status, 200, "{request:?}");
            }
        }
    }
}

/// Issue 11 asks more than the RFC: a head with a bare LF line end is refused, 400, and
/// nothing reaches the server. (Hyper accepts one and sends the head on with CRLF: on a
/// connection hyper serves, `a_bare_lf_never_reaches_the_server` still holds.)
#[tokio::test]
async fn bare_lf_line_ends_in_a_request_head_are_400() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = start_rouse(&static_upstream("raw", &[], "", &[server.addr()])).await;
    for request in bare_lf_heads() {
        let mut c = Raw::connect(rouse.addr(), WITHIN).await;
        c.send(request.as_bytes()).await;
        tokio::select! {
            r = c.response("GET") => {
                let r = r.ok().flatten().unwrap_or_else(|| panic!("{request:?}: no answer"));
                assert_eq!(r.status, 400, "{request:?}");
            }
            (_up, req) = server.accept_request() => {
                panic!("{request:?} reached the server as {:?}", String::from_utf8_lossy(&req.raw_head));
            }
        }
    }
    // The refusal closed those connections only: a good head is served as ever.
    let mut c = Raw::connect(rouse.addr(), WITHIN).await;
    c.send(b"GET /crlf HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        .await;
    let (mut up, req) = server.accept_request().await;
    assert_eq!(req.target, "/crlf");
    up.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await;
    assert_eq!(c.expect_response("GET").await.status, 200);
}

fn bare_lf_heads() -> [String; 3] {
    [
        "GET /lf HTTP/1.1\nHost: raw.test\r\nX-A: 1\r\n\r\n".to_owned(),
        "GET /lf HTTP/1.1\r\nHost: raw.test\nX-A: 1\r\n\r\n".to_owned(),
        "GET /lf HTTP/1.1\r\nHost: raw.test\r\nX-A: 1\n\n".to_owned(),
    ]
}

/// RFC 9110 §6.5.1: trailer fields are not header fields: a trailer named Host,
/// Content-Length or Transfer-Encoding changes neither the route nor the framing of what the
/// server gets (it may be dropped, or the request refused).
#[tokio::test]
async fn trailer_fields_never_become_header_fields() {
    for mode in BODY_MODES {
        let site = Site::with(mode).await;
        let r = site
            .send(
                post(
                    "Transfer-Encoding: chunked",
                    "5\r\nhello\r\n0\r\nHost: b.test\r\nContent-Length: 999\r\n\
                     Transfer-Encoding: gzip\r\nX-Fine: 1\r\n\r\n",
                )
                .as_bytes(),
                "POST",
            )
            .await;
        if r.status == 400 {
            assert!(!r.is_from_backend(), "{mode}");
            continue;
        }
        assert_eq!(r.status, 200, "{mode}: {}", r.text());
        let seen = r.json();
        assert_eq!(seen["body"], "hello", "{mode}");
        assert_eq!(seen["headers"]["host"], "a.test", "{mode}: {seen}");
        assert_ne!(seen["headers"]["content-length"], "999", "{mode}: {seen}");
        assert_ne!(
            seen["headers"]["transfer-encoding"], "gzip",
            "{mode}: {seen}"
        );
    }
}

/// Field values with bytes past ASCII (UTF-8 here; RFC 9110 §5.5 obs-text) pass unchanged,
/// as nginx passes them; so do names and values of any case and spacing.
#[tokio::test]
async fn fields_pass_byte_for_byte() {
    let site = Site::with("").await;
    let r = site
        .send(
            "GET /inspect HTTP/1.1\r\nHost: a.test\r\nX-Name: café ☕\r\nx-lower:  spaced out  \r\n\
             X-Empty:\r\nX-Quote: \"a, b\"; q=1\r\n\r\n"
                .as_bytes(),
            "GET",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = &r.json()["headers"];
    assert_eq!(seen["x-name"], "café ☕");
    assert_eq!(
        seen["x-lower"], "spaced out",
        "OWS around a value is not part of it"
    );
    assert_eq!(seen["x-empty"], "");
    assert_eq!(seen["x-quote"], "\"a, b\"; q=1");
}

/// The framing fields are read case-insensitively and without the whitespace around their
/// values (RFC 9110 §5.5, §7.1.1 of RFC 9112 for chunk sizes in any case).
#[tokio::test]
async fn framing_fields_are_read_in_any_case() {
    for mode in BODY_MODES {
        let site = Site::with(mode).await;
        for (fields, body) in [
            ("content-length:   5  ", "hello"),
            ("CONTENT-LENGTH: 5", "hello"),
            ("Content-Length: 005", "hello"),
            ("Transfer-Encoding: Chunked", "5\r\nhello\r\n0\r\n\r\n"),
            ("transfer-encoding:  CHUNKED ", "5\r\nhello\r\n0\r\n\r\n"),
            ("Content-Length:\t5\t", "hello"),
            ("Transfer-Encoding:\tchunked", "5\r\nhello\r\n0\r\n\r\n"),
            ("Transfer-Encoding: chunked", "A\r\nhelloworld\r\n0\r\n\r\n"),
            ("Transfer-Encoding: chunked", "a\r\nhelloworld\r\n0\r\n\r\n"),
        ] {
            let r = site.send(post(fields, body).as_bytes(), "POST").await;
            assert_eq!(r.status, 200, "{mode} {fields}: {}", r.text());
            let seen = r.json();
            assert!(
                seen["body"] == "hello" || seen["body"] == "helloworld",
                "{mode} {fields}: {seen}"
            );
        }
    }
}

/// A body in thousands of one-byte chunks, sent in one go, is the same body.
#[tokio::test]
async fn many_tiny_chunks_make_one_body() {
    for mode in BODY_MODES {
        let site = Site::with(mode).await;
        let text: String = (0..5000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let chunks: String = text.chars().map(|c| format!("1\r\n{c}\r\n")).collect();
        let r = site
            .send(
                post("Transfer-Encoding: chunked", &format!("{chunks}0\r\n\r\n")).as_bytes(),
                "POST",
            )
            .await;
        assert_eq!(r.status, 200, "{mode}: {}", r.text());
        assert_eq!(r.json()["body"], text, "{mode}");
    }
}

/// Any method may carry a body (RFC 9110 §9.3: a GET's means nothing defined, but it is
/// framed as any other): the body goes to the server with its request, never read as the next
/// request.
#[tokio::test]
async fn bodies_of_get_delete_and_options_are_framed_like_any_other() {
    for mode in BODY_MODES {
        let site = Site::with(mode).await;
        let mut c = site.connect().await;
        c.send(
            b"GET /inspect/1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 28\r\n\r\n\
              GET /inspect/evil HTTP/1.1\r\n\
              DELETE /inspect/2 HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n\
              OPTIONS /inspect/3 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\nok",
        )
        .await;
        for (i, method, body) in [
            (1, "GET", "GET /inspect/evil HTTP/1.1\r\n"),
            (2, "DELETE", "hello"),
            (3, "OPTIONS", "ok"),
        ] {
            let r = c.expect_response(method).await;
            assert_eq!(r.status, 200, "{mode} #{i}: {}", r.text());
            let seen = r.json();
            assert_eq!(seen["uri"], format!("/inspect/{i}"), "{mode}");
            assert_eq!(seen["body"], body, "{mode} #{i}");
        }
        assert_eq!(site.served(), 3, "{mode}");
    }
}

/// The request target and method go to the server as the client wrote them: no path
/// normalisation, no decoding or re-encoding (as nginx's `proxy_pass` without a URI).
#[tokio::test]
async fn targets_and_methods_pass_byte_for_byte() {
    let server = RawServer::bind(WITHIN).await;
    let rouse = start_rouse(&static_upstream("raw", &[], "", &[server.addr()])).await;
    let mut up = None;
    for (method, target) in [
        ("GET", "/a/./../b%2Fc;p=1?x=%20&y=a+b&z=%E2%98%95"),
        ("GET", "//double//slash/"),
        ("GET", "/?"),
        ("GET", "/q?a=b?c=/d"),
        ("PURGE", "/cache/key"),
        ("MKCOL", "/dav/new"),
    ] {
        let mut c = Raw::connect(rouse.addr(), WITHIN).await;
        c.send(format!("{method} {target} HTTP/1.1\r\nHost: raw.test\r\n\r\n").as_bytes())
            .await;
        let req = server.next_request(&mut up).await;
        assert_eq!((req.method.as_str(), req.target.as_str()), (method, target));
        let conn = up.as_mut().expect("a server connection");
        conn.send(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        let r = c.expect_response(method).await;
        assert_eq!(r.status, 204, "{method} {target}");
    }
}

/// A chunk size past 64 bits is refused (400, or 413 as past `max_request_body`), never
/// wrapped around to a small one; leading zeros do not make a size large.
#[tokio::test]
async fn chunk_sizes_past_64_bits_are_refused() {
    let site = Site::with("").await;
    let cases: Vec<(&str, String)> = ["10000000000000000", "100000000000000005"]
        .iter()
        .map(|size| {
            (
                *size,
                post(
                    "Transfer-Encoding: chunked",
                    &format!("5\r\nhello\r\n{size}\r\nworld\r\n0\r\n\r\n"),
                ),
            )
        })
        .collect();
    refused(&site, &cases, &[400, 413]).await;
    let r = site
        .send(
            post(
                "Transfer-Encoding: chunked",
                "000000000000000000000005\r\nhello\r\n0\r\n\r\n",
            )
            .as_bytes(),
            "POST",
        )
        .await;
    assert_eq!((r.status, r.json()["body"].as_str()), (200, Some("hello")));
}

/// Hundreds of requests in one write, a 1 MiB body among them (more than any read buffer):
/// each is answered, in order, and reaches the server once.
#[tokio::test]
async fn a_long_pipeline_with_a_large_body_is_answered_in_order() {
    for mode in BODY_MODES {
        let site = Site::with(mode).await;
        let large = "L".repeat(1 << 20);
        let mut burst = Vec::new();
        for i in 0..200 {
            let request = if i == 100 {
                post_to(&format!("/inspect/{i}"), &large)
            } else {
                format!("GET /inspect/{i} HTTP/1.1\r\nHost: a.test\r\n\r\n")
            };
            burst.extend_from_slice(request.as_bytes());
        }
        let mut c = site.connect().await;
        c.send(&burst).await;
        for i in 0..200 {
            let r = c
                .expect_response(if i == 100 { "POST" } else { "GET" })
                .await;
            let seen = r.json();
            assert_eq!(seen["uri"], format!("/inspect/{i}"), "{mode}");
            let len = if i == 100 { large.len() } else { 0 };
            assert_eq!(seen["body_len"], len, "{mode} #{i}");
        }
        assert_eq!(site.served(), 200, "{mode}");
    }
}

fn post_to(target: &str, body: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Transfer-Encoding written so that one parser sees it and another does not (the classic
/// smuggling disguises) never frames a body one way for rouse and another for the server:
/// refused (400, 501), or the body framed by its Content-Length and the server told nothing
/// else.
#[tokio::test]
async fn disguised_transfer_encodings_never_frame_a_body_two_ways() {
    for mode in BODY_MODES {
        let site = Site::with(mode).await;
        for disguise in [
            "Transfer-Encoding:\x0bchunked",
            "Transfer-Encoding: \x0cchunked",
            "Transfer_Encoding: chunked",
            "Transfer-Encoding: chunked\x00",
            "Transfer-Encoding: \"chunked\"",
            "Transfer-Encoding: chu nked",
        ] {
            let request = format!(
                "POST /inspect HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n{disguise}\r\n\r\n\
                 hello"
            );
            whole_or_refused(&site, mode, disguise, &request).await;
        }
        // RFC 9112 §2.2: a line starting with whitespace right after the request line is
        // refused, or skipped as a whole.
        let request = "POST /inspect HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a.test\r\n\
                       Content-Length: 5\r\n\r\nhello";
        whole_or_refused(&site, mode, "whitespace before the first field", request).await;
    }
}

/// `request` (a POST of "hello" with Content-Length: 5 and a disguise) is refused by rouse,
/// or reaches the server with that body, framed by its length.
async fn whole_or_refused(site: &Site, mode: &str, what: &str, request: &str) {
    let served = site.served();
    let mut c = site.connect().await;
    c.send(request.as_bytes()).await;
    // Read as chunked, "hello" is no chunk size: neither framing waits for more.
    let r = c.expect_response("POST").await;
    match r.status {
        400 | 501 => assert!(!r.is_from_backend(), "{mode} {what:?}"),
        200 => {
            let seen = r.json();
            assert_eq!(seen["body"], "hello", "{mode} {what:?}: {seen}");
            assert!(
                seen["headers"]["transfer-encoding"].is_null(),
                "{mode} {what:?}: {seen}"
            );
        }
        s => panic!("{mode} {what:?}: {s} {}", r.text()),
    }
    let forwarded = u64::from(r.status == 200);
    assert_eq!(site.served(), served + forwarded, "{mode} {what:?}");
}

/// Valid Host forms (RFC 9110 §7.2: a port, an IPv6 literal, an IPv4 address, any case, an
/// empty port) are served, and the server gets the Host the client sent.
#[tokio::test]
async fn valid_host_forms_are_served_as_sent() {
    let site = Site::with("").await;
    for host in [
        "a.test:8080",
        "[::1]:8080",
        "[::1]",
        "127.0.0.1",
        "A.Test",
        "a.test:",
    ] {
        let r = site
            .send(
                format!("GET /inspect HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
                "GET",
            )
            .await;
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        assert_eq!(r.json()["headers"]["host"], host, "{host}");
    }
}
