//! Readiness probes: is a starting server able to take requests yet?
//!
//! Polled often (every few ms at first) because the moment a server listens is the moment held
//! requests may go; a refused connect on loopback costs microseconds.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rouse_config::Readiness;
use rouse_supervisor::BoxFuture;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

/// How the control plane finds out whether a server takes requests: the seam between the
/// reconciler and the network, so that its tests can script the answers (and run on a paused
/// clock) while rouse itself connects for real ([`Tcp`]).
pub trait Probe: Send + Sync + 'static {
    /// Polls until the server is ready, or `deadline` passes (`Err` says what was last seen).
    fn until_ready<'a>(
        &'a self,
        addr: SocketAddr,
        readiness: &'a Readiness,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// One connect: whether a ready server the data plane could not reach still accepts
    /// connections (`Err` says why not).
    fn accepts(&self, addr: SocketAddr) -> BoxFuture<'_, Result<(), String>>;
}

/// The real probe: TCP connects and HTTP requests.
pub struct Tcp;

impl Probe for Tcp {
    fn until_ready<'a>(
        &'a self,
        addr: SocketAddr,
        readiness: &'a Readiness,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(until_ready(addr, readiness, deadline))
    }

    fn accepts(&self, addr: SocketAddr) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(accepts(addr))
    }
}

/// One attempt may take this long before it counts as a failure.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Interval between attempts: fast at first (most servers come up within a second), then
/// gentler for slow starters.
fn interval(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_secs(2) {
        Duration::from_millis(2)
    } else {
        Duration::from_millis(25)
    }
}

/// Polls until the server is ready, or `deadline` passes (`Err` says what was last seen).
pub async fn until_ready(
    addr: SocketAddr,
    readiness: &Readiness,
    deadline: Instant,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let attempt = match readiness {
            // "supervisor" readiness is decided by the supervisor's RUNNING, not probed.
            Readiness::Supervisor => return Ok(()),
            Readiness::Tcp => tcp(addr).await,
            Readiness::Http { path } => http(addr, path).await,
        };
        let last = match attempt {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let next = Instant::now() + interval(started.elapsed());
        if next >= deadline {
            return Err(last);
        }
        sleep(next - Instant::now()).await;
    }
}

/// One connect: whether a ready server the data plane could not reach still accepts
/// connections (`Err` says why not).
pub async fn accepts(addr: SocketAddr) -> Result<(), String> {
    tcp(addr).await
}

async fn tcp(addr: SocketAddr) -> Result<(), String> {
    match timeout(ATTEMPT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connect to {addr}: {e}")),
        Err(_) => Err(format!("connect to {addr} timed out")),
    }
}

async fn http(addr: SocketAddr, path: &str) -> Result<(), String> {
    let attempt = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(header::HOST, addr.to_string())
            .header(header::USER_AGENT, "rouse-readiness")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad probe request: {e}"))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("GET {path} on {addr}: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("GET {path} on {addr} answered {}", resp.status()))
        }
    };
    match timeout(ATTEMPT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("GET {path} on {addr} timed out")),
    }
}
