//! Request handling: counting, routing, and the endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::body::{BoxError, PatternBody, RespBody, Tracked, empty, full};
use super::server::ServerCtx;
use super::stats::Counters;
use super::{Backend, ws};
use crate::pattern::Checksum;

const BACKEND_ID: HeaderName = HeaderName::from_static("x-backend-id");
const QUEUED_US: HeaderName = HeaderName::from_static("x-backend-queued-us");
const TIME_US: HeaderName = HeaderName::from_static("x-backend-time-us");
const MAX_DELAY_MS: u64 = 60_000;

/// Per-connection state.
#[derive(Debug)]
pub(crate) struct Conn {
    first_request: AtomicBool,
}

impl Conn {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            first_request: AtomicBool::new(true),
        })
    }
}

/// What an endpoint produced.
enum Reply {
    Plain(Response<RespBody>),
    /// A `101` to send, and the connection it hands over.
    WebSocket(Response<RespBody>, OnUpgrade),
}

/// Handles one request. An `Err` makes hyper drop the connection (HTTP/1) or reset the stream
/// (HTTP/2), which is how requests past the limit "hit a crashed backend".
pub(crate) async fn handle(
    backend: Backend,
    ctx: Arc<ServerCtx>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, BoxError> {
    let arrived = tokio::time::Instant::now();
    let shared = &backend.shared;
    let counters = &shared.counters;
    let is_stats = req.uri().path() == "/stats";
    if conn.first_request.swap(false, Ordering::SeqCst) && is_stats {
        counters.connection_was_for_stats();
    }

    let mut resp = if is_stats {
        if req.method() == Method::GET {
            json(StatusCode::OK, &counters.snapshot())
        } else {
            not_found()
        }
    } else {
        let n = counters.request_received();
        if let Some(limit) = shared.exit_after_requests {
            if n > limit {
                counters.request_refused();
                return Err("request limit reached".into());
            }
            if n == limit {
                shared.limit_reached.cancel();
            }
        }
        let mut guard = counters.begin();
        let mut queued = Duration::ZERO;
        if let Some(workers) = &shared.workers {
            let worker = match Arc::clone(workers).try_acquire_owned() {
                Ok(worker) => worker,
                Err(_) => {
                    // Semaphores are fair: workers are handed out in arrival order.
                    let worker = Arc::clone(workers)
                        .acquire_owned()
                        .await
                        .map_err(|_| "the workers are gone")?;
                    queued = arrived.elapsed();
                    counters.waited(queued.as_micros().max(1) as u64);
                    worker
                }
            };
            guard.occupy(counters.worker_taken(worker));
        }
        let req = if shared.read_body_first {
            let (parts, body) = req.into_parts();
            let reading = tokio::time::Instant::now();
            let body = match body.collect().await {
                Ok(body) => body.to_bytes(),
                // The client went away mid-upload: nobody to answer.
                Err(e) => return Err(e.into()),
            };
            counters.body_read(reading.elapsed().as_micros().max(1) as u64);
            Request::from_parts(parts, full(body))
        } else {
            req.map(|body| body.map_err(BoxError::from).boxed_unsync())
        };
        if !shared.latency.is_zero() {
            tokio::time::sleep(shared.latency).await;
        }
        let mut resp = match route(&backend, req).await {
            Reply::Plain(resp) => resp.map(|body| Tracked::wrap(body, guard)),
            Reply::WebSocket(resp, on_upgrade) => {
                ctx.spawn_websocket(on_upgrade, guard);
                resp
            }
        };
        let h = resp.headers_mut();
        h.insert(QUEUED_US, (queued.as_micros() as u64).into());
        h.insert(TIME_US, (arrived.elapsed().as_micros() as u64).into());
        resp
    };
    resp.headers_mut()
        .insert(BACKEND_ID, shared.id_header.clone());
    Ok(resp)
}

async fn route(backend: &Backend, mut req: Request<RespBody>) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let reply = match (&method, path.as_str()) {
        (&Method::GET, "/") => text(backend.id()),
        (&Method::GET, "/headers") => headers(&req),
        (&Method::POST | &Method::PUT, "/echo") => echo(req),
        (&Method::POST, "/count") => count(req.into_body(), &backend.shared.counters).await,
        (_, p) if p == "/inspect" || p.starts_with("/inspect/") => inspect(req).await,
        (&Method::GET, "/ws") => {
            return match ws::accept(&mut req) {
                Ok((resp, on_upgrade)) => Reply::WebSocket(resp, on_upgrade),
                Err(why) => Reply::Plain(bad_request(why)),
            };
        }
        (&Method::GET, _) => {
            if let Some(ms) = param(&path, "/delay/") {
                match ms.parse::<u64>() {
                    Ok(ms) => {
                        tokio::time::sleep(Duration::from_millis(ms.min(MAX_DELAY_MS))).await;
                        text(backend.id())
                    }
                    Err(_) => bad_request("delay must be a number of milliseconds"),
                }
            } else if let Some(n) = param(&path, "/bytes/") {
                match n.parse::<u64>() {
                    Ok(n) => bytes(n, req.uri().query() == Some("length")),
                    Err(_) => bad_request("length must be a number of bytes"),
                }
            } else if let Some(n) = param(&path, "/drip/") {
                match (n.parse::<u32>(), drip_interval(req.uri().query())) {
                    (Ok(n), Some(every)) => drip(n, every),
                    _ => bad_request("drip takes a count of lines and ?ms=INTERVAL"),
                }
            } else if let Some(code) = param(&path, "/status/") {
                status(code)
            } else {
                not_found()
            }
        }
        _ => not_found(),
    };
    Reply::Plain(reply)
}

