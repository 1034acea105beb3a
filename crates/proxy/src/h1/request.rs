//! A client's request head, parsed once with httparse into offsets over the read buffer.
//!
//! The fast path takes only heads it is sure of: whatever hyper's path answers with a 4xx of
//! its own (a malformed line, obs-fold, two Hosts or Content-Lengths, any Transfer-Encoding, a
//! head past the limits, absolute- or authority-form, a target `http::Uri` would refuse) is
//! declined, and hyper then reads the same bytes and answers as it always did. So no
//! validation rule exists twice, and the server never sees two requests where hyper would have
//! seen one.
//!
//! One rule is the fast path's own: a bare LF line end is refused (400). RFC 9112 §2.2 lets a
//! recipient accept one, and hyper does (and sends the head on with CRLF); but a head that two
//! parsers may cut into lines differently is the stuff of request smuggling, and a client that
//! sends one is broken or probing. Requests hyper reads after the fast path handed it a
//! connection (see `conn.rs`) keep hyper's leniency.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::lines::{self, FieldSet, bit};
use super::rewrite::is_listed_hop_by_hop;
use crate::limits::{HeadLimits, MAX_REQUEST_LINE};

/// Field lines parsed on the stack; a head with more is declined (hyper counts and answers).
pub(crate) const MAX_FIELDS: usize = 100;
const _: () = assert!(MAX_FIELDS <= FieldSet::BITS as usize);

/// One field line: name and value as ranges of the read buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Field {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

impl Field {
    /// Its name and value in `buf`, the buffer it was parsed from.
    pub(crate) fn of<'b>(&self, buf: &'b [u8]) -> (&'b [u8], &'b [u8]) {
        (&buf[self.name.clone()], &buf[self.value.clone()])
    }
}

/// Where `part`, a slice httparse handed back, lies in `buf`, the buffer it parsed. httparse's
/// slices lie in `buf`, but an empty one (a blank reason phrase) may be a static `""`
/// anywhere: any empty slice is `0..0`.
pub(crate) fn span(buf: &[u8], part: &[u8]) -> Range<usize> {
    match (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize) {
        Some(start) if start + part.len() <= buf.len() => start..start + part.len(),
        _ => 0..0,
    }
}

/// A request head the fast path can forward.
#[derive(Debug, Default)]
pub(crate) struct Head {
    pub method: Range<usize>,
    pub target: Range<usize>,
    /// The bytes of the head, the final CRLF included.
    pub len: usize,
    pub fields: Vec<Field>,
    /// The Host field's value (exactly one, checked).
    pub host: Range<usize>,
    pub content_length: u64,
    /// The client asked to close after this exchange: `Connection: close`, or HTTP/1.0
    /// without `Connection: keep-alive` (RFC 9112 §9.3).
    pub close: bool,
    /// An HTTP/1.0 request: its answer is framed for a client that reads neither chunked
    /// bodies nor 1xx answers (see `response::ClientConn`).
    pub http10: bool,
    /// `TE: trailers`: the client takes trailers on a chunked response.
    pub trailers: bool,
    pub is_head: bool,
    /// `Accept` names text/html on a GET: a browser, which gets the waiting page when held.
    pub browser: bool,
    /// The fields the server never gets from the client: hop-by-hop ones (those a
    /// `Connection` value names only when `plain`), `X-Request-Id` and `X-Forwarded-*`
    /// (rouse writes its own), and `underscored`.
    pub dropped: FieldSet,
    /// `Connection` names no field but the standard hop-by-hop ones and `close`: `dropped`
    /// is whole, and the kept lines can go to the server as they are (`rewrite`).
    pub plain: bool,
    /// The first `X-Forwarded-For` and `X-Request-Id` fields, by index.
    pub forwarded_for: Option<usize>,
    pub request_id: Option<usize>,
    /// Fields dropped for an underscore in their name (`HeadLimits::underscores_in_headers`).
    pub underscored: FieldSet,
}

/// The decline after which hyper keeps the connection (see `conn::Outcome::Decline`).
pub(crate) const UPGRADE: &str = "Upgrade";

