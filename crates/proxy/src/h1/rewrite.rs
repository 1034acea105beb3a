//! The head sent to a server, written straight from the client's head (the fast path's
//! bytes, or the `HeaderMap` of a request the relay sends): the request line in origin-form,
//! every field but the hop-by-hop ones, then the forwarding fields, as `headers::to_upstream`
//! makes them for hyper's client.

use std::io::Write;
use std::net::IpAddr;

use http::HeaderMap;

use super::lines::{self, FieldSet};
use super::request::{Field, Head, eq_lower, tokens, trim};
use crate::access::request_id::{self, Generated};

/// Hop-by-hop fields (`headers::HOP_BY_HOP`, plus Upgrade, which the fast path never keeps):
/// what `is_listed_hop_by_hop` matches, held to this list by a test.
#[cfg(test)]
const HOP_BY_HOP: [&[u8]; 8] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"transfer-encoding",
    b"upgrade",
];

/// Fields rouse sets itself (replacing the client's).
const SET_HERE: [&[u8]; 3] = [
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
];

/// Whether `name` is one of the standard hop-by-hop fields (not counting those a
/// `Connection` field names): `HOP_BY_HOP`, told apart by length first, as every field of
/// both heads is asked.
pub(crate) fn is_listed_hop_by_hop(name: &[u8]) -> bool {
    match name.len() {
        2 => eq_lower(name, b"te"),
        7 => eq_lower(name, b"upgrade"),
        10 => eq_lower(name, b"connection") || eq_lower(name, b"keep-alive"),
        16 => eq_lower(name, b"proxy-connection"),
        17 => eq_lower(name, b"transfer-encoding"),
        18 => eq_lower(name, b"proxy-authenticate"),
        19 => eq_lower(name, b"proxy-authorization"),
        _ => false,
    }
}

/// Whether `name` is hop-by-hop, or named by one of `connection`'s values.
#[cfg(test)]
pub(crate) fn is_hop_by_hop<'a>(
    name: &[u8],
    connection: impl Iterator<Item = &'a [u8]> + Clone,
) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || connection
            .flat_map(tokens)
            .any(|t| name.eq_ignore_ascii_case(t))
}

/// The hop-by-hop fields of one head: the standard ones and those its `Connection` values
/// name, the values split once per head (not again for every field, which was most of a
/// small response's rewriting).
pub(crate) struct HopByHop<'a, F> {
    /// The first names `Connection` lists (a head rarely has more than one or two).
    named: [&'a [u8]; 8],
    len: usize,
    /// `Connection` listed more than `named` holds: the rest are read from here.
    more: Option<F>,
}

impl<'a, F: Fields<'a>> HopByHop<'a, F> {
    pub(crate) fn new(fields: F) -> HopByHop<'a, F> {
        let mut named: [&[u8]; 8] = [&[]; 8];
        let mut len = 0;
        let mut more = None;
        for t in connection_values(fields).flat_map(tokens) {
            if len == named.len() {
                more = Some(fields);
                break;
            }
            named[len] = t;
            len += 1;
        }
        HopByHop { named, len, more }
    }

    pub(crate) fn contains(&self, name: &[u8]) -> bool {
        is_listed_hop_by_hop(name)
            || self.named[..self.len]
                .iter()
                .any(|t| name.eq_ignore_ascii_case(t))
            || self.more.is_some_and(|fields| {
                connection_values(fields)
                    .flat_map(tokens)
                    .any(|t| name.eq_ignore_ascii_case(t))
            })
    }
}

/// A head's fields, name and value each, read as often as needed: the fast path's, parsed
/// into a buffer ([`InBuf`]), or hyper's `HeaderMap` (the relay's requests).
pub(crate) trait Fields<'a>: Copy {
    fn each(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])>;
}

