//! Request heads and framing per RFC 9112, over raw TCP to a real rouse in front of the test
//! backend: each case says what the client is answered and what the server received (the
//! backend's `/inspect` echoes the request it got, its counters say whether it got one).
//!
//! Answers are nginx's or better: what nginx refuses with 400, rouse refuses before it reaches
//! a server; what the RFC lets a proxy repair (absolute-form Host, CL with TE), rouse repairs.

mod common;
mod raw;

use std::sync::Mutex;
use std::time::Duration;

use common::log::logged;
use common::{config_with, start_rouse, static_upstream};
use raw::{Raw, RawResponse, exchange};
use rouse::Rouse;
use rouse_e2e::{InProcessBackend, spawn_in_process};

const WITHIN: Duration = Duration::from_secs(20);

/// rouse in front of three backends: `a.test` → a, `b.test` → b, anything else → `default`.
struct Site {
    rouse: Rouse,
    a: InProcessBackend,
    b: InProcessBackend,
    default: InProcessBackend,
}

impl Site {
    async fn start(default_name: &str) -> Site {
        Site::with(default_name, "").await
    }

    /// With `extra` keys in every `[[upstream]]`.
    async fn with(default_name: &str, extra: &str) -> Site {
        let a = spawn_in_process("a").await;
        let b = spawn_in_process("b").await;
        let default = spawn_in_process("default").await;
        let toml = [
            static_upstream("a", &["a.test"], extra, &[a.addr()]),
            static_upstream("b", &["b.test"], extra, &[b.addr()]),
            static_upstream(default_name, &[], extra, &[default.addr()]),
        ]
        .concat();
        let rouse = start_rouse(&toml).await;
        Site {
            rouse,
            a,
            b,
            default,
        }
    }

    async fn send(&self, request: &[u8], method: &str) -> RawResponse {
        exchange(self.rouse.addr(), request, method).await
    }

    /// Requests the backends received in all.
    fn served(&self) -> u64 {
        self.a.stats().requests + self.b.stats().requests + self.default.stats().requests
    }
}

/// What rouse answers to each of `cases`, which must be `status`, none reaching a server.
async fn refused(site: &Site, cases: &[(&str, String)], status: u16) {
    for (what, request) in cases {
        let r = site.send(request.as_bytes(), "GET").await;
        assert_eq!(r.status, status, "{what}: {} {}", r.status, r.text());
        assert!(!r.is_from_backend(), "{what}: a server answered");
    }
    assert_eq!(site.served(), 0, "no refused request reaches a server");
}

/// RFC 9112 §6.1: a request with both Transfer-Encoding and Content-Length is framed by
/// Transfer-Encoding, Content-Length is removed before forwarding, and the connection is closed
/// after the answer, so whatever a Content-Length-reading server would see as a second request
/// (the smuggled one) is never read as one.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_framed_by_te_and_never_forwarded() {
    let site = Site::start("default").await;
    for (first, second) in [
        ("Content-Length: 4", "Transfer-Encoding: chunked"),
        ("Transfer-Encoding: chunked", "Content-Length: 4"),
    ] {
        let mut c = Raw::connect(site.rouse.addr(), WITHIN).await;
        let request = format!(
            "POST /inspect HTTP/1.1\r\nHost: a.test\r\n{first}\r\n{second}\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n\
             GET /inspect/smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n"
        );
        c.send(request.as_bytes()).await;
        let r = c.expect_response("POST").await;
        assert_eq!(r.status, 200, "{first}, {second}: {}", r.text());
        let seen = r.json();
        assert_eq!(seen["body"], "hello", "the chunked framing won");
        // The client's Content-Length is gone: the body went chunked, or with its true length.
        let length = &seen["headers"]["content-length"];
        assert!(
            length.is_null() || (length == "5" && seen["headers"]["transfer-encoding"].is_null()),
            "the client's Content-Length reached the server: {seen}"
        );
        assert!(
            c.closes().await,
            "{first}, {second}: the connection stays open"
        );
    }
    assert_eq!(site.a.stats().requests, 2, "the smuggled request never ran");
}

