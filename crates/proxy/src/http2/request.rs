//! An HTTP/2 request head from its decoded fields (RFC 9113 §8.3): pseudo-fields first and
//! once each, names lowercase, no connection-specific fields, `te` only as `trailers`. A head
//! that breaks these is malformed: its stream is reset, and rouse's handler never sees it.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, COOKIE, TE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

/// Why a head is malformed (a stream error, PROTOCOL_ERROR).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed request head: {0}")]
pub(crate) struct Malformed(pub &'static str);

/// Collects a request head's fields as the decoder yields them.
#[derive(Debug, Default)]
pub(crate) struct Head {
    method: Option<Bytes>,
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    headers: HeaderMap,
    regular_seen: bool,
    /// The first problem found (the rest of the block is still decoded: HPACK's table must
    /// stay in step with the client's).
    error: Option<Malformed>,
    /// The header list size as HTTP/2 counts it (§6.5.2: each field's name and value plus 32).
    pub list_size: usize,
}

/// Fields HTTP/2 forbids (§8.2.2).
const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

impl Head {
    pub fn field(&mut self, name: Bytes, value: Bytes) {
        self.list_size += name.len() + value.len() + 32;
        if self.error.is_none()
            && let Err(e) = self.add(name, value)
        {
            self.error = Some(e);
        }
    }

    fn add(&mut self, name: Bytes, value: Bytes) -> Result<(), Malformed> {
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.regular_seen {
                return Err(Malformed("a pseudo-field after a regular field"));
            }
            let slot = match pseudo {
                b"method" => &mut self.method,
                b"scheme" => &mut self.scheme,
                b"authority" => &mut self.authority,
                b"path" => &mut self.path,
                _ => return Err(Malformed("an unknown pseudo-field")),
            };
            if slot.is_some() {
                return Err(Malformed("a pseudo-field twice"));
            }
            *slot = Some(value);
            return Ok(());
        }
        self.regular_seen = true;
        let (name, value) = regular(name, value)?;
        if name == COOKIE
            && let Some(first) = self.headers.get_mut(COOKIE)
        {
            // HTTP/2 lets a client split Cookie into one field per pair; an HTTP/1.1 server
            // must get them as one line, joined by "; " (RFC 9113 §8.2.3).
            let mut joined = Vec::with_capacity(first.len() + 2 + value.len());
            joined.extend_from_slice(first.as_bytes());
            joined.extend_from_slice(b"; ");
            joined.extend_from_slice(value.as_bytes());
            *first = HeaderValue::from_bytes(&joined).map_err(|_| Malformed("a bad cookie"))?;
            return Ok(());
        }
        self.headers.append(name, value);
        Ok(())
    }

    /// The request, or why it is malformed.
    pub fn request(self) -> Result<Request<()>, Malformed> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let method = self.method.ok_or(Malformed("no :method"))?;
        let method = Method::from_bytes(&method).map_err(|_| Malformed("a bad :method"))?;
        let mut parts = http::uri::Parts::default();
        if method == Method::CONNECT {
            if self.scheme.is_some() || self.path.is_some() {
                return Err(Malformed("CONNECT with :scheme or :path"));
            }
            let authority = self
                .authority
                .ok_or(Malformed("CONNECT without :authority"))?;
            parts.authority = Some(authority_of(authority)?);
        } else {
            let scheme = self.scheme.ok_or(Malformed("no :scheme"))?;
            let path = self.path.ok_or(Malformed("no :path"))?;
            if path.is_empty() {
                return Err(Malformed("an empty :path"));
            }
            parts.path_and_query =
                Some(PathAndQuery::from_maybe_shared(path).map_err(|_| Malformed("a bad :path"))?);
            // As h2 does: a target without an authority is origin-form (Host names the
            // server), and a scheme alone cannot make a URI.
            if let Some(authority) = self.authority {
                parts.authority = Some(authority_of(authority)?);
                parts.scheme =
                    Some(Scheme::try_from(&scheme[..]).map_err(|_| Malformed("a bad :scheme"))?);
            }
        }
        let uri = Uri::from_parts(parts).map_err(|_| Malformed("a bad target"))?;
        let mut req = Request::new(());
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_2;
        *req.headers_mut() = self.headers;
        Ok(req)
    }
}

/// A field that is not a pseudo-field, of a head or of trailers: lowercase, not
/// connection-specific, `te` only as `trailers` (§8.2.2), a valid name and value.
pub(crate) fn regular(name: Bytes, value: Bytes) -> Result<(HeaderName, HeaderValue), Malformed> {
    if name.starts_with(b":") {
        return Err(Malformed("a pseudo-field where none may be"));
    }
    if name.iter().any(u8::is_ascii_uppercase) {
        return Err(Malformed("an uppercase field name"));
    }
    if CONNECTION_SPECIFIC.contains(&&name[..]) {
        return Err(Malformed("a connection-specific field"));
    }
    let name = HeaderName::from_bytes(&name).map_err(|_| Malformed("a bad field name"))?;
    let value =
        HeaderValue::from_maybe_shared(value).map_err(|_| Malformed("a bad field value"))?;
    if name == TE && value != "trailers" {
        return Err(Malformed("te other than trailers"));
    }
    Ok((name, value))
}

