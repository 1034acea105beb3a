//! Property tests of request heads: valid heads, randomly mutated, sent raw to one running
//! rouse in front of the test backend.
//!
//! - Every exchange ends within a bound, with a 4xx, a forwarded answer, or (for a head that
//!   never ends) a closed connection: rouse neither panics nor hangs.
//! - A forwarded request reaches the server as `httparse` (the parser hyper uses) reads the
//!   bytes sent: same method, origin-form target, headers but the hop-by-hop ones, plus the
//!   forwarding ones, Host from an absolute-form target; a differential check against an
//!   independent reading of the bytes rather than against rouse's own code.
//! - The same heads sent to a plain hyper server (hyper's defaults) are accepted and refused
//!   alike, except where rouse is stricter on purpose, each case listed in [`Stricter`].
//!
//! 64 cases by default, so the test command stays quick; `PROPTEST_CASES=5000` for a long run.

mod common;
mod raw;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Uri};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{TestCaseError, TestRunner};
use raw::{Raw, RawResponse};
use rouse::Rouse;
use rouse_e2e::InProcessBackend;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// Each exchange (connect, send, answer read) must end within this.
const EXCHANGE: Duration = Duration::from_secs(10);
/// rouse's defaults (`[proxy] max_header_size`, the request line nginx allows).
const MAX_HEADER_SIZE: usize = 32 * 1024;
const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Bodies the test sends in full; a Content-Length past it is left unsent.
const MAX_BODY: u64 = 64 * 1024;

// === heads and their mutations ===

#[derive(Debug, Clone)]
struct Head {
    method: String,
    target: String,
    version: &'static str,
    fields: Vec<(String, String)>,
}

impl Head {
    fn render(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.method, self.target, self.version);
        for (name, value) in &self.fields {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Insert(Index, u8),
    Delete(Index),
    Replace(Index, u8),
    /// A line sent twice.
    DuplicateLine(Index),
    /// A CRLF turned into a bare LF.
    BareLf(Index),
    /// A line added at a line start.
    AddLine(Index, String),
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        match self {
            Mutation::Insert(at, b) => bytes.insert(at.index(bytes.len() + 1), *b),
            Mutation::Delete(at) => {
                bytes.remove(at.index(bytes.len()));
            }
            Mutation::Replace(at, b) => {
                let i = at.index(bytes.len());
                bytes[i] = *b;
            }
            Mutation::DuplicateLine(at) => {
                let lines = line_spans(bytes);
                let (start, end) = lines[at.index(lines.len())];
                let line = bytes[start..end].to_vec();
                bytes.splice(end..end, line);
            }
            Mutation::BareLf(at) => {
                let crlfs: Vec<usize> = bytes
                    .windows(2)
                    .enumerate()
                    .filter(|(_, w)| *w == b"\r\n")
                    .map(|(i, _)| i)
                    .collect();
                if !crlfs.is_empty() {
                    bytes.remove(crlfs[at.index(crlfs.len())]);
                }
            }
            Mutation::AddLine(at, line) => {
                // At the start of a line after the request line: at most just before the empty
                // line that ends the head.
                let starts: Vec<usize> = line_spans(bytes).iter().skip(1).map(|s| s.0).collect();
                let i = if starts.is_empty() {
                    bytes.len()
                } else {
                    starts[at.index(starts.len())]
                };
                bytes.splice(i..i, format!("{line}\r\n").into_bytes());
            }
        }
    }
}

/// Each line's span, its CRLF included.
fn line_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, w) in bytes.windows(2).enumerate() {
        if w == b"\r\n" {
            spans.push((start, i + 2));
            start = i + 2;
        }
    }
    if spans.is_empty() {
        spans.push((0, bytes.len()));
    }
    spans
}

fn token() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,11}"
}

fn value() -> impl Strategy<Value = String> {
    "[!-~]([ -~]{0,18}[!-~])?"
}