/// The single path segment after `prefix`, if the path is `prefix{segment}`.
fn param<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix).filter(|rest| !rest.contains('/'))
}

fn text(body: &str) -> Response<RespBody> {
    let mut resp = Response::new(full(body.to_owned()));
    resp.headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    resp
}

fn with_status(status: StatusCode, mut resp: Response<RespBody>) -> Response<RespBody> {
    *resp.status_mut() = status;
    resp
}

fn not_found() -> Response<RespBody> {
    with_status(StatusCode::NOT_FOUND, text("not found\n"))
}

fn bad_request(why: &str) -> Response<RespBody> {
    with_status(StatusCode::BAD_REQUEST, text(&format!("{why}\n")))
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<RespBody> {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut resp = with_status(status, Response::new(full(body)));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            text(&format!("cannot encode JSON: {e}\n")),
        ),
    }
}

fn echo(req: Request<RespBody>) -> Response<RespBody> {
    let content_type = req.headers().get(CONTENT_TYPE).cloned();
    // The request's trailers come back as the response's: HTTP/1.1 sends only those `Trailer`
    // names.
    let trailer = req.headers().get(http::header::TRAILER).cloned();
    // Handing hyper the request body as the response body streams it back frame by frame:
    // the response starts before the upload ends, which is what a streaming proxy must allow.
    let mut resp = Response::new(req.into_body());
    if let Some(content_type) = content_type {
        resp.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    if let Some(trailer) = trailer {
        resp.headers_mut().insert(http::header::TRAILER, trailer);
    }
    resp
}

async fn count(mut body: RespBody, counters: &Counters) -> Response<RespBody> {
    let mut sum = Checksum::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    sum.update(data);
                    counters.body_bytes(sum.len());
                }
            }
            Err(e) => return bad_request(&format!("reading the body failed: {e}")),
        }
    }
    json(
        StatusCode::OK,
        &serde_json::json!({ "bytes": sum.len(), "checksum": sum.finish() }),
    )
}

/// `?ms=N` (at most [`MAX_DELAY_MS`]).
fn drip_interval(query: Option<&str>) -> Option<Duration> {
    let ms = query?.strip_prefix("ms=")?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ms.min(MAX_DELAY_MS)))
}

/// `n` lines (`line 1\n`, ...), the first at once and each next one `every` later, chunked: a
/// slow stream (server-sent events, progress output) whose pieces must reach a client as
/// they come.
fn drip(n: u32, every: Duration) -> Response<RespBody> {
    let lines = futures_util::stream::unfold(1..=n, move |mut left| async move {
        let i = left.next()?;
        if i > 1 {
            tokio::time::sleep(every).await;
        }
        let line = Bytes::from(format!("line {i}\n"));
        Some((Ok::<_, BoxError>(Frame::data(line)), left))
    });
    let mut resp = Response::new(StreamBody::new(lines).boxed_unsync());
    resp.headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    resp
}

fn bytes(n: u64, with_length: bool) -> Response<RespBody> {
    let mut resp = Response::new(PatternBody::new(n).boxed_unsync());
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    if with_length {
        h.insert(http::header::CONTENT_LENGTH, n.into());
    }
    resp
}

fn headers(req: &Request<RespBody>) -> Response<RespBody> {
    let mut out = serde_json::Map::new();
    let headers = req.headers();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        out.insert(name.as_str().to_owned(), joined.into());
    }
    out.insert("_method".into(), req.method().as_str().into());
    out.insert("_uri".into(), req.uri().to_string().into());
    out.insert("_version".into(), format!("{:?}", req.version()).into());
    json(StatusCode::OK, &out)
}

/// Bytes of a body `/inspect` keeps; the rest is read and counted only.
const INSPECT_KEEP: usize = 1 << 20;

/// The whole request as it arrived, any method: method, target, version, headers (the values
/// of a repeated name joined with ", "), the body (lossy UTF-8) and its trailers; so tests see
/// exactly what a proxy forwarded.
async fn inspect(req: Request<RespBody>) -> Response<RespBody> {
    let (parts, mut body) = req.into_parts();
    let mut kept = Vec::new();
    let mut len = 0usize;
    let mut trailers = http::HeaderMap::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => {
                    len += data.len();
                    let room = INSPECT_KEEP.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers.extend(t);
                    }
                }
            },
            Err(e) => return bad_request(&format!("reading the body failed: {e}")),
        }
    }
    json(
        StatusCode::OK,
        &serde_json::json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "version": format!("{:?}", parts.version),
            "headers": header_map(&parts.headers),
            "body": String::from_utf8_lossy(&kept),
            "body_len": len,
            "trailers": header_map(&trailers),
        }),
    )
}

fn header_map(headers: &http::HeaderMap) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        out.insert(name.as_str().to_owned(), joined.into());
    }
    out
}

fn status(code: &str) -> Response<RespBody> {
    // 1xx are left out: hyper cannot send them as a final response.
    match code.parse::<u16>().ok().filter(|c| (200..=999).contains(c)) {
        Some(code) => match StatusCode::from_u16(code) {
            Ok(status) => with_status(status, Response::new(empty())),
            Err(_) => bad_request("not a status code"),
        },
        None => bad_request("status must be a number from 200 to 999"),
    }
}