/// The fields of a head parsed from a buffer: their offsets, the buffer, and those left out
/// as if the head did not hold them (at most 128 fields: see [`FieldSet`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct InBuf<'f, 'b>(pub &'f [Field], pub &'b [u8], pub FieldSet);

impl<'b> Fields<'b> for InBuf<'_, 'b> {
    fn each(self) -> impl Iterator<Item = (&'b [u8], &'b [u8])> {
        let InBuf(fields, buf, left_out) = self;
        fields
            .iter()
            .enumerate()
            .filter(move |&(i, _)| left_out & lines::bit(i) == 0)
            .map(move |(_, f)| f.of(buf))
    }
}

impl<'a> Fields<'a> for &'a HeaderMap {
    fn each(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
    }
}

fn connection_values<'a>(fields: impl Fields<'a>) -> impl Iterator<Item = &'a [u8]> {
    fields
        .each()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"connection"))
        .map(|(_, value)| value)
}

/// The request id a request goes to its server with: the client's, or one made here.
pub(crate) enum RequestId<'b> {
    Client(&'b [u8]),
    Made(Generated),
}

impl RequestId<'_> {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            RequestId::Client(id) => id,
            RequestId::Made(id) => id.as_bytes(),
        }
    }
}

/// The client's first `X-Request-Id`, when it is one to keep (`request_id::is_sane`).
pub(crate) fn client_request_id<'b>(head: &Head, buf: &'b [u8]) -> Option<&'b [u8]> {
    head.fields
        .iter()
        .find(|f| buf[f.name.clone()].eq_ignore_ascii_case(request_id::HEADER.as_bytes()))
        .map(|f| &buf[f.value.clone()])
        .filter(|id| request_id::is_sane(id))
}

/// A request head as the server's is written from: the fast path's, parsed from the client's
/// bytes, or hyper's request (`relay`).
pub(crate) struct Source<'b, F> {
    pub method: &'b [u8],
    /// The target in origin form.
    pub target: &'b [u8],
    /// The client's fields.
    pub fields: F,
    /// The host the client asked for (`headers::request_authority`, a valid field value):
    /// `X-Forwarded-Host`, and
    pub host: &'b [u8],
    /// the `Host` field too, in place of any the client sent: where the target named the
    /// authority (absolute-form, HTTP/2) or no Host came (`headers::to_upstream`'s rule).
    pub set_host: bool,
}

/// Which `X-Request-Id` the server gets.
pub(crate) enum Id<'i> {
    /// The client's fields, left as they are (tests of the rest of the rewriting).
    #[cfg(test)]
    Untouched,
    /// The client's first one if sane (`request_id::is_sane`), else a new one; any other the
    /// client sent is dropped.
    Choose,
    /// This one, in place of the client's (hyper's side chose it already, for its log).
    Given(&'i [u8]),
}

/// Appends the upstream head of the request `head` (over `buf`) to `out`, without a request
/// id of rouse's (as `headers::to_upstream` alone).
#[cfg(test)]
pub(crate) fn upstream_head(
    head: &Head,
    buf: &[u8],
    client_ip: IpAddr,
    https: bool,
    out: &mut Vec<u8>,
) {
    write_head(parsed(head, buf), client_ip, https, Id::Untouched, out);
}