fn field() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        (Just("User-Agent".to_owned()), value()),
        (Just("Accept".to_owned()), Just("*/*".to_owned())),
        (Just("Cookie".to_owned()), value()),
        (Just("X-Request-Id".to_owned()), "[0-9a-f]{8}"),
        (
            Just("Connection".to_owned()),
            prop_oneof![
                Just("keep-alive".to_owned()),
                Just("close".to_owned()),
                Just("x-drop".to_owned())
            ]
        ),
        (Just("X-Drop".to_owned()), value()),
        (Just("Keep-Alive".to_owned()), Just("timeout=5".to_owned())),
        (Just("TE".to_owned()), Just("trailers".to_owned())),
        (
            Just("Proxy-Authorization".to_owned()),
            Just("Basic eDp5".to_owned())
        ),
        (
            Just("Content-Length".to_owned()),
            (0u32..20).prop_map(|n| n.to_string())
        ),
        (
            Just("Transfer-Encoding".to_owned()),
            Just("chunked".to_owned())
        ),
        (token(), value()),
    ]
}

fn head() -> impl Strategy<Value = Head> {
    let method = prop_oneof![
        Just("GET".to_owned()),
        Just("POST".to_owned()),
        Just("PUT".to_owned()),
        Just("DELETE".to_owned()),
        Just("OPTIONS".to_owned()),
        Just("PATCH".to_owned()),
        // CONNECT asks for a tunnel, which is another test's subject.
        "[A-Z]{3,8}".prop_filter("not CONNECT", |m| m != "CONNECT"),
    ];
    let path = ("(/[a-z0-9._~-]{0,8})?", "(\\?[a-z0-9=&]{0,10})?")
        .prop_map(|(rest, query)| format!("/inspect{rest}{query}"));
    let target =
        (path, prop::option::weighted(0.2, "[a-z]{1,6}\\.test")).prop_map(|(path, absolute)| {
            match absolute {
                Some(host) => format!("http://{host}{path}"),
                None => path,
            }
        });
    let version = prop_oneof![9 => Just("HTTP/1.1"), 1 => Just("HTTP/1.0")];
    let host = prop::option::weighted(
        0.95,
        prop_oneof![Just("h.test".to_owned()), Just("h.test:8080".to_owned())],
    );
    (
        method,
        target,
        version,
        host,
        prop::collection::vec(field(), 0..6),
    )
        .prop_map(|(method, target, version, host, mut fields)| {
            if let Some(host) = host {
                fields.insert(0, ("Host".to_owned(), host));
            }
            Head {
                method,
                target,
                version,
                fields,
            }
        })
}

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(b'\r'),
        Just(b'\n'),
        Just(b' '),
        Just(b'\t'),
        Just(b':'),
        Just(b','),
        Just(0u8),
        Just(0x7f),
        Just(0x80),
        Just(0xff),
        any::<u8>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let line = prop_oneof![
        Just("Host: other.test".to_owned()),
        Just("Host: h.test".to_owned()),
        Just("Content-Length: 3".to_owned()),
        Just("Transfer-Encoding: chunked".to_owned()),
        Just(" folded".to_owned()),
        (token(), value()).prop_map(|(n, v)| format!("{n}: {v}")),
        prop_oneof![Just(20_000usize), Just(40_000), Just(100_000)]
            .prop_map(|n| format!("X-Big: {}", "b".repeat(n))),
    ];
    prop_oneof![
        (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        any::<Index>().prop_map(Mutation::BareLf),
        (any::<Index>(), line).prop_map(|(i, l)| Mutation::AddLine(i, l)),
    ]
}

/// A valid head and what is done to it.
fn case() -> impl Strategy<Value = (Head, Vec<Mutation>)> {
    (head(), prop::collection::vec(mutation(), 0..4))
}

fn mutated(head: &Head, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = head.render();
    for m in mutations {
        m.apply(&mut bytes);
    }
    bytes
}

// === what httparse reads ===

/// A head as httparse reads it, with what hyper would make of its framing.
#[derive(Debug)]
struct Parsed {
    method: String,
    target: String,
    http11: bool,
    /// Names lower-cased, values as sent, in order.
    fields: Vec<(String, Vec<u8>)>,
    /// The head's length in bytes.
    len: usize,
    /// Some line of the head ends in a LF without a CR.
    bare_lf: bool,
}

enum Reading {
    Complete(Parsed),
    /// The head does not end: rouse must wait for more, then close at the end of input.
    Partial,
    Invalid,
}

