//! Limits on request heads: how big a head, how many fields, how long a request line.
//!
//! hyper enforces them first, while it reads the head, so an oversized head is cut off without
//! being buffered whole; [`check_head`] then applies the exact limits to the parsed request,
//! since hyper's own checks are approximate (see [`head_limits`]) and do not cover HTTP/2.

use http::{Request, StatusCode};
use hyper_util::server::conn::auto;

use crate::answer;
use crate::body::ProxyBody;
use crate::proxy::Settings;

/// The longest request line (method, target, version) rouse accepts; past it, 414. nginx reads
/// a request line into one of its `large_client_header_buffers` (4 × 8 KiB by default) and
/// answers 414 when it does not fit one: the same bound keeps what clients and servers built
/// for nginx can send working, and it sits well inside `max_header_size` so that a long URI is
/// told 414 (fix the URI) rather than 431 (fix the headers).
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

/// `[proxy] max_header_size`'s default: the whole head, request line included (nginx's
/// `large_client_header_buffers` total, 4 × 8 KiB).
const DEFAULT_MAX_HEADER_SIZE: usize = 32 * 1024;

/// `[proxy] max_headers`'s default, hyper's own (nginx has no count limit, only the size one).
const DEFAULT_MAX_HEADERS: usize = 100;

/// The field count hyper keeps on the stack, its default limit.
const HYPER_MAX_HEADERS: usize = 100;

/// The smallest read and write buffer rouse gives hyper (which panics below 8192). The same
/// bound that stops a head also sizes body reads and the write queue: at 32 KiB a 1 GiB upload
/// and download (`large_body.rs`, debug build) took about a third longer than at 64 KiB or
/// hyper's 400 KB default, which took the same.
const MIN_BUF: usize = 64 * 1024;

/// HTTP/2 counts 32 bytes of overhead per field in a header list (RFC 9113 §6.5.2).
const H2_FIELD_OVERHEAD: usize = 32;

/// The limits on one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Bytes of the whole head: request line, every field line and the CRLFs.
    pub max_header_size: usize,
    /// Field lines in the head.
    pub max_headers: usize,
    /// Fields whose name holds an underscore are forwarded (`underscores_in_headers`); else
    /// dropped (see `headers::drop_underscored`).
    pub underscores_in_headers: bool,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            max_headers: DEFAULT_MAX_HEADERS,
            underscores_in_headers: false,
        }
    }
}

/// Applies the head limits of `settings` to hyper's connection builder.
///
/// HTTP/1.1: hyper 1.12's auto builder has no `max_header_size`, only `max_buf_size` (at least
/// 8192) and `max_headers`. `max_buf_size` bounds the read buffer while a head is incomplete:
/// once it holds that many bytes without the end of the head, hyper answers 431 and closes, so
/// a 100 KB header line costs rouse at most that many bytes of memory (hyper's default is about
/// 400 KB). It is `max_header_size`, but at least [`MIN_BUF`]; a head that gets through hyper
/// (smaller than that, or completed by one read past it) is measured exactly by
/// [`check_head`], before anything is forwarded. Too many field lines make hyper answer 431.
///
/// HTTP/2: the header list size announced to the client, in HTTP/2's own accounting.
pub fn head_limits<E>(builder: &mut auto::Builder<E>, settings: &Settings) {
    let limits = settings.head;
    let (buf, headers) = h1_limits(&limits);
    let mut http1 = builder.http1();
    http1.max_buf_size(buf);
    if let Some(n) = headers {
        http1.max_headers(n);
    }
    builder
        .http2()
        .max_header_list_size(h2_header_list_size(&limits));
}

/// The same HTTP/1.1 limits, for the builder of the connections hyper serves one request of
/// (`connection::hyper_once`).
pub(crate) fn h1_head_limits(http1: &mut hyper::server::conn::http1::Builder, settings: &Settings) {
    let (buf, headers) = h1_limits(&settings.head);
    http1.max_buf_size(buf);
    if let Some(n) = headers {
        http1.max_headers(n);
    }
}

/// hyper's HTTP/1.1 `max_buf_size`, and its `max_headers` unless it is hyper's default: any
/// other count than its default costs hyper an allocation per request.
fn h1_limits(limits: &HeadLimits) -> (usize, Option<usize>) {
    let headers = limits.max_headers;
    (
        limits.max_header_size.max(MIN_BUF),
        (headers != HYPER_MAX_HEADERS).then_some(headers),
    )
}

/// The header list size announced to HTTP/2 clients: `max_header_size` plus HTTP/2's own
/// accounting of each field (32 bytes) for `max_headers` fields.
pub(crate) fn h2_header_list_size(limits: &HeadLimits) -> u32 {
    let size = limits
        .max_header_size
        .saturating_add(limits.max_headers.saturating_mul(H2_FIELD_OVERHEAD));
    u32::try_from(size).unwrap_or(u32::MAX)
}