/// Framing errors nginx answers 400 to are 400, before anything reaches a server.
#[tokio::test]
async fn ambiguous_or_malformed_framing_is_400() {
    let site = Site::start("default").await;
    let post = |fields: &str, body: &str| {
        format!("POST /inspect HTTP/1.1\r\nHost: a.test\r\n{fields}\r\n\r\n{body}")
    };
    let cases = [
        (
            "two different Content-Lengths",
            post("Content-Length: 5\r\nContent-Length: 6", "hello!"),
        ),
        (
            "a Content-Length list of different values",
            post("Content-Length: 5, 6", "hello!"),
        ),
        (
            "a Content-Length that is no number",
            post("Content-Length: 5x", "hello"),
        ),
        (
            "a Transfer-Encoding that does not end in chunked",
            post("Transfer-Encoding: chunked, gzip", "0\r\n\r\n"),
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            "POST /inspect HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_owned(),
        ),
        (
            "an obs-fold line (RFC 9112 §5.2)",
            "GET /inspect HTTP/1.1\r\nHost: a.test\r\nX-Folded: one\r\n two\r\n\r\n".to_owned(),
        ),
        (
            "a space before the colon (RFC 9112 §5.1)",
            "GET /inspect HTTP/1.1\r\nHost: a.test\r\nX-Space : 1\r\n\r\n".to_owned(),
        ),
    ];
    refused(&site, &cases, 400).await;
}

/// A chunk size that is not hex, or too large for 64 bits: 400, the client's fault, not the
/// server's (no WARN, the server stays in rotation). Buffered (the default), the body is read
/// whole first, so nothing reaches the server, as with nginx; streamed, the server has the
/// head already and the failure is logged at INFO as the client's.
#[tokio::test]
async fn invalid_chunk_sizes_are_400_and_the_clients_fault() {
    log_lines();
    for (name, extra) in [
        ("chunks-buffered", ""),
        ("chunks-streamed", "request_buffering = false"),
    ] {
        let site = Site::with(name, extra).await;
        for size in ["zz", "123456789abcdef012"] {
            let request = format!(
                "POST /count HTTP/1.1\r\nHost: x.test\r\nTransfer-Encoding: chunked\r\n\r\n\
                 {size}\r\nhello\r\n0\r\n\r\n"
            );
            let r = site.send(request.as_bytes(), "POST").await;
            assert_eq!(r.status, 400, "{name}, chunk size {size}: {}", r.text());
            assert_eq!(
                r.header("x-rouse-error").as_deref(),
                Some("bad-request"),
                "{name}, {size}"
            );
        }
        let table = site.rouse.table();
        let server = &table.upstreams[2].servers[0];
        assert_eq!(server.state().as_str(), "ready", "{name}");
        let warned = logged(&["WARN", name]);
        assert!(
            warned.is_empty(),
            "{name}: the server was blamed: {warned:?}"
        );
        if extra.is_empty() {
            assert_eq!(site.served(), 0, "a broken buffered body reached a server");
        } else {
            let told = logged(&[
                "INFO",
                &format!("upstream=\"{name}\""),
                "malformed or cut short",
            ]);
            assert_eq!(told.len(), 2, "each is logged as the client's: {told:?}");
        }
        // The next request is served as usual.
        let r = site
            .send(b"GET / HTTP/1.1\r\nHost: x.test\r\n\r\n", "GET")
            .await;
        assert_eq!((r.status, r.text().as_str()), (200, "default"), "{name}");
    }
}