/// What reading the buffer gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A whole head the fast path takes.
    Ready,
    /// More bytes are needed.
    Partial,
    /// Hyper must read this (see the module's doc); `why` is for the trace log.
    Decline(&'static str),
    /// A whole head hyper would take but rouse refuses: 400, and the connection closed.
    Refuse(&'static str),
}

impl Head {
    pub fn method<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.method.clone()]
    }

    pub fn target<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.target.clone()]
    }

    /// The target's path, without the query. Bytes, not `str`: ASCII (`valid_target`), and
    /// routed as bytes, so no UTF-8 check is made for every request.
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        let t = self.target(buf);
        let end = t.iter().position(|&b| b == b'?').unwrap_or(t.len());
        &t[..end]
    }

    /// The Host value: a name or IPv4 address, maybe a port (`valid_host`).
    pub fn host<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.host.clone()]
    }

    /// Parses `buf` (which starts at a request boundary) into `self`.
    pub fn parse(&mut self, buf: &[u8], limits: &HeadLimits) -> Parsed {
        if buf.starts_with(b"PRI ") {
            return Parsed::Decline("h2c preface");
        }
        // Uninitialised: httparse writes the slots it fills (see `response::parse`).
        let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, &mut raw) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(_) => return Parsed::Decline("malformed head"),
        };
        let at = |s: &[u8]| span(buf, s);
        let starts = req.headers.iter().map(|h| at(h.name.as_bytes()).start);
        let start = req.method.map_or(0, |m| at(m.as_bytes()).start);
        // httparse reads HTTP/1.0 and HTTP/1.1 only.
        let http10 = req.version == Some(0);
        if !lines::end_in_crlf(buf, start, len, starts) {
            // What the access log shows of it: the request line, as nginx logs a 400.
            let (method, target) = (req.method.unwrap_or(""), req.path.unwrap_or(""));
            self.refused(at(method.as_bytes()), at(target.as_bytes()), len, http10);
            return Parsed::Refuse("bare LF");
        }
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return Parsed::Decline("malformed head");
        };
        if method == "CONNECT" || !valid_target(target.as_bytes()) {
            return Parsed::Decline("target not in origin-form");
        }
        let line = method.len() + 1 + target.len() + 1 + 8 + 2;
        if line > MAX_REQUEST_LINE || req.headers.len() > limits.max_headers {
            return Parsed::Decline("over the head limits");
        }
        self.method = at(method.as_bytes());
        self.target = at(target.as_bytes());
        self.len = len;
        self.fields.clear();
        self.host = 0..0;
        self.content_length = 0;
        self.close = false;
        self.http10 = http10;
        self.trailers = false;
        self.is_head = method == "HEAD";
        self.browser = false;
        self.dropped = 0;
        self.underscored = 0;
        self.plain = true;
        self.forwarded_for = None;
        self.request_id = None;
        let mut named_close: FieldSet = 0;
        let mut close_named = false;
        let mut keep_alive = false;
        let mut size = line + 2;
        let mut hosts = 0;
        let mut lengths = 0;
        for (i, h) in req.headers.iter().enumerate() {
            let name = h.name.as_bytes();
            size += name.len() + 2 + h.value.len() + 2;
            let field = Field {
                name: at(name),
                value: at(h.value),
            };
            let this = bit(i);
            if is_listed_hop_by_hop(name) {
                self.dropped |= this;
            }
            if !limits.underscores_in_headers && name.contains(&b'_') {
                // As nginx's `underscores_in_headers off`: never forwarded, nor read here.
                self.dropped |= this;
                self.underscored |= this;
                self.fields.push(field);
                continue;
            }
            match name.len() {
                4 if eq_lower(name, b"host") => {
                    hosts += 1;
                    if !valid_host(h.value) {
                        return Parsed::Decline("unusual Host");
                    }
                    self.host = field.value.clone();
                }
                14 if eq_lower(name, b"content-length") => {
                    lengths += 1;
                    match parse_length(h.value) {
                        Some(n) => self.content_length = n,
                        None => return Parsed::Decline("bad Content-Length"),
                    }
                }
                17 if eq_lower(name, b"transfer-encoding") => {
                    return Parsed::Decline("Transfer-Encoding");
                }
                6 if eq_lower(name, b"expect") => return Parsed::Decline("Expect"),
                7 if eq_lower(name, b"upgrade") => return Parsed::Decline(UPGRADE),
                10 if eq_lower(name, b"connection") => {
                    for token in tokens(h.value) {
                        if eq_lower(token, b"close") {
                            self.close = true;
                            close_named = true;
                        } else if eq_lower(token, b"keep-alive") {
                            keep_alive = true;
                        } else if token.eq_ignore_ascii_case(b"upgrade") {
                            return Parsed::Decline(UPGRADE);
                        } else if [&b"host"[..], b"content-length"]
                            .iter()
                            .any(|t| token.eq_ignore_ascii_case(t))
                        {
                            return Parsed::Decline("Connection names a framing field");
                        } else if !is_listed_hop_by_hop(token) {
                            self.plain = false;
                        }
                    }
                }
                5 if eq_lower(name, b"close") => named_close |= this,
                12 if eq_lower(name, b"x-request-id") => {
                    self.dropped |= this;
                    self.request_id.get_or_insert(i);
                }
                15 if eq_lower(name, b"x-forwarded-for") => {
                    self.dropped |= this;
                    self.forwarded_for.get_or_insert(i);
                }
                16 if eq_lower(name, b"x-forwarded-host") => self.dropped |= this,
                17 if eq_lower(name, b"x-forwarded-proto") => self.dropped |= this,
                2 if eq_lower(name, b"te") => {
                    self.trailers |= tokens(h.value).any(|t| {
                        let t = t.split(|&b| b == b';').next().unwrap_or(b"");
                        eq_lower(trim(t), b"trailers")
                    });
                }
                6 if eq_lower(name, b"accept") => {
                    self.browser |= method == "GET" && contains(h.value, b"text/html");
                }
                12 if eq_lower(name, b"content-type")
                    && h.value.len() >= 16
                    && h.value[..16].eq_ignore_ascii_case(b"application/grpc") =>
                {
                    return Parsed::Decline("gRPC");
                }
                _ => {}
            }
            self.fields.push(field);
        }
        if close_named {
            self.dropped |= named_close;
        }
        // HTTP/1.0 keeps a connection only when the client asks (hyper and nginx read it so).
        self.close |= http10 && !keep_alive;
        if hosts != 1 || lengths > 1 {
            return Parsed::Decline("Host or Content-Length count");
        }
        if size > limits.max_header_size {
            return Parsed::Decline("over max_header_size");
        }
        Parsed::Ready
    }
}

