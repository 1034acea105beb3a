//! One access-log line, as nginx's `combined` followed by rouse's fields, or as JSON.

use std::io::Write;
use std::net::IpAddr;

use http::Version;
use rouse_config::ServerAddress;

use super::clock::Stamp;

/// A request as the access log sees it once its answer is over.
pub(crate) struct Entry<'a> {
    pub client: IpAddr,
    pub method: &'a [u8],
    /// As the client wrote it: path and query.
    pub target: &'a [u8],
    pub version: Version,
    /// The Host (or :authority) the client sent, port included.
    pub host: &'a [u8],
    pub status: u16,
    /// Body bytes sent to the client (chunk framing not counted; of a cut answer, what rouse
    /// had passed on); `None` when unknown.
    pub sent: Option<u64>,
    /// The request body's length, `None` when sent chunked.
    pub received: Option<u64>,
    pub referer: &'a [u8],
    pub user_agent: &'a [u8],
    /// `None` for rouse's own answer to a request no upstream serves (no route).
    pub upstream: Option<&'a str>,
    pub server: Option<&'a ServerAddress>,
    pub held_us: u64,
    /// From when the request was ready for a server (held time excluded) to the response head.
    pub upstream_us: Option<u64>,
    /// From the request head read to the answer's last byte (or its cut).
    pub total_us: u64,
    pub request_id: &'a [u8],
}

/// `µs` as milliseconds with exactly three decimals, from integers: no float noise.
pub(crate) fn ms(out: &mut Vec<u8>, us: u64) {
    let _ = write!(out, "{}.{:03}", us / 1000, us % 1000);
}

/// nginx's escaping of a logged value: `"`, `\`, and bytes outside visible ASCII as `\xHH`.
pub(crate) fn escaped(out: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

/// A value in double quotes, `-` when empty (as nginx writes an absent `$http_referer`).
fn quoted(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    if value.is_empty() {
        out.push(b'-');
    } else {
        escaped(out, value);
    }
    out.push(b'"');
}

pub(crate) fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn number(out: &mut Vec<u8>, n: Option<u64>, none: &[u8]) {
    match n {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.extend_from_slice(none),
    }
}

/// `combined`: `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent"`, then `key=value` fields.
pub(crate) fn combined(out: &mut Vec<u8>, e: &Entry<'_>, time: &Stamp) {
    let _ = write!(out, "{} - - [", e.client);
    out.extend_from_slice(time.local.as_bytes());
    out.extend_from_slice(b"] \"");
    if e.method.is_empty() && e.target.is_empty() {
        // No request line was seen (hyper's answer to a head it could not parse): nginx's
        // `$request` when it has none.
        out.push(b'-');
    } else {
        escaped(out, e.method);
        out.push(b' ');
        escaped(out, e.target);
        out.push(b' ');
        out.extend_from_slice(protocol(e.version).as_bytes());
    }
    let _ = write!(out, "\" {} ", e.status);
    number(out, e.sent, b"-");
    out.push(b' ');
    quoted(out, e.referer);
    out.push(b' ');
    quoted(out, e.user_agent);
    out.extend_from_slice(b" host=");
    quoted(out, e.host);
    out.extend_from_slice(b" upstream=");
    match e.upstream {
        Some(u) => quoted(out, u.as_bytes()),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" server=");
    match e.server {
        Some(s) => {
            let _ = write!(out, "{s}");
        }
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" received=");
    number(out, e.received, b"-");
    out.extend_from_slice(b" held_ms=");
    ms(out, e.held_us);
    out.extend_from_slice(b" upstream_ms=");
    match e.upstream_us {
        Some(us) => ms(out, us),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" ms=");
    ms(out, e.total_us);
    out.extend_from_slice(b" request_id=");
    escaped(out, e.request_id);
    out.push(b'\n');
}

/// A JSON string of bytes that should be UTF-8 (a copy only when they are not).
fn string(out: &mut Vec<u8>, value: &[u8]) {
    let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(value));
}