/// Past `max_header_size` (32 KiB, one line of 100 KB) or `max_headers` (100): 431; a request
/// line past 8 KiB: 414. None reaches a server. Heads just within the limits pass.
#[tokio::test]
async fn oversized_heads_are_431_and_long_uris_414() {
    let site = Site::start("default").await;
    let get = |target: &str, fields: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: a.test\r\n{fields}\r\n")
    };
    let line = |n: usize| format!("X-Big: {}\r\n", "v".repeat(n));
    let many = |n: usize| {
        (0..n)
            .map(|i| format!("X-N{i}: {i}\r\n"))
            .collect::<String>()
    };
    let too_large = [
        ("a 100 KB header line", get("/inspect", &line(100 * 1024))),
        ("a 33 KiB header line", get("/inspect", &line(33 * 1024))),
        (
            "ten 4000-byte lines",
            get("/inspect", &line(4000).repeat(10)),
        ),
        ("101 header lines", get("/inspect", &many(100))),
    ];
    refused(&site, &too_large, 431).await;
    let too_long = [(
        "a 9 KiB URI",
        get(&format!("/inspect/{}", "u".repeat(9 * 1024)), ""),
    )];
    refused(&site, &too_long, 414).await;

    for (what, request) in [
        ("a 30 KiB header line", get("/inspect", &line(30 * 1024))),
        // 100 with the three X-Forwarded-* rouse adds: the test backend's own limit (hyper's).
        ("96 header lines and Host", get("/inspect", &many(96))),
        (
            "an 8000-byte URI",
            get(&format!("/inspect/{}", "u".repeat(8000)), ""),
        ),
    ] {
        let r = site.send(request.as_bytes(), "GET").await;
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        assert!(r.is_from_backend(), "{what}");
    }
}

/// `[proxy] max_header_size` and `max_headers` are what the config says.
#[tokio::test]
async fn head_limits_come_from_the_config() {
    let backend = spawn_in_process("a").await;
    let config = config_with(
        "max_header_size = \"10KiB\"\nmax_headers = 10",
        &static_upstream("a", &[], "", &[backend.addr()]),
    );
    let rouse = Rouse::start(config).await.expect("rouse starts");
    let get = |fields: String| format!("GET /inspect HTTP/1.1\r\nHost: a.test\r\n{fields}\r\n");
    let line = |n: usize| format!("X-Big: {}\r\n", "v".repeat(n));
    let many = |n: usize| {
        (0..n)
            .map(|i| format!("X-N{i}: {i}\r\n"))
            .collect::<String>()
    };
    for (what, request, status) in [
        ("a 9 KiB line", get(line(9 * 1024)), 200),
        ("an 11 KiB line", get(line(11 * 1024)), 431),
        ("9 lines and Host", get(many(9)), 200),
        ("10 lines and Host", get(many(10)), 431),
    ] {
        let r = exchange(rouse.addr(), request.as_bytes(), "GET").await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
    }
    assert_eq!(backend.stats().requests, 2);
}

/// Requests sent back to back on one connection are answered in order, whichever the server
/// finishes first.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let site = Site::start("default").await;
    let mut c = Raw::connect(site.rouse.addr(), WITHIN).await;
    c.send(
        b"GET /delay/200 HTTP/1.1\r\nHost: a.test\r\n\r\n\
          POST /inspect/2 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc\
          GET /inspect/3 HTTP/1.1\r\nHost: b.test\r\n\r\n",
    )
    .await;
    let first = c.expect_response("GET").await;
    assert_eq!((first.status, first.text().as_str()), (200, "a"));
    let second = c.expect_response("POST").await.json();
    assert_eq!(second["uri"], "/inspect/2");
    assert_eq!(second["body"], "abc");
    let third = c.expect_response("GET").await;
    assert_eq!(third.header("x-backend-id").as_deref(), Some("b"));
    assert_eq!(third.json()["uri"], "/inspect/3");
}

