//! Request bodies before a server is chosen: refused when too large, read whole when
//! `request_buffering` is on.
//!
//! A server with a few sync workers (gunicorn) gives a worker to a request from its first
//! byte until its answer, so a client trickling its upload holds a worker for as long as it
//! likes, and a few such clients starve every other one. Read first, the body reaches the
//! server complete, at network speed, with a `Content-Length` (nginx's
//! `proxy_request_buffering`). Reading comes before choosing, holding for a cold start or
//! waking anything: a client that never finishes its upload costs no server anything.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CONTENT_LENGTH, EXPECT, HeaderValue, TRAILER};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use super::Limits;
use super::spool::Spool;
use crate::answer;
use crate::body::ProxyBody;
use crate::client_body::ClientBody;
use crate::proxy::Proxy;
use crate::request_body::{BoxError, RequestBody, Sent};

/// After refusing a body still on its way, rouse reads and drops the rest for at most this
/// long before closing (nginx's lingering close): closing on unread bytes makes the kernel
/// reset the connection, and a client still sending would then never see the 413.
const LINGER: Duration = Duration::from_secs(5);

/// A body cut at `max_request_body`.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than {limit} bytes (max_request_body)")]
pub struct TooLarge {
    pub limit: u64,
}

/// Reads and drops what is left of a refused body, for at most [`LINGER`], in the
/// background; the client's connection closes after that. (An HTTP/2 stream needs none of
/// this, its reset stops the upload alone, but it costs little and keeps one path.)
pub(crate) fn linger(mut body: ClientBody) {
    tokio::spawn(async move {
        let drain = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(LINGER, drain).await;
    });
}

impl Proxy {
    /// The request with its body ready to go to a server: streamed (limited to
    /// `max_request_body`), or read whole first. `Err` is rouse's answer when the body cannot
    /// go anywhere: too large (413), too slow (408), broken (400), or not storable (500).
    pub(crate) async fn read_body(
        &self,
        req: Request<ClientBody>,
        limits: Limits<'_>,
        upgrade: bool,
    ) -> Result<(Request<RequestBody>, Arc<Sent>), Response<ProxyBody>> {
        let (mut parts, body) = req.into_parts();
        let timeout = self.settings.client_body_timeout;
        // The length a client announced (Content-Length); its body cannot differ from it.
        if body.size_hint().lower() > limits.max_request_body {
            if !expects_continue(&parts.headers) {
                linger(body);
            }
            return Err(too_large(limits.max_request_body));
        }
        if !limits.request_buffering || upgrade || body.is_end_stream() {
            let (body, sent) = RequestBody::new(body, timeout, limits.max_request_body);
            return Ok((Request::from_parts(parts, body), sent));
        }
        let (spool, trailers) = match read_whole(body, limits, timeout).await {
            Ok(read) => read,
            Err(refused) => return Err(refused.answer(timeout)),
        };
        let len = spool.len();
        let exact = match &trailers {
            None => {
                parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
                true
            }
            Some(fields) => {
                // Trailers need HTTP/1.1's chunked framing, which a Content-Length would rule
                // out, and hyper sends only the fields `Trailer` names: name them all.
                parts.headers.remove(CONTENT_LENGTH);
                declare_trailers(&mut parts.headers, fields);
                false
            }
        };
        let (body, sent) = RequestBody::buffered(replay(spool, trailers), len, exact);
        Ok((Request::from_parts(parts, body), sent))
    }
}

/// Adds to `Trailer` every field of `trailers` it does not name yet.
fn declare_trailers(headers: &mut HeaderMap, trailers: &HeaderMap) {
    let named: Vec<String> = headers
        .get_all(TRAILER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    for name in trailers.keys() {
        if !named.iter().any(|n| n == name.as_str()) {
            headers.append(TRAILER, HeaderValue::from_name(name.clone()));
        }
    }
}

/// 413, saying the limit.
pub(crate) fn too_large(limit: u64) -> Response<ProxyBody> {
    answer::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        TooLarge { limit }.to_string(),
    )
}

/// Whether the client waits for `100 Continue` before sending its body: then a refusal
/// must not read it, which would ask for the very body it refuses.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Why a body could not be read whole.
enum Refused {
    TooLarge(u64),
    Quiet,
    Broken(BoxError),
    Store(std::io::Error),
}

impl Refused {
    fn answer(self, timeout: Duration) -> Response<ProxyBody> {
        match self {
            Refused::TooLarge(limit) => too_large(limit),
            Refused::Quiet => answer::error(
                StatusCode::REQUEST_TIMEOUT,
                "client-body-timeout",
                format!("the request body stopped arriving for {timeout:?} (client_body_timeout)"),
            ),
            Refused::Broken(e) => {
                tracing::debug!(error = %e, "the client sent a request body that cannot be read");
                answer::error(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    format!("the request body cannot be read: {e}"),
                )
            }
            Refused::Store(e) => {
                tracing::error!(error = %e, "cannot store a request body (temp_dir)");
                answer::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "buffer-failed",
                    "the request body could not be stored".to_owned(),
                )
            }
        }
    }
}

/// Reads `body` to its end into a spool: `request_buffer_size` in memory, the rest in a
/// temp file, at most `max_request_body` in all.
async fn read_whole(
    mut body: ClientBody,
    limits: Limits<'_>,
    timeout: Duration,
) -> Result<(Spool, Option<HeaderMap>), Refused> {
    let mut spool = Spool::new(
        limits.request_buffer_size,
        limits.max_request_body,
        limits.temp_dir,
    );
    let mut trailers = None;
    loop {
        let frame = match tokio::time::timeout(timeout, body.frame()).await {
            Err(_) => return Err(Refused::Quiet),
            Ok(None) => return Ok((spool, trailers)),
            Ok(Some(Err(e))) => return Err(Refused::Broken(e)),
            Ok(Some(Ok(frame))) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                if spool.len().saturating_add(data.len() as u64) > limits.max_request_body {
                    linger(body);
                    return Err(Refused::TooLarge(limits.max_request_body));
                }
                spool.push(data).await.map_err(Refused::Store)?;
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
}

/// The spooled body as frames, in order, then the trailers if there were any.
fn replay(
    spool: Spool,
    trailers: Option<HeaderMap>,
) -> futures_util::stream::BoxStream<'static, std::io::Result<Frame<Bytes>>> {
    futures_util::stream::unfold(Some((spool, trailers)), |state| async move {
        let (mut spool, trailers) = state?;
        match spool.pop().await {
            Ok(Some(data)) => Some((Ok(Frame::data(data)), Some((spool, trailers)))),
            Ok(None) => trailers.map(|t| (Ok(Frame::trailers(t)), None)),
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}