fn read(bytes: &[u8]) -> Reading {
    let mut fields = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => Reading::Complete(Parsed {
            method: req.method.unwrap_or_default().to_owned(),
            target: req.path.unwrap_or_default().to_owned(),
            http11: req.version == Some(1),
            fields: req
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                .collect(),
            len,
            bare_lf: (0..len).any(|i| bytes[i] == b'\n' && (i == 0 || bytes[i - 1] != b'\r')),
        }),
        Ok(httparse::Status::Partial) => Reading::Partial,
        Err(_) => Reading::Invalid,
    }
}

/// The body framing hyper derives from a head (RFC 9112 §6.3 as hyper applies it).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// hyper refuses the head.
    Invalid,
}

fn framing(p: &Parsed) -> Framing {
    let (mut te, mut chunked, mut length) = (false, false, None);
    for (name, value) in &p.fields {
        match name.as_str() {
            "transfer-encoding" => {
                if !p.http11 {
                    return Framing::Invalid;
                }
                te = true;
                length = None;
                chunked = std::str::from_utf8(value).is_ok_and(|v| {
                    v.rsplit(',')
                        .next()
                        .is_some_and(|e| e.trim().eq_ignore_ascii_case("chunked"))
                });
            }
            "content-length" if !te => {
                let digits = !value.is_empty() && value.iter().all(u8::is_ascii_digit);
                let Some(n) = std::str::from_utf8(value)
                    .ok()
                    .filter(|_| digits)
                    .and_then(|v| v.parse::<u64>().ok())
                else {
                    return Framing::Invalid;
                };
                match length {
                    Some(prev) if prev != n => return Framing::Invalid,
                    _ => length = Some(n),
                }
            }
            _ => {}
        }
    }
    match (te, chunked, length) {
        (true, false, _) => Framing::Invalid,
        (true, true, _) => Framing::Chunked,
        (false, _, Some(n)) => Framing::Length(n),
        (false, _, None) => Framing::None,
    }
}

