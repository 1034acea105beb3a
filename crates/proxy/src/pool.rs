//! Connections to one server: keep-alive HTTP/1.1 connections, or shared HTTP/2 ones.
//!
//! Hand-written rather than hyper-util's legacy `Client` because the proxy needs what that
//! client hides: a connect failure must hand the request back (so it can be retried on another
//! server with its streamed body untouched), `try_send_request` tells whether a connection
//! died before anything was written, and connections belong to a server, not to a URI.
//!
//! - `http1`: an idle LIFO list; a request takes a connection for itself and gives it back
//!   once its response has ended cleanly.
//! - `h2c` (and `h2`, the same over a TLS stream that chose h2 by ALPN): one multiplexed
//!   connection shared by every request (see [`h2`]).

mod h2;

use std::sync::Mutex;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rouse_config::Protocol;
use tokio::time::Instant;

use crate::connect::Target;

use crate::request_body::RequestBody;

pub use h2::H2Lease;

/// A way to send one request to the server: a connection of its own (HTTP/1.1), or a stream
/// on a shared one (HTTP/2).
#[derive(Debug)]
pub enum Sender {
    Http1(http1::SendRequest<RequestBody>),
    Http2(H2Lease),
}

impl Sender {
    /// Whether a request can be sent now without waiting.
    pub fn is_ready(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_ready(),
            Sender::Http2(l) => l.is_ready(),
        }
    }

    /// Waits until the connection can take a request.
    pub async fn ready(&mut self) -> Result<(), hyper::Error> {
        match self {
            Sender::Http1(s) => s.ready().await,
            Sender::Http2(l) => l.ready().await,
        }
    }

    /// Sends `req`; on a failure before anything was written the request comes back in the
    /// error ([`TrySendError::take_message`]).
    pub async fn try_send_request(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<RequestBody>>> {
        match self {
            Sender::Http1(s) => s.try_send_request(req).await,
            Sender::Http2(l) => l.try_send_request(req).await,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(l) => l.is_closed(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    #[error("handshake with {0}: {1}")]
    Handshake(String, hyper::Error),
    /// Another request's connect, which this one waited for, failed (HTTP/2: one connect at
    /// a time per server).
    #[error("{0}")]
    Shared(String),
    /// `protocol = "h2"` and the server's TLS did not choose h2 by ALPN.
    #[error("{0} did not choose HTTP/2 by ALPN (protocol = \"h2\"; it chose {1})")]
    NotH2(String, String),
}

#[derive(Debug)]
pub struct Pool {
    target: Target,
    protocol: Protocol,
    idle: Mutex<Vec<(Sender, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
    h2: h2::Shared,
    /// The fast path's connections (`crate::h1`): raw sockets, not hyper's.
    raw: crate::h1::upstream::Idle,
}

impl Pool {
    pub fn new(
        target: Target,
        protocol: Protocol,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Pool {
        Pool {
            target,
            protocol,
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
            h2: h2::Shared::default(),
            raw: Default::default(),
        }
    }

    /// A raw idle connection for the fast path (HTTP/1.1 only), checked still open.
    pub(crate) fn raw_checkout(&self, now: Instant) -> Option<crate::connect::Stream> {
        self.raw.checkout(now, self.idle_timeout)
    }

    /// Gives a raw connection back after a response that ended cleanly.
    pub(crate) fn raw_put(&self, stream: crate::connect::Stream, now: Instant) {
        self.raw.put(stream, now, self.max_idle);
    }

    /// A new raw connection (TCP, unix or TLS) for the fast path.
    pub(crate) async fn connect_raw(
        &self,
        timeout: Duration,
    ) -> Result<crate::connect::Stream, crate::connect::ConnectError> {
        self.target.connect(timeout).await
    }

    /// What this pool speaks (a reload that changes an upstream's protocol gets new pools).
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// A connection to send on without connecting: HTTP/1.1, the most recently used live idle
    /// one (LIFO keeps the hot ones warm and lets the cold ones expire); HTTP/2, a stream on
    /// a live shared connection with room for one.
    pub fn checkout(&self, now: Instant) -> Option<Sender> {
        if self.protocol.is_http2() {
            return self.h2.checkout(now).map(Sender::Http2);
        }
        let mut idle = self.lock();
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && now.saturating_duration_since(since) < self.idle_timeout {
                return Some(sender);
            }
        }
        None
    }

    /// Gives a connection back after its response ended cleanly (an HTTP/2 stream is simply
    /// released).
    pub fn put(&self, sender: Sender, now: Instant) {
        let sender = match sender {
            Sender::Http2(lease) => return drop(lease),
            Sender::Http1(s) => Sender::Http1(s),
        };
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() >= self.max_idle {
            // The oldest is the least likely to be needed again.
            idle.remove(0);
        }
        idle.push((sender, now));
    }

    /// Drops idle connections older than the idle timeout (closing their sockets).
    pub fn evict_expired(&self, now: Instant) {
        self.lock().retain(|(s, since)| {
            !s.is_closed() && now.saturating_duration_since(*since) < self.idle_timeout
        });
        self.h2.evict_idle(now, self.idle_timeout);
        self.raw.evict_expired(now, self.idle_timeout);
    }

    /// Idle HTTP/1.1 connections, or open HTTP/2 ones.
    pub fn idle_count(&self) -> usize {
        self.lock().len() + self.h2.len() + self.raw.len()
    }

    /// A new connection (HTTP/1.1), or a stream on a new shared one (HTTP/2; when several
    /// requests need one at once, the first connects and the others share its connection).
    pub async fn connect(&self, timeout: Duration) -> Result<Sender, ConnectError> {
        match self.protocol {
            Protocol::Http1 => {
                let stream = self.target.connect(timeout).await?;
                self.handshake_http1(TokioIo::new(stream))
                    .await
                    .map(Sender::Http1)
            }
            // h2 is h2c inside TLS: the target's TLS configuration offers ALPN "h2" alone
            // (rouse_state::tls), and the server must have chosen it.
            Protocol::H2c | Protocol::H2 => {
                let shown = self.target.to_string();
                let lease = self
                    .h2
                    .connect(&shown, Instant::now(), || async {
                        let stream = self.target.connect(timeout).await?;
                        if self.protocol == Protocol::H2 && stream.negotiated_alpn() != Some(b"h2")
                        {
                            let chose = stream.negotiated_alpn().map_or_else(
                                || "no protocol".to_owned(),
                                |p| String::from_utf8_lossy(p).into_owned(),
                            );
                            return Err(ConnectError::NotH2(shown.clone(), chose));
                        }
                        let handshake = h2::handshake(&shown, TokioIo::new(stream));
                        // Others may be waiting for this connect: it must end in time.
                        tokio::time::timeout(timeout, handshake)
                            .await
                            .unwrap_or_else(|_| {
                                Err(
                                    crate::connect::ConnectError::Timeout(shown.clone(), timeout)
                                        .into(),
                                )
                            })
                    })
                    .await?;
                Ok(Sender::Http2(lease))
            }
        }
    }

    /// The HTTP/1.1 handshake over any stream (TCP, unix or TLS).
    async fn handshake_http1<T>(
        &self,
        io: T,
    ) -> Result<http1::SendRequest<RequestBody>, ConnectError>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| ConnectError::Handshake(self.target.to_string(), e))?;
        tokio::spawn(async move {
            // Errors here are the server closing or resetting; the request side sees them too.
            if let Err(e) = conn.with_upgrades().await {
                tracing::trace!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Sender, Instant)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}