impl Head {
    /// The head of a refused request: its request line and length, nothing else.
    fn refused(&mut self, method: Range<usize>, target: Range<usize>, len: usize, http10: bool) {
        *self = Head {
            method,
            target,
            len,
            http10,
            fields: std::mem::take(&mut self.fields),
            ..Head::default()
        };
        self.fields.clear();
    }
}

/// A byte class as a table (`class!(|b| test)`): one load per byte where a chain of
/// comparisons was several.
macro_rules! class {
    (|$b:ident| $test:expr) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            let $b = i as u8;
            t[i] = $test;
            i += 1;
        }
        t
    }};
}

/// Origin-form made of the characters RFC 3986 allows, which `http::Uri` takes as they are (no
/// fragment: hyper would drop it).
fn valid_target(t: &[u8]) -> bool {
    const TARGET: [bool; 256] = class!(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b':'
                    | b'/'
                    | b'?'
                    | b'@'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            )
    });
    t.first() == Some(&b'/') && t.iter().all(|&b| TARGET[usize::from(b)])
}

/// A plain `name[:port]`: letters, digits, dots and dashes, and a port of 1 to 5 digits under
/// 65536. Anything else (IPv6 literals, empty, odd characters) is left to hyper's path.
/// One pass over the bytes (the name's end is where its characters stop).
fn valid_host(v: &[u8]) -> bool {
    const NAME: [bool; 256] = class!(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let end = v
        .iter()
        .position(|&b| !NAME[usize::from(b)])
        .unwrap_or(v.len());
    if end == 0 {
        return false;
    }
    let port = match &v[end..] {
        [] => return true,
        [b':', port @ ..] => port,
        _ => return false,
    };
    let mut n = 0u32;
    for &d in port {
        if !d.is_ascii_digit() {
            return false;
        }
        n = n * 10 + u32::from(d - b'0');
    }
    (1..=5).contains(&port.len()) && n <= u32::from(u16::MAX)
}

/// Digits only, as RFC 9110 §8.6 says (no sign, no list, no spaces).
pub(crate) fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The comma-separated tokens of a field value, trimmed, empty ones skipped.
pub(crate) fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

/// Whether `v` is `lower` but for case, where `lower` holds only lowercase letters, digits
/// and `-`, and `v` only bytes httparse lets into a head (a field's name or value: tab, space,
/// visible ASCII, obs-text). Setting bit 0x20 then matches exactly what `eq_ignore_ascii_case`
/// does: a letter of either case meets its lowercase, and no other such byte lands on a
/// letter, a digit or `-` (CR would land on `-`, and never gets here). Without short-circuits
/// the comparison needs no per-byte case folding: names are compared several times per field.
pub(crate) fn eq_lower(v: &[u8], lower: &'static [u8]) -> bool {
    debug_assert!(
        lower
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
    );
    v.len() == lower.len()
        && v.iter()
            .zip(lower)
            .fold(0, |diff, (&b, &l)| diff | ((b | 0x20) ^ l))
            == 0
}

pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let Some(start) = start else { return &[] };
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(start);
    &v[start..=end]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `valid_host` as its doc says it, in the plainest terms.
    fn host_by_definition(v: &[u8]) -> bool {
        let (name, port) = match v.iter().position(|&b| b == b':') {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        };
        let name_ok = !name.is_empty()
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        let port_ok = port.is_none_or(|p| {
            (1..=5).contains(&p.len())
                && p.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(p).unwrap().parse::<u32>().unwrap() <= 65535
        });
        name_ok && port_ok
    }

    #[test]
    fn hosts_taken_and_left() {
        for ok in [
            "a",
            "app.test",
            "127.0.0.1:8080",
            "x-y.z:1",
            "h:65535",
            "h:00080",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for no in [
            "", ":80", "h:", "h:65536", "h:123456", "h:8a", "h:80:80", "[::1]", "a b", "a_b",
        ] {
            assert!(!valid_host(no.as_bytes()), "{no}");
        }
    }

    fn parse(text: &str) -> (Head, Parsed) {
        let mut h = Head::default();
        let p = h.parse(text.as_bytes(), &HeadLimits::default());
        (h, p)
    }

    proptest::proptest! {
        /// The one-pass check takes exactly the hosts its definition does.
        #[test]
        fn valid_host_is_its_definition(
            v in proptest::collection::vec(
                proptest::sample::select(b"aZ09.-:_[] \x80".to_vec()),
                0..12,
            ),
            port in 0u32..200_000,
            with_port in proptest::prelude::any::<bool>(),
        ) {
            let mut v = v;
            if with_port {
                v.extend_from_slice(format!(":{port}").as_bytes());
            }
            proptest::prop_assert_eq!(valid_host(&v), host_by_definition(&v), "{:?}", v);
        }

        /// For the bytes a head may hold and the lowercase names rouse looks for,
        /// `eq_lower` is `eq_ignore_ascii_case`.
        #[test]
        fn eq_lower_is_eq_ignore_ascii_case_for_head_bytes(
            name in proptest::sample::select(vec![
                &b"host"[..], b"content-length", b"te", b"keep-alive", b"x-request-id", b"close",
            ]),
            flips in proptest::collection::vec(proptest::prelude::any::<bool>(), 14),
            other in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::Just(b'\t'),
                    0x20u8..0x7f,
                    0x80u8..=0xff,
                ],
                0..16,
            ),
            pick in 0..3u8,
        ) {
            // The name in mixed case, one byte of it changed, or other bytes altogether.
            let mut v: Vec<u8> = name
                .iter()
                .zip(&flips)
                .map(|(&b, &up)| if up { b.to_ascii_uppercase() } else { b })
                .collect();
            match pick {
                0 => {}
                1 => {
                    if let Some(&o) = other.first() {
                        let at = usize::from(o) % v.len();
                        v[at] = o;
                    }
                }
                _ => v = other.clone(),
            }
            proptest::prop_assert_eq!(eq_lower(&v, name), v.eq_ignore_ascii_case(name));
        }
    }

    #[test]
    fn a_plain_request_is_taken_with_its_offsets() {
        let text = "GET /a/b?c=1 HTTP/1.1\r\nHost: app.test:8080\r\nAccept: text/html\r\n\
                    Content-Length: 3\r\nConnection: keep-alive, close\r\nTE: trailers\r\n\r\nabc";
        let (h, p) = parse(text);
        assert_eq!(p, Parsed::Ready);
        let buf = text.as_bytes();
        assert_eq!(h.method(buf), b"GET");
        assert_eq!(h.target(buf), b"/a/b?c=1");
        assert_eq!(h.path(buf), b"/a/b");
        assert_eq!(h.host(buf), b"app.test:8080");
        assert_eq!(h.content_length, 3);
        assert!(h.close && h.trailers && h.browser && !h.is_head);
        assert_eq!(h.len, text.len() - 3);
        assert_eq!(h.fields.len(), 5);
    }

    /// RFC 9112 §9.3: an HTTP/1.0 connection persists only when the client says
    /// `keep-alive`, and `close` wins over it; HTTP/1.1 persists unless told to close.
    #[test]
    fn http10_keeps_its_connection_only_when_asked() {
        for (text, close) in [
            ("GET / HTTP/1.0\r\nHost: a\r\n\r\n", true),
            (
                "GET / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n",
                false,
            ),
            (
                "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n",
                true,
            ),
            // Only `Connection` says it (hyper reads it so too).
            ("GET / HTTP/1.0\r\nHost: a\r\nKeep-Alive: 300\r\n\r\n", true),
            (
                "GET / HTTP/1.0\r\nHost: a\r\nProxy-Connection: keep-alive\r\n\r\n",
                true,
            ),
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", false),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
                false,
            ),
        ] {
            let (h, p) = parse(text);
            assert_eq!(p, Parsed::Ready, "{text:?}");
            assert_eq!(h.close, close, "{text:?}");
            assert_eq!(h.http10, text.contains("HTTP/1.0"), "{text:?}");
            // `keep-alive` names no field of its own: the lines can be copied as they are.
            assert!(h.plain, "{text:?}");
        }
    }

    #[test]
    fn partial_heads_ask_for_more() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a\r\n").1, Parsed::Partial);
        assert_eq!(parse("GE").1, Parsed::Partial);
    }

    #[test]
    fn what_hyper_answers_itself_is_declined() {
        for text in [
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            // HTTP/1.0 without Host: hyper's path routes it by none.
            "GET / HTTP/1.0\r\n\r\n",
            "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET a.test:80 HTTP/1.1\r\nHost: a\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/grpc\r\n\r\n",
        ] {
            assert!(matches!(parse(text).1, Parsed::Decline(_)), "{text:?}");
        }
    }

    #[test]
    fn a_bare_lf_is_refused_here_whatever_else_the_head_holds() {
        for text in [
            "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
            "GET / HTTP/1.1\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n\n",
            // An empty line before the request line, which httparse passes over.
            "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            // What would be declined otherwise (HTTP/1.0, a chunked body) is refused first.
            "GET / HTTP/1.0\r\nHost: a\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\n\r\n",
        ] {
            assert_eq!(parse(text).1, Parsed::Refuse("bare LF"), "{text:?}");
        }
        // What the access log shows of a refused head: its request line, no field.
        let text = "POST /p?q=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: x\nX: y\r\n\r\n";
        let (h, p) = parse(text);
        assert_eq!(p, Parsed::Refuse("bare LF"));
        let buf = text.as_bytes();
        assert_eq!(
            (h.method(buf), h.target(buf)),
            (&b"POST"[..], &b"/p?q=1"[..])
        );
        assert!(h.fields.is_empty() && h.host.is_empty() && h.content_length == 0);
    }

    #[test]
    fn fields_named_with_an_underscore_are_dropped_unless_allowed() {
        let text = "GET / HTTP/1.1\r\nHost: a\r\nX_Real_Ip: 1.2.3.4\r\nX-Ok: 1\r\n\r\n";
        let (h, p) = parse(text);
        assert_eq!(p, Parsed::Ready);
        assert_eq!((h.underscored, h.dropped), (0b010, 0b010));
        let mut h = Head::default();
        let allowed = HeadLimits {
            underscores_in_headers: true,
            ..HeadLimits::default()
        };
        assert_eq!(h.parse(text.as_bytes(), &allowed), Parsed::Ready);
        assert_eq!((h.underscored, h.dropped), (0, 0));
        // Not read either: an underscored name is never taken for the field it resembles.
        let (h, p) = parse("GET / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\n");
        assert_eq!((p, h.content_length), (Parsed::Ready, 0));
    }

    #[test]
    fn empty_lines_before_the_request_line_are_passed_over() {
        let text = "\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        let (h, p) = parse(text);
        assert_eq!(p, Parsed::Ready);
        assert_eq!(h.target(text.as_bytes()), b"/x");
    }

    #[test]
    fn limits_are_left_to_hyper() {
        let long = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "a".repeat(MAX_REQUEST_LINE)
        );
        assert!(matches!(parse(&long).1, Parsed::Decline(_)));
        let mut h = Head::default();
        let text = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let tight = HeadLimits {
            max_header_size: 26,
            max_headers: 10,
            ..HeadLimits::default()
        };
        assert!(matches!(
            h.parse(text.as_bytes(), &tight),
            Parsed::Decline(_)
        ));
        let exact = HeadLimits {
            max_header_size: 27,
            max_headers: 1,
            ..HeadLimits::default()
        };
        assert_eq!(h.parse(text.as_bytes(), &exact), Parsed::Ready);
    }

    #[test]
    fn lengths_are_digits_only() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b"123"), Some(123));
        for bad in [
            &b""[..],
            b"-1",
            b"1 ",
            b"1,1",
            b"0x1",
            b"9999999999999999999",
        ] {
            assert_eq!(parse_length(bad), None, "{bad:?}");
        }
    }

    /// Whatever the fast path takes, hyper's path takes too, and reads the same: the method,
    /// target and fields make a valid `http::Request` that passes `check_head` and
    /// `request_authority` with the same host, and the body length is the one declared.
    mod agrees_with_hyper {
        use super::*;
        use proptest::prelude::*;

        fn piece() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("Host: a.test".to_owned()),
                Just("Host: A.Test:8080".to_owned()),
                Just("Host: a b".to_owned()),
                Just("host: [::1]".to_owned()),
                Just("Content-Length: 3".to_owned()),
                Just("content-length: 03".to_owned()),
                Just("Content-Length: 3, 3".to_owned()),
                Just("Transfer-Encoding: chunked".to_owned()),
                Just("Connection: close".to_owned()),
                Just("Connection: x-a".to_owned()),
                Just("Expect: 100-continue".to_owned()),
                Just("X-A: v\u{e9}".to_owned()),
                Just(" X-Fold: y".to_owned()),
                Just("X-Bad Name: y".to_owned()),
                "[a-zA-Z-]{1,8}: [ -~]{0,12}",
            ]
        }

        proptest! {
            #[test]
            fn a_head_taken_here_is_taken_there(
                method in prop_oneof![Just("GET"), Just("POST"), Just("HEAD"), Just("PURGE"), Just("G T")],
                target in "(/|http://a/|\\*|a:1)[ -~]{0,16}",
                version in prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0"), Just("HTTP/2.0")],
                fields in prop::collection::vec(piece(), 0..6),
                lf in any::<bool>(),
            ) {
                let eol = if lf { "\n" } else { "\r\n" };
                let mut text = format!("{method} {target} {version}\r\n");
                for f in &fields {
                    text.push_str(f);
                    text.push_str(eol);
                }
                text.push_str("\r\n");
                let buf = text.as_bytes();
                let mut head = Head::default();
                if head.parse(buf, &HeadLimits::default()) != Parsed::Ready {
                    return Ok(());
                }
                let mut b = http::Request::builder()
                    .method(head.method(buf))
                    .uri(head.target(buf));
                for f in &head.fields {
                    b = b.header(&buf[f.name.clone()], &buf[f.value.clone()]);
                }
                let req = b.body(()).expect("hyper's types take it");
                let uri = req.uri().to_string();
                prop_assert_eq!(uri.as_bytes(), head.target(buf));
                prop_assert!(crate::limits::check_head(&req, &HeadLimits::default()).is_ok());
                let authority = crate::headers::request_authority(&req).expect("an authority");
                prop_assert_eq!(authority.as_bytes(), head.host(buf));
                let lengths: Vec<_> = req.headers().get_all("content-length").iter().collect();
                prop_assert!(lengths.len() <= 1);
                let declared = lengths.first().map_or(0, |v| v.to_str().unwrap().parse::<u64>().unwrap());
                prop_assert_eq!(declared, head.content_length);
                prop_assert!(!req.headers().contains_key("transfer-encoding"));
            }
        }
    }
}