/// One JSON object; times are numbers of milliseconds with three decimals, absent values null.
pub(crate) fn json(out: &mut Vec<u8>, e: &Entry<'_>, time: &Stamp) {
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(time.rfc3339.as_bytes());
    let _ = write!(out, "\",\"remote_addr\":\"{}\",\"method\":", e.client);
    string(out, e.method);
    out.extend_from_slice(b",\"target\":");
    string(out, e.target);
    let _ = write!(out, ",\"protocol\":\"{}\",\"host\":", protocol(e.version));
    string(out, e.host);
    let _ = write!(out, ",\"status\":{},\"bytes_sent\":", e.status);
    number(out, e.sent, b"null");
    out.extend_from_slice(b",\"bytes_received\":");
    number(out, e.received, b"null");
    out.extend_from_slice(b",\"referer\":");
    string(out, e.referer);
    out.extend_from_slice(b",\"user_agent\":");
    string(out, e.user_agent);
    out.extend_from_slice(b",\"upstream\":");
    match e.upstream {
        Some(u) => string(out, u.as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"server\":");
    match e.server {
        Some(s) => {
            let _ = write!(out, "\"{s}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"held_ms\":");
    ms(out, e.held_us);
    out.extend_from_slice(b",\"upstream_ms\":");
    match e.upstream_us {
        Some(us) => ms(out, us),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"ms\":");
    ms(out, e.total_us);
    out.extend_from_slice(b",\"request_id\":");
    string(out, e.request_id);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn stamp() -> Stamp {
        Stamp {
            second: 0,
            local: "28/Nov/2026:10:00:00 +0100".into(),
            rfc3339: "2026-11-28T10:00:00+01:00".into(),
        }
    }

    fn entry<'a>(server: Option<&'a ServerAddress>) -> Entry<'a> {
        Entry {
            client: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            method: b"GET",
            target: b"/a?q=1&x=\"2\"",
            version: Version::HTTP_11,
            host: b"app.test:8080",
            status: 200,
            sent: Some(12),
            received: Some(0),
            referer: b"",
            user_agent: b"curl/8.5\x01\\",
            upstream: Some("app"),
            server,
            held_us: 0,
            upstream_us: Some(1_234),
            total_us: 165_240,
            request_id: b"0123456789abcdef0123456789abcdef",
        }
    }

    #[test]
    fn milliseconds_have_three_decimals_and_no_float_noise() {
        for (us, text) in [
            (0, "0.000"),
            (1, "0.001"),
            (999, "0.999"),
            (1_000, "1.000"),
            (165_240, "165.240"),
            (u64::MAX, "18446744073709551.615"),
        ] {
            let mut out = Vec::new();
            ms(&mut out, us);
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }

    #[test]
    fn quotes_backslashes_and_control_bytes_are_escaped_as_nginx_does() {
        let mut out = Vec::new();
        escaped(&mut out, b"a\"b\\c\x01\x7f\xc3\xa9 d");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\x22b\\x5Cc\\x01\\x7F\\xC3\\xA9 d"
        );
    }

    #[test]
    fn combined_then_rouse_s_fields() {
        let server = ServerAddress::Ip("127.0.0.1:9101".parse().unwrap());
        let mut out = Vec::new();
        combined(&mut out, &entry(Some(&server)), &stamp());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "192.0.2.7 - - [28/Nov/2026:10:00:00 +0100] \"GET /a?q=1&x=\\x222\\x22 HTTP/1.1\" \
             200 12 \"-\" \"curl/8.5\\x01\\x5C\" host=\"app.test:8080\" upstream=\"app\" \
             server=127.0.0.1:9101 received=0 held_ms=0.000 upstream_ms=1.234 ms=165.240 \
             request_id=0123456789abcdef0123456789abcdef\n"
        );
        let mut out = Vec::new();
        let mut e = entry(None);
        e.sent = None;
        e.upstream_us = None;
        e.version = Version::HTTP_2;
        combined(&mut out, &e, &stamp());
        let line = String::from_utf8(out).unwrap();
        assert!(line.contains(" HTTP/2.0\" 200 - "), "{line}");
        assert!(line.contains(" server=- "), "{line}");
        assert!(line.contains(" upstream_ms=- "), "{line}");
        // Rouse's own answer to a request no upstream serves.
        let mut out = Vec::new();
        e.upstream = None;
        combined(&mut out, &e, &stamp());
        let line = String::from_utf8(out).unwrap();
        assert!(line.contains(" upstream=- server=- "), "{line}");
        let mut out = Vec::new();
        json(&mut out, &e, &stamp());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["upstream"], serde_json::Value::Null);
        // No request line at all (hyper's own 400 to a head it could not parse): "-".
        let mut out = Vec::new();
        (e.method, e.target, e.status, e.sent) = (b"", b"", 400, Some(0));
        combined(&mut out, &e, &stamp());
        let line = String::from_utf8(out).unwrap();
        assert!(line.contains("] \"-\" 400 0 \"-\" "), "{line}");
    }

    #[test]
    fn json_is_one_escaped_object_per_line() {
        let server = ServerAddress::Ip("127.0.0.1:9101".parse().unwrap());
        let mut out = Vec::new();
        let mut e = entry(Some(&server));
        e.user_agent = b"a\"b\n\xff";
        json(&mut out, &e, &stamp());
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(out.ends_with(b"}\n"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"], "2026-11-28T10:00:00+01:00");
        assert_eq!(v["remote_addr"], "192.0.2.7");
        assert_eq!(v["target"], "/a?q=1&x=\"2\"");
        assert_eq!(v["protocol"], "HTTP/1.1");
        assert_eq!(v["host"], "app.test:8080");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes_sent"], 12);
        assert_eq!(v["bytes_received"], 0);
        assert_eq!(v["referer"], "");
        assert_eq!(v["user_agent"], "a\"b\n\u{fffd}");
        assert_eq!(v["server"], "127.0.0.1:9101");
        assert_eq!(v["upstream_ms"].to_string(), "1.234");
        assert_eq!(v["ms"].to_string(), "165.24");
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"ms\":165.240,"), "{text}");
        assert!(text.contains("\"held_ms\":0.000,"), "{text}");
    }
}