/// What to send after the head so that the request is whole, if the test can.
fn body(framing: Framing) -> Option<Vec<u8>> {
    match framing {
        Framing::None | Framing::Invalid => Some(Vec::new()),
        Framing::Chunked => Some(b"0\r\n\r\n".to_vec()),
        Framing::Length(n) if n <= MAX_BODY => Some(vec![b'b'; n as usize]),
        Framing::Length(_) => None,
    }
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// Where rouse refuses what hyper accepts, on purpose. Each is what nginx does too, an RFC
/// MUST that hyper leaves to the application, or (bare LF) what issue 11 asks.
#[derive(Debug, PartialEq)]
enum Stricter {
    /// RFC 9112 §3.2: more than one Host, a Host that is not `host[:port]`, or none in HTTP/1.1
    /// (400); a target with userinfo (RFC 9110 §4.2.4).
    Host,
    /// A target in authority-form (`GET inspect`) for a method other than CONNECT (RFC 9112
    /// §3.2.3): hyper takes it for a host without a path; 400.
    AuthorityForm,
    /// The head is past `max_header_size` (32 KiB; hyper's default is about 400 KB): 431.
    HeadSize,
    /// The request line is past 8 KiB (hyper's limit is 64 KiB): 414.
    RequestLine,
    /// A line of the head ends in a bare LF (RFC 9112 §2.2 lets hyper accept it): 400.
    BareLf,
}

/// Why rouse may refuse a head hyper accepts, judged from the bytes alone.
fn stricter(p: &Parsed) -> Vec<Stricter> {
    let mut why = Vec::new();
    let hosts: Vec<&Vec<u8>> = p
        .fields
        .iter()
        .filter(|(n, _)| n == "host")
        .map(|(_, v)| v)
        .collect();
    let valid_host = |v: &[u8]| {
        std::str::from_utf8(v).is_ok_and(|s| {
            s.is_empty() || (s.parse::<http::uri::Authority>().is_ok() && !s.contains(['@', ',']))
        })
    };
    let target = p.target.parse::<Uri>().ok();
    let userinfo = target
        .as_ref()
        .and_then(|u| u.authority().map(|a| a.as_str().contains('@')))
        .unwrap_or(false);
    if target
        .as_ref()
        .is_some_and(|u| u.authority().is_some() && u.scheme().is_none())
    {
        why.push(Stricter::AuthorityForm);
    }
    if hosts.len() > 1
        || hosts.iter().any(|v| !valid_host(v))
        || (hosts.is_empty() && p.http11)
        || userinfo
    {
        why.push(Stricter::Host);
    }
    // rouse measures `name: value\r\n` per field, hyper the bytes: they differ by the blanks
    // around each colon.
    if p.len + 2 * p.fields.len() > MAX_HEADER_SIZE {
        why.push(Stricter::HeadSize);
    }
    if p.method.len() + p.target.len() + 12 > MAX_REQUEST_LINE {
        why.push(Stricter::RequestLine);
    }
    if p.bare_lf {
        why.push(Stricter::BareLf);
    }
    why
}

/// The request the server must see, as [`Parsed`] says the client sent it: headers by name
/// (a repeated one's values joined with ", ", as the backend reports them).
fn expected_headers(p: &Parsed) -> BTreeMap<String, String> {
    let connection_names: Vec<String> = p
        .fields
        .iter()
        .filter(|(n, _)| n == "connection")
        .flat_map(|(_, v)| {
            text(v)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|t| HeaderName::from_bytes(t.as_bytes()).is_ok())
        .collect();
    let upgrade = p.http11
        && p.fields.iter().any(|(n, _)| n == "upgrade")
        && connection_names.iter().any(|t| t == "upgrade");
    let hop_by_hop = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "transfer-encoding",
        "expect",
    ];
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &p.fields {
        // Upgrade goes only with a WebSocket handshake, and then whatever Connection names.
        let dropped = if name == "upgrade" {
            !upgrade
        } else {
            hop_by_hop.contains(&name.as_str()) || connection_names.contains(name)
        };
        if dropped {
            continue;
        }
        // The body's framing is checked on its own (see `check_forwarded`).
        if name == "content-length" {
            continue;
        }
        out.entry(name.clone()).or_default().push(text(value));
    }
    if upgrade {
        out.insert("connection".into(), vec!["upgrade".into()]);
    }
    let target_authority = p
        .target
        .parse::<Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.as_str().to_owned()));
    let authority = target_authority
        .or_else(|| {
            p.fields
                .iter()
                .find(|(n, _)| n == "host")
                .map(|(_, v)| text(v))
        })
        .unwrap_or_default();
    out.insert("host".into(), vec![authority.clone()]);
    out.insert("x-forwarded-host".into(), vec![authority]);
    out.insert("x-forwarded-proto".into(), vec!["http".into()]);
    let prior = out
        .get("x-forwarded-for")
        .and_then(|v| v.first().cloned())
        .filter(|v| !v.trim().is_empty());
    let xff = match prior {
        Some(prior) => format!("{prior}, 127.0.0.1"),
        None => "127.0.0.1".into(),
    };
    out.insert("x-forwarded-for".into(), vec![xff]);
    // The client's first X-Request-Id if sane, in place of every one it sent; else one rouse
    // made (`MADE`, see `made_request_id`).
    let id = p
        .fields
        .iter()
        .find(|(n, _)| n == "x-request-id")
        .map(|(_, v)| text(v))
        .filter(|id| {
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~:+/=@".contains(&b))
        })
        .unwrap_or_else(|| MADE.to_owned());
    out.insert("x-request-id".into(), vec![id]);
    out.into_iter().map(|(k, v)| (k, v.join(", "))).collect()
}

/// Stands for a request id rouse made: 32 hex digits the client did not send.
const MADE: &str = "MADE";

fn made_request_id(got: &mut BTreeMap<String, String>, p: &Parsed) {
    if let Some(id) = got.get_mut("x-request-id") {
        let sent = p
            .fields
            .iter()
            .any(|(n, v)| n == "x-request-id" && text(v) == *id);
        if !sent && id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            *id = MADE.to_owned();
        }
    }
}

/// The target as the server must see it: origin-form, and without a fragment. A fragment is
/// never part of what a client sends (RFC 9110 §7.1, RFC 9112 §3.2 has no `#` in a
/// request-target); one sent anyway is dropped by hyper's parser, which is what the server
/// should see: the fragment is only ever meant for the client.
fn origin_form(target: &str) -> String {
    let target = target.split('#').next().unwrap_or_default();
    match target.parse::<Uri>() {
        Ok(u) if u.authority().is_some() => u
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned()),
        _ => target.to_owned(),
    }
}

// === sending ===

#[derive(Debug)]
enum Outcome {
    /// The server (or the plain hyper service) answered.
    Served(RawResponse),
    /// Refused before any server: a 4xx from rouse or hyper.
    Refused(RawResponse),
    /// Closed without an answer.
    Closed,
}

