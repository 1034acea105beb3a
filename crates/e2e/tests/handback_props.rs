//! Property test of one keep-alive connection going back and forth between the fast path and
//! hyper: random sequences of requests the fast path serves (GET, HEAD, a small body, an
//! HTTP/1.0 GET that asks to keep the connection) and requests it declines, which hyper
//! serves before it gives the connection back (a chunked body cut into random chunks,
//! `Expect: 100-continue`, a body past the fast path's 64 KiB, over HTTP/1.1 or 1.0),
//! sent one batch at a time, each batch pipelined, through a real rouse to the test backend;
//! with request bodies read whole before a server is chosen, and streamed
//! (`request_buffering = false`).
//!
//! Every request gets its own answer, in order, its body reaching the server whole, and the
//! server sees each request once: no byte of one request is read as part of another when the
//! connection changes hands, and none is lost.
//!
//! 32 cases by default, so the test command stays quick; `PROPTEST_CASES=2000` for a long run
//! (`bench/fuzz.sh` finds this file by its name).

mod common;
mod raw;

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use raw::Raw;

/// Each case (its connection, all its exchanges) must end within this.
const CASE: Duration = Duration::from_secs(20);
/// Past the fast path's largest buffered body (`h1/conn.rs`: 64 KiB).
const LARGE: usize = 70_000;

#[derive(Debug, Clone)]
enum Kind {
    Get,
    /// HTTP/1.0 with `Connection: keep-alive`: its answer says `keep-alive`.
    Get10,
    Head,
    /// Content-Length, within what the fast path reads.
    Small(usize),
    /// Chunked, cut at these sizes (the rest in one last chunk).
    Chunked(Vec<usize>),
    /// `Expect: 100-continue`, the body sent at once without waiting for the 100.
    Expect(usize),
    /// Content-Length past what the fast path reads.
    Large,
    /// The same from an HTTP/1.0 client that asks to keep the connection.
    Large10,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Get),
        Just(Kind::Get10),
        Just(Kind::Head),
        (1usize..2000).prop_map(Kind::Small),
        prop::collection::vec(1usize..300, 0..5).prop_map(Kind::Chunked),
        (0usize..2000).prop_map(Kind::Expect),
        Just(Kind::Large),
        Just(Kind::Large10),
    ]
}

/// Requests, and where the sequence is cut into batches (each batch written at once, its
/// answers read before the next is written).
fn case() -> impl Strategy<Value = (Vec<Kind>, Vec<bool>)> {
    prop::collection::vec(kind(), 1..10).prop_flat_map(|kinds| {
        let n = kinds.len();
        (Just(kinds), prop::collection::vec(any::<bool>(), n))
    })
}

/// The `i`th request of a case: its method, its bytes and the body the server must see.
fn render(kind: &Kind, i: usize) -> (&'static str, Vec<u8>, String) {
    let target = format!("/inspect/{i}");
    let body = |n: usize| {
        let unit = format!("<{i}>");
        unit.repeat(n / unit.len() + 1)[..n].to_owned()
    };
    let head = |method: &str, fields: &str| {
        format!("{method} {target} HTTP/1.1\r\nHost: a.test\r\n{fields}\r\n")
    };
    match kind {
        Kind::Get => ("GET", head("GET", "").into_bytes(), String::new()),
        Kind::Get10 => {
            let wire = head("GET", "Connection: keep-alive\r\n").replace("HTTP/1.1", "HTTP/1.0");
            ("GET", wire.into_bytes(), String::new())
        }
        Kind::Head => ("HEAD", head("HEAD", "").into_bytes(), String::new()),
        Kind::Small(n) | Kind::Expect(n) => {
            let b = body(*n);
            let expect = if matches!(kind, Kind::Expect(_)) {
                "Expect: 100-continue\r\n"
            } else {
                ""
            };
            let fields = format!("{expect}Content-Length: {}\r\n", b.len());
            let method = if expect.is_empty() { "POST" } else { "PUT" };
            (method, (head(method, &fields) + &b).into_bytes(), b)
        }
        Kind::Large | Kind::Large10 => {
            let b = body(LARGE);
            let fields = format!("Content-Length: {}\r\n", b.len());
            let mut wire = head("POST", &fields) + &b;
            if matches!(kind, Kind::Large10) {
                wire = wire.replacen("HTTP/1.1\r\n", "HTTP/1.0\r\nConnection: keep-alive\r\n", 1);
            }
            ("POST", wire.into_bytes(), b)
        }
        Kind::Chunked(cuts) => {
            let b = body(cuts.iter().sum::<usize>() + 7);
            let mut wire = head("POST", "Transfer-Encoding: chunked\r\n");
            let mut at = 0;
            for &cut in cuts.iter().chain([&7]) {
                wire.push_str(&format!("{cut:x}\r\n{}\r\n", &b[at..at + cut]));
                at += cut;
            }
            wire.push_str("0\r\n\r\n");
            ("POST", wire.into_bytes(), b)
        }
    }
}

#[test]
fn a_connection_changing_hands_keeps_every_request_whole_and_in_order() {
    for mode in ["", "request_buffering = false"] {
        run(mode);
    }
}

fn run(mode: &str) {
    let rt = common::runtime();
    let (rouse, backend) = rt.block_on(async {
        let backend = rouse_e2e::spawn_in_process("a").await;
        let config = common::static_upstream("a", &[], mode, &[backend.addr()]);
        (common::start_rouse(&config).await, backend)
    });
    let result = common::prop_runner(32).run(&case(), |(kinds, cut_after)| {
        let before = backend.stats().requests;
        let fail =
            |why: String| TestCaseError::fail(format!("{mode:?}: {why}\nsequence {kinds:?}"));
        rt.block_on(async {
            let mut c = Raw::connect(rouse.addr(), CASE).await;
            let mut sent = Vec::new();
            for (i, kind) in kinds.iter().enumerate() {
                let (method, bytes, body) = render(kind, i);
                c.send(&bytes).await;
                let http10 = matches!(kind, Kind::Get10 | Kind::Large10);
                sent.push((i, method, body, http10));
                if !cut_after[i] && i + 1 < kinds.len() {
                    continue;
                }
                for (i, method, body, http10) in sent.drain(..) {
                    let r = c
                        .response(method)
                        .await
                        .map_err(|e| fail(format!("request {i}: {e}")))?
                        .ok_or_else(|| fail(format!("request {i}: closed before its answer")))?;
                    if r.status != 200 {
                        return Err(fail(format!("request {i}: {} {}", r.status, r.text())));
                    }
                    // The connection stays open: a client told otherwise would leave (an
                    // HTTP/1.0 one must be told it stays).
                    let said = r.header("connection");
                    if said.as_deref() != http10.then_some("keep-alive") {
                        return Err(fail(format!(
                            "request {i}: answered `Connection: {said:?}`"
                        )));
                    }
                    if method == "HEAD" {
                        continue;
                    }
                    let seen = r.json();
                    let (uri, got) = (&seen["uri"], &seen["body"]);
                    if uri != &format!("/inspect/{i}") || got != body.as_str() {
                        return Err(fail(format!(
                            "request {i} answered for {uri} with a body of {} bytes (sent {})",
                            seen["body_len"],
                            body.len()
                        )));
                    }
                }
            }
            Ok(())
        })?;
        let served = backend.stats().requests - before;
        if served != kinds.len() as u64 {
            return Err(fail(format!(
                "the server saw {served} requests for {}",
                kinds.len()
            )));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