/// Appends the upstream head of the request `head` (over `buf`) to `out`, with its
/// `X-Request-Id` (as `headers::to_upstream` then `headers::set_request_id`): the client's
/// first one if sane, else a new one; any other the client sent is dropped.
pub(crate) fn upstream_head_with_id<'b>(
    head: &Head,
    buf: &'b [u8],
    client_ip: IpAddr,
    https: bool,
    out: &mut Vec<u8>,
) -> RequestId<'b> {
    if !head.plain {
        return write_head(parsed(head, buf), client_ip, https, Id::Choose, out)
            .unwrap_or(RequestId::Client(b""));
    }
    // What `write_head` writes, with the lines parsing marked to keep copied as they are: the
    // request line (origin-form, HTTP/1.1, single spaces: what `write_head` writes), then
    // every field but those in `dropped`.
    let value = |at: Option<usize>| at.map(|i| head.fields[i].of(buf).1);
    if head.http10 {
        // The server gets HTTP/1.1 whatever the client spoke, as from hyper's path
        // (`headers::to_upstream`): its connection stays in the pool.
        out.extend_from_slice(&buf[head.method.start..head.target.end]);
        out.extend_from_slice(b" HTTP/1.1\r\n");
    } else {
        out.extend_from_slice(
            &buf[head.method.start..lines::after_start_line(head.len, &head.fields)],
        );
    }
    lines::copy_kept(buf, head.len, &head.fields, head.dropped, out);
    let id = match value(head.request_id).filter(|id| request_id::is_sane(id)) {
        Some(id) => RequestId::Client(id),
        None => RequestId::Made(request_id::generate()),
    };
    let host = &buf[head.host.clone()];
    forwarding(out, host, https, value(head.forwarded_for), client_ip);
    write_id(out, id.as_bytes());
    out.extend_from_slice(b"\r\n");
    id
}

/// The fast path's head as a [`Source`]: its Host goes through as the client wrote it.
fn parsed<'h, 'b>(head: &'h Head, buf: &'b [u8]) -> Source<'b, InBuf<'h, 'b>> {
    Source {
        method: head.method(buf),
        target: head.target(buf),
        fields: InBuf(&head.fields, buf, head.underscored),
        host: &buf[head.host.clone()],
        set_host: false,
    }
}

