//! A minimal HTTP/1.1 client over a fresh connection per call.
//!
//! Fresh connections keep the helper from sharing a pool with the code under test; the
//! backend leaves connections that start with `/stats` out of its connection count, so
//! polling [`stats`] does not disturb it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::backend::Stats;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A whole response.
#[derive(Debug, Clone)]
pub struct SimpleResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl SimpleResponse {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `x-backend-id` header, if any.
    pub fn backend_id(&self) -> Option<&str> {
        self.headers.get("x-backend-id")?.to_str().ok()
    }
}

/// `http://{addr}{path}`; `path` should start with `/`.
pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// `GET path` on a new connection to `addr`, reading the whole body, all within 10 s.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<SimpleResponse, BoxError> {
    tokio::time::timeout(TIMEOUT, get(addr, path))
        .await
        .map_err(|_| format!("GET http://{addr}{path} took over {TIMEOUT:?}"))?
}

async fn get(addr: SocketAddr, path: &str) -> Result<SimpleResponse, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // Ends by itself once `sender` is dropped and the exchange is done.
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(SimpleResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A backend's `GET /stats`, or why it could not be had.
pub async fn try_stats(addr: SocketAddr) -> Result<Stats, BoxError> {
    let resp = http_get(addr, "/stats").await?;
    if resp.status != StatusCode::OK {
        return Err(format!("GET /stats on {addr}: {}", resp.status).into());
    }
    Ok(serde_json::from_slice(&resp.body)?)
}

/// A backend's `GET /stats`; panics if it cannot be had.
pub async fn stats(addr: SocketAddr) -> Stats {
    try_stats(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot get /stats from {addr}: {e}"))
}