impl Outcome {
    fn name(&self) -> String {
        match self {
            Outcome::Served(r) => format!("served {}", r.status),
            Outcome::Refused(r) => format!(
                "refused {} {}",
                r.status,
                r.header("x-rouse-error").unwrap_or_default()
            ),
            Outcome::Closed => "closed".into(),
        }
    }
}

/// Sends `bytes` (a head, as much of it as there is) and `body`, or ends the input after the
/// head when there is no body the test can send; reads the one answer, within [`EXCHANGE`].
async fn exchange(
    addr: SocketAddr,
    bytes: &[u8],
    body: Option<&[u8]>,
    method: &str,
    served_by: &str,
) -> Result<Outcome, String> {
    let mut c = Raw::connect(addr, EXCHANGE).await;
    c.send(bytes).await;
    match body {
        Some(body) => c.send(body).await,
        None => c.shutdown_write().await,
    }
    match c.response(method).await? {
        None => Ok(Outcome::Closed),
        Some(r) if r.header(served_by).is_some() => Ok(Outcome::Served(r)),
        Some(r) if (400..500).contains(&r.status) => Ok(Outcome::Refused(r)),
        Some(r) => Err(format!(
            "neither forwarded nor a 4xx: {} {:?} {}",
            r.status,
            r.headers,
            r.text()
        )),
    }
}

/// What is sent for one case: the head up to its end as httparse sees it (bytes past it would
/// be a next request), and the body its framing calls for.
struct Sent {
    head: Vec<u8>,
    body: Option<Vec<u8>>,
    parsed: Option<Parsed>,
    /// No end of head in sight: hyper may wait for one (see [`has_end`]), so the test ends its
    /// input, and a 4xx or a close are both right.
    unterminated: bool,
}

/// Whether `bytes` hold what hyper takes for the end of a head (`is_complete_fast`). Once a
/// head came in more than one read, hyper parses it again only when such an end arrives: a
/// malformed head without one is not refused until the input ends (the connection then closes
/// without an answer) or `max_header_size` or the header timeout is reached, whereas one that
/// came in a single read is refused at once. Which happens depends on how reads fall.
fn has_end(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == b"\r\n\r\n")
        || bytes.windows(2).any(|w| w == b"\n\n")
        || bytes.windows(3).any(|w| w == b"\n\r\n")
}

fn prepare(bytes: Vec<u8>) -> Sent {
    match read(&bytes) {
        Reading::Complete(p) => {
            let head = bytes[..p.len].to_vec();
            let body = body(framing(&p));
            Sent {
                head,
                body,
                parsed: Some(p),
                unterminated: false,
            }
        }
        Reading::Partial => Sent {
            head: bytes,
            body: None,
            parsed: None,
            unterminated: true,
        },
        Reading::Invalid => {
            let unterminated = !has_end(&bytes);
            Sent {
                head: bytes,
                body: (!unterminated).then(Vec::new),
                parsed: None,
                unterminated,
            }
        }
    }
}

// === the running services ===

struct Env {
    rt: Runtime,
    rouse: Rouse,
    _backend: InProcessBackend,
    plain: SocketAddr,
}

fn env() -> Env {
    let rt = common::runtime();
    let (rouse, backend, plain) = rt.block_on(async {
        let (rouse, backend) = common::in_front_of_a_backend("props").await;
        (rouse, backend, plain_hyper().await)
    });
    Env {
        rt,
        rouse,
        _backend: backend,
        plain,
    }
}

/// A hyper HTTP/1.1 server with hyper's defaults, which reads each request's body and answers
/// 200 (`x-served`), or 400 when the body cannot be read.
async fn plain_hyper() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let status = match req.into_body().collect().await {
                        Ok(_) => 200,
                        Err(_) => 400,
                    };
                    let resp = http::Response::builder()
                        .status(status)
                        .header("x-served", "1")
                        .body(Full::new(Bytes::new()))
                        .expect("a response");
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn runner() -> TestRunner {
    common::prop_runner(64)
}

fn shown(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(600)]).into_owned();
    format!("{s:?}{}", if bytes.len() > 600 { "…" } else { "" })
}

// === the properties ===