/// Appends the server's head of the request `src` to `out`: the request line, every field
/// but the hop-by-hop ones and those rouse sets, then the forwarding fields and the request
/// id as `id` says. The id it chose, for [`Id::Choose`].
pub(crate) fn write_head<'b, F: Fields<'b>>(
    src: Source<'b, F>,
    client_ip: IpAddr,
    https: bool,
    id: Id<'_>,
    out: &mut Vec<u8>,
) -> Option<RequestId<'b>> {
    let with_id = match id {
        #[cfg(test)]
        Id::Untouched => false,
        Id::Choose | Id::Given(_) => true,
    };
    let hop = HopByHop::new(src.fields);
    out.extend_from_slice(src.method);
    out.push(b' ');
    out.extend_from_slice(src.target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if src.set_host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(src.host);
        out.extend_from_slice(b"\r\n");
    }
    // `headers::append_forwarded_for` reads the first X-Forwarded-For only, as `get` does.
    let mut prior_for: Option<&[u8]> = None;
    let mut client_id: Option<&[u8]> = None;
    for (name, value) in src.fields.each() {
        if with_id && name.eq_ignore_ascii_case(request_id::HEADER.as_bytes()) {
            if client_id.is_none() {
                client_id = Some(value);
            }
            continue;
        }
        if SET_HERE.iter().any(|s| name.eq_ignore_ascii_case(s)) {
            // A list the client's `Connection` names is dropped before it is extended.
            if prior_for.is_none()
                && name.eq_ignore_ascii_case(b"x-forwarded-for")
                && !hop.contains(name)
            {
                prior_for = Some(value);
            }
            continue;
        }
        // hyper answered an `Expect: 100-continue` itself (the fast path declines one).
        if hop.contains(name)
            || name.eq_ignore_ascii_case(b"expect")
            || (src.set_host && name.eq_ignore_ascii_case(b"host"))
        {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    forwarding(out, src.host, https, prior_for, client_ip);
    let chosen = match id {
        #[cfg(test)]
        Id::Untouched => None,
        Id::Choose => Some(match client_id.filter(|id| request_id::is_sane(id)) {
            Some(id) => RequestId::Client(id),
            None => RequestId::Made(request_id::generate()),
        }),
        Id::Given(given) => {
            write_id(out, given);
            None
        }
    };
    if let Some(chosen) = &chosen {
        write_id(out, chosen.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    chosen
}

/// The forwarding fields: `X-Forwarded-Host`, `-Proto`, and `-For` extending the client's
/// first list (`prior_for`) with its address.
fn forwarding(out: &mut Vec<u8>, host: &[u8], https: bool, prior_for: Option<&[u8]>, ip: IpAddr) {
    out.extend_from_slice(b"x-forwarded-host: ");
    out.extend_from_slice(host);
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    out.extend_from_slice(if https { b"https" } else { b"http" });
    out.extend_from_slice(b"\r\nx-forwarded-for: ");
    // `HeaderValue::to_str` refuses anything but visible ASCII and tabs: such a prior list
    // is dropped there, and here.
    if let Some(prior) = prior_for
        && !trim(prior).is_empty()
        && prior
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        out.extend_from_slice(prior);
        out.extend_from_slice(b", ");
    }
    push_ip(out, ip);
    out.extend_from_slice(b"\r\n");
}

fn write_id(out: &mut Vec<u8>, id: &[u8]) {
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(id);
    out.extend_from_slice(b"\r\n");
}

/// Appends `ip` as `Display` writes it; IPv4 (every request's case behind most load balancers
/// and on loopback) without the formatter, which was 1% of a small request's CPU.
pub(crate) fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// A head's fields as lowercase names and values, to compare heads in tests: those of a
/// request as it goes out (parsed back), or of hyper's `HeaderMap`.
#[cfg(test)]
pub(crate) fn wire_fields(fields: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// See [`wire_fields`].
#[cfg(test)]
pub(crate) fn map_fields(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::request::Parsed;
    use crate::limits::HeadLimits;
    use std::net::Ipv4Addr;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));

    fn rewrite(text: &str, https: bool) -> String {
        let mut h = Head::default();
        assert_eq!(
            h.parse(text.as_bytes(), &HeadLimits::default()),
            Parsed::Ready
        );
        let mut out = Vec::new();
        upstream_head(&h, text.as_bytes(), CLIENT, https, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hop_by_hop_and_connection_named_fields_are_dropped() {
        let out = rewrite(
            "GET /x?y HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\n\
             Keep-Alive: timeout=5\r\nX-Secret: 1\r\nTE: trailers\r\n\
             Proxy-Authorization: Basic x\r\nX-Kept: yes\r\nTrailer: x-sum\r\n\r\n",
            false,
        );
        assert_eq!(
            out,
            "GET /x?y HTTP/1.1\r\nHost: a\r\nX-Kept: yes\r\nTrailer: x-sum\r\n\
             x-forwarded-host: a\r\nx-forwarded-proto: http\r\nx-forwarded-for: 10.1.2.3\r\n\r\n"
        );
    }

    #[test]
    fn forwarding_fields_replace_the_client_s_and_extend_its_list() {
        let out = rewrite(
            "POST / HTTP/1.1\r\nX-Forwarded-For: 192.0.2.1\r\nHost: a.b:81\r\n\
             X-Forwarded-Proto: ftp\r\nX-Forwarded-Host: evil\r\nX-Forwarded-For: 192.0.2.9\r\n\
             Content-Length: 0\r\n\r\n",
            true,
        );
        assert_eq!(
            out,
            "POST / HTTP/1.1\r\nHost: a.b:81\r\nContent-Length: 0\r\n\
             x-forwarded-host: a.b:81\r\nx-forwarded-proto: https\r\n\
             x-forwarded-for: 192.0.2.1, 10.1.2.3\r\n\r\n"
        );
    }

    #[test]
    fn a_blank_prior_list_is_replaced() {
        let out = rewrite(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For:  \r\n\r\n",
            false,
        );
        assert!(out.ends_with("x-forwarded-for: 10.1.2.3\r\n\r\n"), "{out}");
    }

    proptest::proptest! {
        /// Told apart by length, the list is still `HOP_BY_HOP`, in any case, and nothing
        /// else (a name one byte off included).
        #[test]
        fn listed_hop_by_hop_is_the_list(
            at in 0..HOP_BY_HOP.len() + 3,
            flips in proptest::collection::vec(proptest::prelude::any::<bool>(), 19),
            change in proptest::option::of((0usize..19, proptest::prelude::any::<u8>())),
        ) {
            let others: [&[u8]; 3] = [b"content-length", b"x-forwarded-for", b"tf"];
            let base = match HOP_BY_HOP.get(at) {
                Some(h) => *h,
                None => others[at - HOP_BY_HOP.len()],
            };
            let mut name: Vec<u8> = base
                .iter()
                .zip(&flips)
                .map(|(&b, &f)| if f { b.to_ascii_uppercase() } else { b })
                .collect();
            if let Some((i, b)) = change {
                let i = i % name.len();
                name[i] = b;
            }
            let listed = HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h));
            // `eq_lower`'s domain: the bytes httparse lets into a name (no CR, see its doc).
            proptest::prop_assume!(name.iter().all(|b| b.is_ascii_graphic()));
            proptest::prop_assert_eq!(is_listed_hop_by_hop(&name), listed, "{:?}", name);
        }
    }

    proptest::proptest! {
        /// Gathered once per head, the hop-by-hop names are those `is_hop_by_hop` finds by
        /// reading every `Connection` value again for each field, however many it lists.
        #[test]
        fn hop_by_hop_names_gathered_once_agree_with_reading_them_each_time(
            fields in proptest::collection::vec((0..8usize, proptest::collection::vec(0..8usize, 0..12)), 0..8),
        ) {
            const NAMES: [&str; 8] =
                ["Connection", "x-a", "X-B", "te", "Keep-Alive", "close", "Upgrade", "x-c"];
            let mut buf = Vec::new();
            let mut parsed = Vec::new();
            for (name, tokens) in &fields {
                let start = buf.len();
                buf.extend_from_slice(NAMES[*name].as_bytes());
                let name = start..buf.len();
                let list: Vec<&str> = tokens.iter().map(|t| NAMES[*t]).collect();
                let start = buf.len();
                buf.extend_from_slice(list.join(" , ").as_bytes());
                parsed.push(Field { name, value: start..buf.len() });
            }
            let hop = HopByHop::new(InBuf(&parsed, &buf, 0));
            let connection = parsed
                .iter()
                .filter(|f| buf[f.name.clone()].eq_ignore_ascii_case(b"connection"))
                .map(|f| &buf[f.value.clone()]);
            for name in NAMES.iter().chain(&["proxy-authorization", "Transfer-Encoding", "x-d"]) {
                proptest::prop_assert_eq!(
                    hop.contains(name.as_bytes()),
                    is_hop_by_hop(name.as_bytes(), connection.clone()),
                    "{}", name
                );
            }
        }

        #[test]
        fn client_addresses_are_written_as_display_writes_them(
            v4 in proptest::prelude::any::<[u8; 4]>(),
            v6 in proptest::prelude::any::<[u16; 8]>(),
        ) {
            for ip in [IpAddr::from(v4), IpAddr::from(v6), IpAddr::from([0, 0, 0, 0])] {
                let mut out = Vec::new();
                push_ip(&mut out, ip);
                proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
            }
        }
    }

    mod agrees_with_to_upstream {
        use super::*;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = (String, String)> {
            let name = prop_oneof![
                Just("Connection"),
                Just("Keep-Alive"),
                Just("TE"),
                Just("Proxy-Authorization"),
                Just("X-Forwarded-For"),
                Just("x-forwarded-proto"),
                Just("X-Forwarded-Host"),
                Just("X-A"),
                Just("x-b"),
                Just("Trailer"),
                Just("Accept"),
                Just("X_Forwarded_For"),
                Just("x_a"),
            ];
            let value = prop_oneof![
                Just("close"),
                Just("keep-alive, X-A"),
                Just("x-b"),
                Just("192.0.2.1"),
                Just(" "),
                Just("trailers"),
                Just("v"),
            ];
            (name, value).prop_map(|(n, v)| (n.to_owned(), v.to_owned()))
        }

        fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
            v.sort();
            v
        }

        proptest! {
            /// The fast path's upstream head has the fields `headers::to_upstream` leaves, as
            /// a multiset (hyper groups repeated names; the order of names is not meaning):
            /// whether its lines are copied as they are (`Head::plain`: the client's
            /// whitespace around values kept) or written one by one; over HTTP/1.1, whatever
            /// the client spoke.
            #[test]
            fn the_same_fields_reach_the_server(
                fields in prop::collection::vec((field(), 0..3usize), 0..8),
                https in any::<bool>(),
                with_id in any::<bool>(),
                http10 in any::<bool>(),
            ) {
                let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
                let mut text = format!("GET /p?q {version}\r\nHost: a.test:81\r\n");
                for ((n, v), ows) in &fields {
                    let ows = ["", " ", " \t"][*ows];
                    text.push_str(&format!("{n}:{ows}{v}{ows}\r\n"));
                }
                text.push_str("\r\n");
                let fields: Vec<(String, String)> = fields.into_iter().map(|(f, _)| f).collect();
                let mut head = Head::default();
                prop_assume!(head.parse(text.as_bytes(), &HeadLimits::default()) == Parsed::Ready);
                let mut out = Vec::new();
                if with_id {
                    upstream_head_with_id(&head, text.as_bytes(), CLIENT, https, &mut out);
                } else {
                    upstream_head(&head, text.as_bytes(), CLIENT, https, &mut out);
                }
                let mut raw = [httparse::EMPTY_HEADER; 64];
                let mut parsed = httparse::Request::new(&mut raw);
                prop_assert!(parsed.parse(&out).unwrap().is_complete());
                prop_assert_eq!(parsed.path, Some("/p?q"));
                prop_assert_eq!(parsed.version, Some(1));
                let ours = super::super::wire_fields(parsed.headers);

                let version = if http10 { http::Version::HTTP_10 } else { http::Version::HTTP_11 };
                let mut req = http::Request::builder()
                    .uri("/p?q")
                    .version(version)
                    .header("host", "a.test:81");
                for (n, v) in &fields {
                    req = req.header(n.as_str(), v.trim());
                }
                let mut req = req.body(()).unwrap();
                if https {
                    req.extensions_mut().insert(crate::headers::Https);
                }
                // As `Proxy::handle` does first (`underscores_in_headers` off, the default).
                crate::headers::drop_underscored(req.headers_mut());
                let id = crate::headers::request_id(req.headers());
                crate::headers::to_upstream(&mut req, "a.test:81", CLIENT, false);
                if !with_id {
                    let theirs = super::super::map_fields(req.headers());
                    prop_assert_eq!(sorted(ours), sorted(theirs));
                } else {
                    crate::headers::set_request_id(req.headers_mut(), id);
                    let theirs = super::super::map_fields(req.headers());
                    let normal = super::ids_agree_with_set_request_id::normal;
                    prop_assert_eq!(normal(ours, &fields), normal(theirs, &fields));
                }
            }
        }
    }

    #[test]
    fn a_request_id_is_made_unless_the_client_sent_a_sane_one() {
        let with_id = |text: &str| {
            let mut h = Head::default();
            assert_eq!(
                h.parse(text.as_bytes(), &HeadLimits::default()),
                Parsed::Ready
            );
            let mut out = Vec::new();
            let id = upstream_head_with_id(&h, text.as_bytes(), CLIENT, false, &mut out);
            (id.as_bytes().to_vec(), String::from_utf8(out).unwrap())
        };
        let (id, out) = with_id("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc-1\r\n\r\n");
        assert_eq!(id, b"abc-1");
        assert_eq!(out.matches("x-request-id: abc-1\r\n").count(), 1, "{out}");
        assert!(!out.contains("X-Request-Id"), "{out}");
        for text in [
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: a b\r\nX-Request-Id: ok\r\n\r\n",
        ] {
            let (id, out) = with_id(text);
            assert_eq!(id.len(), 32);
            assert!(id.iter().all(u8::is_ascii_hexdigit));
            let line = format!(
                "\r\nx-request-id: {}\r\n\r\n",
                String::from_utf8(id).unwrap()
            );
            assert!(out.ends_with(&line), "{out}");
            assert_eq!(
                out.to_ascii_lowercase().matches("x-request-id").count(),
                1,
                "{out}"
            );
        }
    }

    mod ids_agree_with_set_request_id {
        use super::*;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = (String, String)> {
            let name = prop_oneof![
                Just("X-Request-Id"),
                Just("x-request-id"),
                Just("Connection"),
                Just("X-A"),
            ];
            let value = prop_oneof![
                Just("abc-123"),
                Just("0f8fad5b-d9cb-469f-a165-70867728950e"),
                Just("a b"),
                Just("x\"y"),
                Just("x-request-id"),
                Just("v"),
            ];
            (name, value).prop_map(|(n, v)| (n.to_owned(), v.to_owned()))
        }

        /// Fields as a sorted multiset, a made id (32 hex digits the client did not send)
        /// written as `MADE`.
        pub(super) fn normal(
            v: Vec<(String, String)>,
            sent: &[(String, String)],
        ) -> Vec<(String, String)> {
            let mut v: Vec<(String, String)> = v
                .into_iter()
                .map(|(n, val)| {
                    let made = n == "x-request-id"
                        && val.len() == 32
                        && val.bytes().all(|b| b.is_ascii_hexdigit())
                        && !sent.iter().any(|(_, s)| *s == val);
                    (n, if made { "MADE".to_owned() } else { val })
                })
                .collect();
            v.sort();
            v
        }

        proptest! {
            /// The fast path and hyper's path send the same `X-Request-Id`: the client's
            /// first if sane, else one made (exactly one either way).
            #[test]
            fn the_same_id_reaches_the_server(fields in prop::collection::vec(field(), 0..6)) {
                let mut text = "GET /p?q HTTP/1.1\r\nHost: a.test\r\n".to_owned();
                for (n, v) in &fields {
                    text.push_str(&format!("{n}: {v}\r\n"));
                }
                text.push_str("\r\n");
                let mut head = Head::default();
                prop_assume!(head.parse(text.as_bytes(), &HeadLimits::default()) == Parsed::Ready);
                let mut out = Vec::new();
                let id = upstream_head_with_id(&head, text.as_bytes(), CLIENT, false, &mut out);
                let id = String::from_utf8(id.as_bytes().to_vec()).unwrap();
                let mut raw = [httparse::EMPTY_HEADER; 64];
                let mut parsed = httparse::Request::new(&mut raw);
                prop_assert!(parsed.parse(&out).unwrap().is_complete());
                let ours = super::super::wire_fields(parsed.headers);
                prop_assert!(ours.contains(&("x-request-id".to_owned(), id)));

                let mut req = http::Request::builder().uri("/p?q").header("host", "a.test");
                for (n, v) in &fields {
                    req = req.header(n.as_str(), v.trim());
                }
                let mut req = req.body(()).unwrap();
                let id = crate::headers::request_id(req.headers());
                crate::headers::to_upstream(&mut req, "a.test", CLIENT, false);
                crate::headers::set_request_id(req.headers_mut(), id);
                let theirs = super::super::map_fields(req.headers());
                prop_assert_eq!(normal(ours, &fields), normal(theirs, &fields));
            }
        }
    }
}