fn authority_of(bytes: Bytes) -> Result<Authority, Malformed> {
    Authority::from_maybe_shared(bytes).map_err(|_| Malformed("a bad :authority"))
}

/// The length the request's Content-Length fields announce; malformed when they disagree or
/// do not parse (§8.1.1).
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Malformed> {
    let mut len = None;
    for v in headers.get_all(CONTENT_LENGTH) {
        let this: u64 = std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(Malformed("a bad content-length"))?;
        if len.is_some_and(|l| l != this) {
            return Err(Malformed("content-length fields that differ"));
        }
        len = Some(this);
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(fields: &[(&'static str, &'static str)]) -> Result<Request<()>, Malformed> {
        let mut head = Head::default();
        for (n, v) in fields {
            head.field(
                Bytes::from_static(n.as_bytes()),
                Bytes::from_static(v.as_bytes()),
            );
        }
        head.request()
    }

    const GET: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.com:8443"),
        (":path", "/a?b=c"),
    ];

    #[test]
    fn a_request_is_built_from_its_pseudo_fields() {
        let mut fields = GET.to_vec();
        fields.push(("accept", "*/*"));
        fields.push(("te", "trailers"));
        let req = head(&fields).unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "https://example.com:8443/a?b=c");
        assert_eq!(req.version(), Version::HTTP_2);
        assert_eq!(req.headers()["accept"], "*/*");
        let origin = head(&[(":method", "POST"), (":scheme", "http"), (":path", "/x")]).unwrap();
        assert_eq!(origin.uri(), "/x");
        let connect = head(&[(":method", "CONNECT"), (":authority", "h:443")]).unwrap();
        assert_eq!(connect.uri().authority().unwrap(), "h:443");
    }

    #[test]
    fn split_cookie_fields_are_joined_into_one() {
        let mut fields = GET.to_vec();
        fields.extend([
            ("cookie", "a=1"),
            ("accept", "*/*"),
            ("cookie", "b=2"),
            ("cookie", "c=3"),
        ]);
        let req = head(&fields).unwrap();
        let cookies: Vec<_> = req.headers().get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2; c=3"]);
    }

    #[test]
    fn malformed_heads_are_refused() {
        let cases: [&[(&'static str, &'static str)]; 12] = [
            &[(":scheme", "http"), (":path", "/")],
            &[(":method", "GET"), (":path", "/")],
            &[(":method", "GET"), (":scheme", "http")],
            &[(":method", "GET"), (":scheme", "http"), (":path", "")],
            &[
                (":method", "GET"),
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":foo", "x"),
            ],
            &[
                (":method", "GET"),
                ("a", "b"),
                (":scheme", "http"),
                (":path", "/"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("Accept", "x"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("connection", "x"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("te", "gzip"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("a", "b\nc"),
            ],
            &[
                (":method", "CONNECT"),
                (":authority", "h:1"),
                (":path", "/"),
            ],
        ];
        for fields in cases {
            assert!(head(fields).is_err(), "{fields:?} was taken");
        }
    }

    /// Trailers are held to the rules of a head's regular fields, and have no pseudo-fields.
    #[test]
    fn trailer_fields_follow_the_head_s_rules() {
        let field = |n: &'static str, v: &'static str| {
            regular(
                Bytes::from_static(n.as_bytes()),
                Bytes::from_static(v.as_bytes()),
            )
        };
        assert!(field("grpc-status", "0").is_ok());
        for (n, v) in [
            (":status", "200"),
            ("Grpc-Status", "0"),
            ("connection", "close"),
            ("te", "gzip"),
            ("x-a", "b\nc"),
        ] {
            assert!(field(n, v).is_err(), "{n}: {v} was taken");
        }
    }

    #[test]
    fn content_length_must_agree_and_parse() {
        let mut h = HeaderMap::new();
        assert_eq!(content_length(&h), Ok(None));
        h.append(CONTENT_LENGTH, HeaderValue::from_static("12"));
        h.append(CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(content_length(&h), Ok(Some(12)));
        h.append(CONTENT_LENGTH, HeaderValue::from_static("13"));
        assert!(content_length(&h).is_err());
        let mut h = HeaderMap::new();
        h.append(CONTENT_LENGTH, HeaderValue::from_static("-1"));
        assert!(content_length(&h).is_err());
    }
}
