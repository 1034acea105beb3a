//! Responses rouse writes itself: short, plain, and saying why.

use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::body::ProxyBody;

/// Header naming which of rouse's own answers this is, for clients, tests and logs.
pub const X_ROUSE_ERROR: &str = "x-rouse-error";

pub fn error(status: StatusCode, kind: &'static str, message: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::local(format!("{message}\n")));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(X_ROUSE_ERROR, HeaderValue::from_static(kind));
    resp
}

/// 502 for a server that failed once its request was on the way (its connection broke, or
/// what it answered cannot be forwarded), logged as a warning.
pub(crate) fn server_failed(
    server: &rouse_config::ServerAddress,
    upstream: &str,
    why: impl std::fmt::Display,
) -> Response<ProxyBody> {
    let msg = format!("server {server} of upstream {upstream:?} failed mid-request: {why}");
    tracing::warn!("{msg}");
    error(StatusCode::BAD_GATEWAY, "server-error", msg)
}

/// 502 for a `101 Switching Protocols` to a request that did not ask to upgrade (RFC 9110
/// §15.2.2): passed on, it would turn the client's connection into a raw tunnel to the server,
/// past routing and every check.
pub(crate) fn unasked_switch() -> Response<ProxyBody> {
    error(
        StatusCode::BAD_GATEWAY,
        "server-error",
        "the server switched protocols on a request that did not ask to upgrade".to_owned(),
    )
}

/// Counts `resp` in `rouse_errors_total` if rouse wrote it itself (it names its kind in
/// `x-rouse-error`). Callers check `status >= 400` first, so a proxied success costs nothing.
pub(crate) fn count_error<B>(metrics: &rouse_state::Metrics, upstream: &str, resp: &Response<B>) {
    if let Some(kind) = resp
        .headers()
        .get(X_ROUSE_ERROR)
        .and_then(|v| v.to_str().ok())
    {
        metrics.count_error(upstream, kind);
    }
}

/// 503 with `Retry-After` in whole seconds (at least 1).
pub fn unavailable(
    kind: &'static str,
    message: String,
    retry_after: Duration,
) -> Response<ProxyBody> {
    let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, kind, message);
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// An error with its causes, `a: b: c`: hyper's outer error alone does not say what failed.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The key authorization ACME's HTTP-01 validation fetches (RFC 8555 §8.3).
pub fn acme_challenge(key_authorization: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::local(key_authorization));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}