/// HEAD, 204 and 304 answers have no body (RFC 9112 §6.3): read back to back on one
/// connection, any stray body byte would be taken for the next answer's status line.
#[tokio::test]
async fn head_204_and_304_answers_have_no_body() {
    let site = Site::start("default").await;
    let mut c = Raw::connect(site.rouse.addr(), WITHIN).await;
    c.send(
        b"HEAD /inspect HTTP/1.1\r\nHost: a.test\r\n\r\n\
          GET /status/204 HTTP/1.1\r\nHost: a.test\r\n\r\n\
          GET /status/304 HTTP/1.1\r\nHost: a.test\r\n\r\n\
          GET /inspect/last HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    .await;
    let head = c.expect_response("HEAD").await;
    assert_eq!(head.status, 200);
    let no_content = c.expect_response("GET").await;
    assert_eq!(no_content.status, 204);
    assert_eq!(no_content.header("content-length"), None);
    assert_eq!(no_content.header("transfer-encoding"), None);
    let not_modified = c.expect_response("GET").await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("transfer-encoding"), None);
    let last = c.expect_response("GET").await;
    assert_eq!(last.json()["uri"], "/inspect/last");
}

/// A chunked request's trailer fields reach the server with the body, whether the body
/// streams (`request_buffering = false`) or is read whole first (the default: it then goes
/// chunked too, since a Content-Length would leave no room for trailers).
#[tokio::test]
async fn request_trailers_reach_the_server_buffered_or_streamed() {
    let site = Site::start("default").await;
    let r = site
        .send(
            b"POST /inspect HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\
              Trailer: X-Checksum\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n",
            "POST",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(seen["body"], "hello world", "buffered");
    assert_eq!(seen["trailers"]["x-checksum"], "42", "buffered: {seen}");

    let site = Site::with("default", "request_buffering = false").await;
    let r = site
        .send(
            b"POST /inspect HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\
              Trailer: X-Checksum\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n",
            "POST",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(seen["body"], "hello world");
    assert_eq!(seen["trailers"]["x-checksum"], "42", "{seen}");
}

/// RFC 9112 §3.2: more than one Host, or an invalid one, is 400, even with equal values; so
/// is an HTTP/1.1 request with none, and a target in authority-form (§3.2.3, CONNECT's).
#[tokio::test]
async fn two_hosts_an_invalid_host_none_or_an_authority_form_target_are_400() {
    let site = Site::start("default").await;
    let get = |fields: &str| format!("GET /inspect HTTP/1.1\r\n{fields}\r\n");
    let cases = [
        (
            "two different Hosts",
            get("Host: a.test\r\nHost: b.test\r\n"),
        ),
        (
            "the same Host twice",
            get("Host: a.test\r\nHost: a.test\r\n"),
        ),
        ("a Host list", get("Host: a.test, b.test\r\n")),
        ("a Host with userinfo", get("Host: me@a.test\r\n")),
        ("a Host with a path", get("Host: a.test/x\r\n")),
        ("no Host", get("")),
        (
            "an authority-form GET",
            "GET a.test:80 HTTP/1.1\r\nHost: a.test\r\n\r\n".into(),
        ),
        (
            "absolute-form with two Hosts",
            "GET http://b.test/inspect HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n".into(),
        ),
    ];
    refused(&site, &cases, 400).await;
}

/// RFC 9112 §3.2.2: an absolute-form target decides the host, and a proxy sends the server a
/// Host made from it, whatever Host the client sent.
#[tokio::test]
async fn absolute_form_routes_by_the_target_and_replaces_host() {
    let site = Site::start("default").await;
    let r = site
        .send(
            b"GET http://b.test/inspect?q=1 HTTP/1.1\r\nHost: a.test\r\n\r\n",
            "GET",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend-id").as_deref(), Some("b"));
    let seen = r.json();
    assert_eq!(
        seen["uri"], "/inspect?q=1",
        "origin-form towards the server"
    );
    assert_eq!(seen["headers"]["host"], "b.test");
    assert_eq!(seen["headers"]["x-forwarded-host"], "b.test");
    assert_eq!(site.a.stats().requests, 0);
}

// === rouse's log, captured ===

/// rouse's log lines (every test's: they share the process), captured from the first call on.
fn log_lines() -> &'static Mutex<Vec<u8>> {
    common::log::capture(|| tracing_subscriber::EnvFilter::new("info,rouse::access=off"))
}