/// Why a request head is refused, and the answer that says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadTooLarge {
    #[error("the request line is {0} bytes, over the limit of {MAX_REQUEST_LINE}")]
    RequestLine(usize),
    #[error("the request head is {size} bytes, over the limit of {limit} (max_header_size)")]
    Size { size: usize, limit: usize },
    #[error("the request has {count} header fields, over the limit of {limit} (max_headers)")]
    Count { count: usize, limit: usize },
}

impl HeadTooLarge {
    pub fn status(&self) -> StatusCode {
        match self {
            HeadTooLarge::RequestLine(_) => StatusCode::URI_TOO_LONG,
            HeadTooLarge::Size { .. } | HeadTooLarge::Count { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
        }
    }

    pub fn answer(&self) -> http::Response<ProxyBody> {
        let kind = match self {
            HeadTooLarge::RequestLine(_) => "uri-too-long",
            HeadTooLarge::Size { .. } | HeadTooLarge::Count { .. } => "header-too-large",
        };
        answer::error(self.status(), kind, self.to_string())
    }
}

/// Checks a parsed request against `limits`, measuring its head as it would be written in
/// HTTP/1.1 (`NAME: VALUE\r\n` per field), whatever version it came in.
pub fn check_head<B>(req: &Request<B>, limits: &HeadLimits) -> Result<(), HeadTooLarge> {
    // METHOD SP target SP HTTP/1.1 CRLF
    let line = req.method().as_str().len() + 1 + target_len(req.uri()) + 1 + 8 + 2;
    if line > MAX_REQUEST_LINE {
        return Err(HeadTooLarge::RequestLine(line));
    }
    let count = req.headers().len();
    if count > limits.max_headers {
        return Err(HeadTooLarge::Count {
            count,
            limit: limits.max_headers,
        });
    }
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    let size = line + fields + 2;
    if size > limits.max_header_size {
        return Err(HeadTooLarge::Size {
            size,
            limit: limits.max_header_size,
        });
    }
    Ok(())
}

/// The length of the request target as sent: absolute-form when there is an authority.
fn target_len(uri: &http::Uri) -> usize {
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    match (uri.scheme(), uri.authority()) {
        (Some(scheme), Some(authority)) => {
            scheme.as_str().len() + 3 + authority.as_str().len() + path
        }
        (None, Some(authority)) => authority.as_str().len() + path,
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, String)]) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        b.body(()).unwrap()
    }

    #[test]
    fn a_head_within_the_limits_passes() {
        let r = req("/x?y=1", &[("host", "a".into()), ("x", "v".repeat(1000))]);
        assert_eq!(check_head(&r, &HeadLimits::default()), Ok(()));
    }

    #[test]
    fn the_head_is_measured_as_written() {
        // "GET / HTTP/1.1\r\n" 16 + "host: a\r\n" 9 + "\r\n" 2 = 27 bytes.
        let r = req("/", &[("host", "a".into())]);
        let exact = HeadLimits {
            max_header_size: 27,
            max_headers: 1,
            ..HeadLimits::default()
        };
        assert_eq!(check_head(&r, &exact), Ok(()));
        let smaller = HeadLimits {
            max_header_size: 26,
            ..exact
        };
        assert_eq!(
            check_head(&r, &smaller),
            Err(HeadTooLarge::Size {
                size: 27,
                limit: 26
            })
        );
    }

    #[test]
    fn one_header_line_past_the_limit_is_431() {
        let r = req("/", &[("x-big", "v".repeat(100 * 1024))]);
        let err = check_head(&r, &HeadLimits::default()).unwrap_err();
        assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn too_many_fields_is_431() {
        let headers: Vec<(&str, String)> = (0..101).map(|i| ("x-n", i.to_string())).collect();
        let r = req("/", &headers);
        let err = check_head(&r, &HeadLimits::default()).unwrap_err();
        assert_eq!(
            err,
            HeadTooLarge::Count {
                count: 101,
                limit: 100
            }
        );
        assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn a_request_line_past_8_kib_is_414() {
        // "GET " + target + " HTTP/1.1\r\n": 15 bytes besides the target.
        let fits = format!("/{}", "a".repeat(MAX_REQUEST_LINE - 16));
        assert_eq!(check_head(&req(&fits, &[]), &HeadLimits::default()), Ok(()));
        let long = format!("/{}", "a".repeat(MAX_REQUEST_LINE - 15));
        let err = check_head(&req(&long, &[]), &HeadLimits::default()).unwrap_err();
        assert_eq!(err, HeadTooLarge::RequestLine(MAX_REQUEST_LINE + 1));
        assert_eq!(err.status(), StatusCode::URI_TOO_LONG);
    }

    #[test]
    fn absolute_form_counts_scheme_and_authority() {
        let r = req("http://b.test/p", &[]);
        assert_eq!(target_len(r.uri()), "http://b.test/p".len());
    }
}