#[test]
fn mutated_heads_are_refused_or_forwarded_as_httparse_reads_them() {
    let env = env();
    let rouse = env.rouse.addr();
    let result = runner().run(&case(), |(head, mutations)| {
        let sent = prepare(mutated(&head, &mutations));
        let method = sent.parsed.as_ref().map_or("GET", |p| p.method.as_str());
        let outcome = env
            .rt
            .block_on(exchange(
                rouse,
                &sent.head,
                sent.body.as_deref(),
                method,
                "x-backend-id",
            ))
            .map_err(|e| TestCaseError::fail(format!("{e}\nsent {}", shown(&sent.head))))?;
        let fail = |why: String| TestCaseError::fail(format!("{why}\nsent {}", shown(&sent.head)));
        match (&sent.parsed, &outcome) {
            (_, Outcome::Refused(_)) => Ok(()),
            (None, Outcome::Served(r)) => Err(fail(format!(
                "forwarded a head httparse refuses: {}",
                r.status
            ))),
            (None, Outcome::Closed) if sent.unterminated => Ok(()),
            (None, Outcome::Closed) => Err(fail("closed without a 4xx".into())),
            // Only a body the test could not send in full leaves the outcome to the timing.
            (Some(_), Outcome::Closed) if sent.body.is_none() => Ok(()),
            (Some(_), Outcome::Closed) => Err(fail("closed without an answer".into())),
            (Some(p), Outcome::Served(r)) => check_forwarded(p, r).map_err(fail),
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The backend's report of the request matches what was sent, when it is there to read (the
/// `/inspect` echo; a mutated path gets the backend's 404 instead, a HEAD no body).
fn check_forwarded(p: &Parsed, r: &RawResponse) -> Result<(), String> {
    let target = origin_form(&p.target);
    let echoed =
        target == "/inspect" || target.starts_with("/inspect/") || target.starts_with("/inspect?");
    if r.status != 200 || p.method == "HEAD" || !echoed {
        return Ok(());
    }
    let seen: serde_json::Value = serde_json::from_slice(&r.body)
        .map_err(|e| format!("/inspect answered no JSON ({e}): {}", r.text()))?;
    let framing = framing(p);
    if seen["method"] != p.method.as_str() {
        return Err(format!("method {} became {}", p.method, seen["method"]));
    }
    if seen["uri"] != target.as_str() {
        return Err(format!("target {target} became {}", seen["uri"]));
    }
    let mut got: BTreeMap<String, String> = seen["headers"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    // How the body goes to the server is the proxy's choice (streamed as it came, or buffered
    // and sent with its length): the body must be the same, framed one way only.
    let chunked = got.remove("transfer-encoding");
    let length = got.remove("content-length");
    made_request_id(&mut got, p);
    let want = expected_headers(p);
    if got != want {
        return Err(format!(
            "the server saw other headers\n want {want:?}\n got  {got:?}"
        ));
    }
    let sent = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    if seen["body_len"] != sent {
        return Err(format!("{sent} body bytes became {}", seen["body_len"]));
    }
    match (chunked, length) {
        (Some(te), Some(cl)) => Err(format!(
            "the server got both Transfer-Encoding {te:?} and Content-Length {cl:?}"
        )),
        (None, Some(cl)) if cl.parse::<u64>() != Ok(sent) => {
            Err(format!("{sent} body bytes went with Content-Length {cl:?}"))
        }
        _ => Ok(()),
    }
}

#[test]
fn rouse_accepts_and_refuses_as_plain_hyper_does_but_where_stricter() {
    let env = env();
    let rouse = env.rouse.addr();
    let result = runner().run(&case(), |(head, mutations)| {
        let sent = prepare(mutated(&head, &mutations));
        let method = sent.parsed.as_ref().map_or("GET", |p| p.method.as_str());
        let (via_rouse, plain) = env.rt.block_on(async {
            let via_rouse = exchange(
                rouse,
                &sent.head,
                sent.body.as_deref(),
                method,
                "x-backend-id",
            )
            .await;
            let plain = exchange(
                env.plain,
                &sent.head,
                sent.body.as_deref(),
                method,
                "x-served",
            )
            .await;
            (via_rouse, plain)
        });
        let fail = |why: String| TestCaseError::fail(format!("{why}\nsent {}", shown(&sent.head)));
        let (via_rouse, plain) = (via_rouse.map_err(&fail)?, plain.map_err(&fail)?);
        if sent.parsed.is_some() && sent.body.is_none() {
            // A body left unsent: the outcome is the timing's (see the other property).
            return Ok(());
        }
        if sent.unterminated
            && [&plain, &via_rouse]
                .iter()
                .all(|o| matches!(o, Outcome::Refused(_) | Outcome::Closed))
        {
            return Ok(());
        }
        let why = sent.parsed.as_ref().map(stricter).unwrap_or_default();
        let allowed = match (&plain, &via_rouse) {
            (Outcome::Served(_), Outcome::Served(_))
            | (Outcome::Refused(_), Outcome::Refused(_))
            | (Outcome::Closed, Outcome::Closed) => true,
            (Outcome::Served(_), Outcome::Refused(r)) => match r.status {
                400 => {
                    r.header("x-rouse-error").as_deref() == Some("bad-request")
                        && [Stricter::Host, Stricter::AuthorityForm, Stricter::BareLf]
                            .iter()
                            .any(|s| why.contains(s))
                }
                431 => why.contains(&Stricter::HeadSize),
                414 => why.contains(&Stricter::RequestLine),
                _ => false,
            },
            // A head that does not end, past rouse's limit: rouse says 431 before it ends.
            (Outcome::Closed, Outcome::Refused(r)) => {
                r.status == 431 && sent.head.len() + 2 >= MAX_HEADER_SIZE
            }
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(fail(format!(
                "plain hyper: {}, through rouse: {} (stricter: {why:?})",
                plain.name(),
                via_rouse.name()
            )))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The cases where rouse is stricter than hyper, each shown: hyper serves them, rouse refuses.
#[test]
fn rouse_is_stricter_than_hyper_only_in_the_listed_cases() {
    let env = env();
    let get = |fields: &str| format!("GET /inspect HTTP/1.1\r\n{fields}\r\n");
    let cases: Vec<(Stricter, u16, String)> = vec![
        (Stricter::Host, 400, get("Host: a.test\r\nHost: b.test\r\n")),
        (Stricter::Host, 400, get("Host: a.test\r\nHost: a.test\r\n")),
        (Stricter::Host, 400, get("Host: a.test, b.test\r\n")),
        (Stricter::Host, 400, get("Host: me@a.test\r\n")),
        (Stricter::Host, 400, get("")),
        (
            Stricter::Host,
            400,
            "GET http://me@a.test/inspect HTTP/1.1\r\nHost: a.test\r\n\r\n".into(),
        ),
        (
            Stricter::AuthorityForm,
            400,
            "GET inspect HTTP/1.1\r\nHost: a.test\r\n\r\n".into(),
        ),
        (
            Stricter::HeadSize,
            431,
            get(&format!(
                "Host: a.test\r\nX-Big: {}\r\n",
                "b".repeat(40_000)
            )),
        ),
        (
            Stricter::BareLf,
            400,
            "GET /inspect HTTP/1.1\r\nHost: a.test\nX-A: 1\r\n\r\n".into(),
        ),
        (
            Stricter::RequestLine,
            414,
            format!(
                "GET /inspect/{} HTTP/1.1\r\nHost: a.test\r\n\r\n",
                "u".repeat(9000)
            ),
        ),
    ];
    for (why, status, request) in cases {
        let Reading::Complete(p) = read(request.as_bytes()) else {
            panic!("not a whole head: {request:?}");
        };
        assert!(stricter(&p).contains(&why), "{why:?}: {request:?}");
        let (via_rouse, plain) = env.rt.block_on(async {
            (
                exchange(
                    env.rouse.addr(),
                    request.as_bytes(),
                    Some(&b""[..]),
                    "GET",
                    "x-backend-id",
                )
                .await,
                exchange(
                    env.plain,
                    request.as_bytes(),
                    Some(&b""[..]),
                    "GET",
                    "x-served",
                )
                .await,
            )
        });
        let (via_rouse, plain) = (via_rouse.unwrap(), plain.unwrap());
        assert!(
            matches!(plain, Outcome::Served(_)),
            "{why:?}: hyper {}",
            plain.name()
        );
        match via_rouse {
            Outcome::Refused(r) => assert_eq!(r.status, status, "{why:?}"),
            other => panic!("{why:?}: rouse {}", other.name()),
        }
    }
}
