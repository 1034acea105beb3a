//! A request as the access log reads it: straight from the fast path's head, or from what the
//! hyper path captured of its request before sending it on (only when the log is on).

use http::header::{CONTENT_LENGTH, HeaderValue, REFERER, USER_AGENT};
use http::{HeaderMap, Method, Uri, Version};

use crate::h1::request::Head;

pub(crate) enum Seen<'a> {
    H1 { head: &'a Head, buf: &'a [u8] },
    Hyper(Option<&'a Captured>),
}

/// The parts of a hyper request the log shows, cheap clones (shared bytes) but the host.
pub(crate) struct Captured {
    method: Method,
    uri: Uri,
    version: Version,
    host: String,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    received: Option<u64>,
}

impl Captured {
    pub(crate) fn of<B: http_body::Body>(req: &http::Request<B>, host: &str) -> Captured {
        let headers = req.headers();
        let received = req.body().size_hint().exact().or_else(|| {
            headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        });
        Captured {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            host: host.to_owned(),
            referer: first(headers, &REFERER),
            user_agent: first(headers, &USER_AGENT),
            received,
        }
    }
}

fn first(headers: &HeaderMap, name: &http::HeaderName) -> Option<HeaderValue> {
    headers.get(name).cloned()
}

/// What an entry needs of the request.
pub(crate) struct Parts<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub version: Version,
    pub host: &'a [u8],
    pub referer: &'a [u8],
    pub user_agent: &'a [u8],
    pub received: Option<u64>,
}

impl<'a> Seen<'a> {
    pub(crate) fn parts(&self) -> Parts<'a> {
        match *self {
            Seen::H1 { head, buf } => {
                let field = |name: &[u8]| {
                    head.fields
                        .iter()
                        .find(|f| buf[f.name.clone()].eq_ignore_ascii_case(name))
                        .map_or(&b""[..], |f| &buf[f.value.clone()])
                };
                Parts {
                    method: head.method(buf),
                    target: head.target(buf),
                    version: if head.http10 {
                        Version::HTTP_10
                    } else {
                        Version::HTTP_11
                    },
                    host: &buf[head.host.clone()],
                    referer: field(b"referer"),
                    user_agent: field(b"user-agent"),
                    received: Some(head.content_length),
                }
            }
            Seen::Hyper(Some(c)) => Parts {
                method: c.method.as_str().as_bytes(),
                target: c
                    .uri
                    .path_and_query()
                    .map_or(b"/", |p| p.as_str().as_bytes()),
                version: c.version,
                host: c.host.as_bytes(),
                referer: c.referer.as_ref().map_or(b"", |v| v.as_bytes()),
                user_agent: c.user_agent.as_ref().map_or(b"", |v| v.as_bytes()),
                received: c.received,
            },
            Seen::Hyper(None) => Parts {
                method: b"",
                target: b"",
                version: Version::HTTP_11,
                host: b"",
                referer: b"",
                user_agent: b"",
                received: None,
            },
        }
    }
}
