//! HTTP/2 connections to one server, shared by every request to it.
//!
//! One connection carries every request as a stream of its own. A second one is opened only
//! when the first has as many streams open as the server allows (its
//! `SETTINGS_MAX_CONCURRENT_STREAMS`, at most [`MAX_STREAMS`]), up to [`MAX_CONNS`]; past
//! that, requests share the least busy one and hyper queues them until a stream ends. A
//! connection that closes, gets GOAWAY or hands a request back unsent is retired: no new
//! request goes on it, its open streams finish, and the next request opens a fresh one.
//! Several requests that find no connection at once wait for one connect, not one each.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use super::ConnectError;
use crate::request_body::RequestBody;

/// Streams rouse opens on one connection at most, whatever the server allows: RFC 9113
/// §6.5.2 recommends servers allow at least 100, and the windows below are sized for it.
pub(crate) const MAX_STREAMS: usize = 100;
/// Connections to one server at most; together they carry `MAX_CONNS * MAX_STREAMS` requests.
pub(crate) const MAX_CONNS: usize = 8;
/// What a server may send on one stream before rouse reads it. A stream whose client reads
/// slowly (gRPC streams are never buffered) stops its server at this much, and never blocks
/// the others: the connection's window covers every stream's at once.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONN_WINDOW: u32 = STREAM_WINDOW * MAX_STREAMS as u32;
/// A connection whose server stops answering pings (a host gone, a half-open socket) is closed
/// rather than handed requests that would wait for `read_timeout` each.
const PING_INTERVAL: Duration = Duration::from_secs(20);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest response head a server may send (hyper's default is 16 KiB): as large as the
/// biggest request head rouse takes by default and then some, so a response with a few big
/// cookies passes as it does over HTTP/1.1.
const MAX_RESPONSE_HEAD: u32 = 64 * 1024;

type Send = http2::SendRequest<RequestBody>;

#[derive(Debug, Default)]
pub(super) struct Shared {
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Held while connecting. Inside: the last failed connect, so that requests that waited
    /// for it fail with it too instead of each trying (and timing out) in turn.
    gate: tokio::sync::Mutex<Option<(Instant, String)>>,
}

#[derive(Debug)]
struct Conn {
    send: Send,
    /// Streams open on it (leases alive).
    streams: AtomicUsize,
    /// The server's `SETTINGS_MAX_CONCURRENT_STREAMS`, as the connection task last saw it.
    server_max: Arc<AtomicUsize>,
    retired: AtomicBool,
    /// When its last stream ended, for `pool_idle_timeout`.
    idle_since: Mutex<Instant>,
}

impl Conn {
    fn usable(&self) -> bool {
        !self.retired.load(Ordering::Acquire) && !self.send.is_closed()
    }

    fn has_room(&self) -> bool {
        let max = self.server_max.load(Ordering::Relaxed).min(MAX_STREAMS);
        self.streams.load(Ordering::Acquire) < max
    }

    fn lease(self: &Arc<Self>) -> H2Lease {
        self.streams.fetch_add(1, Ordering::AcqRel);
        H2Lease {
            conn: Arc::clone(self),
            send: self.send.clone(),
        }
    }
}

/// One stream's share of a connection: it counts as open until dropped (when the response
/// has ended, or failed).
#[derive(Debug)]
pub struct H2Lease {
    conn: Arc<Conn>,
    send: Send,
}

impl H2Lease {
    pub(super) fn is_ready(&self) -> bool {
        self.send.is_ready()
    }

    pub(super) fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    pub(super) async fn ready(&mut self) -> Result<(), hyper::Error> {
        self.send.ready().await
    }

    pub(super) async fn try_send_request(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<RequestBody>>> {
        let sent = self.send.try_send_request(req).await;
        if let Err(e) = &sent
            && (e.message().is_some() || e.error().is_closed())
        {
            // The connection takes no more requests (GOAWAY, closed): the next one opens
            // another. A stream the server merely reset leaves it in use.
            self.conn.retired.store(true, Ordering::Release);
        }
        sent
    }
}

impl Drop for H2Lease {
    fn drop(&mut self) {
        if self.conn.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self
                .conn
                .idle_since
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
    }
}

impl Shared {
    /// A stream on a usable connection with room; with every connection full and
    /// [`MAX_CONNS`] open, on the least busy one.
    pub(super) fn checkout(&self, _now: Instant) -> Option<H2Lease> {
        let mut conns = self.lock();
        conns.retain(|c| c.usable());
        if let Some(conn) = conns.iter().find(|c| c.has_room()) {
            return Some(conn.lease());
        }
        if conns.len() >= MAX_CONNS {
            return conns
                .iter()
                .min_by_key(|c| c.streams.load(Ordering::Acquire))
                .map(Conn::lease);
        }
        None
    }

    /// A stream on a new connection made by `connect`, one connect at a time: a request that
    /// waited for another's connect uses its connection, or fails with its error.
    pub(super) async fn connect<F, Fut>(
        &self,
        addr: SocketAddr,
        started: Instant,
        connect: F,
    ) -> Result<H2Lease, ConnectError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Send, Arc<AtomicUsize>), ConnectError>>,
    {
        let mut gate = self.gate.lock().await;
        if let Some((at, why)) = &*gate
            && *at >= started
        {
            return Err(ConnectError::Shared(why.clone()));
        }
        if let Some(lease) = self.checkout(Instant::now()) {
            return Ok(lease);
        }
        match connect().await {
            Ok((send, server_max)) => {
                *gate = None;
                let conn = Arc::new(Conn {
                    send,
                    streams: AtomicUsize::new(0),
                    server_max,
                    retired: AtomicBool::new(false),
                    idle_since: Mutex::new(Instant::now()),
                });
                let lease = conn.lease();
                self.lock().push(conn);
                tracing::debug!(server = %addr, "new HTTP/2 connection");
                Ok(lease)
            }
            Err(e) => {
                *gate = Some((Instant::now(), e.to_string()));
                Err(e)
            }
        }
    }

    /// Closes connections with no stream open for `idle_timeout`, and forgets closed ones.
    pub(super) fn evict_idle(&self, now: Instant, idle_timeout: Duration) {
        self.lock().retain(|c| {
            let since = *c.idle_since.lock().unwrap_or_else(|e| e.into_inner());
            c.usable()
                && (c.streams.load(Ordering::Acquire) > 0
                    || now.saturating_duration_since(since) < idle_timeout)
        });
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The HTTP/2 handshake over any stream: plain TCP for `h2c`, or a TLS stream whose ALPN
/// chose "h2" for `h2`. Returns the sender and the server's stream limit as it changes.
pub(crate) async fn handshake<T>(
    addr: SocketAddr,
    io: T,
) -> Result<(Send, Arc<AtomicUsize>), ConnectError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + std::marker::Send + 'static,
{
    let (send, mut conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_max_send_streams(MAX_STREAMS)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(true)
        .max_header_list_size(MAX_RESPONSE_HEAD)
        .handshake(io)
        .await
        .map_err(|e| ConnectError::Handshake(addr, e))?;
    let server_max = Arc::new(AtomicUsize::new(MAX_STREAMS));
    let seen = Arc::clone(&server_max);
    tokio::spawn(async move {
        let ended = std::future::poll_fn(|cx| {
            let polled = Pin::new(&mut conn).poll(cx);
            seen.store(conn.current_max_send_streams(), Ordering::Relaxed);
            polled
        })
        .await;
        // Errors here are the server closing or resetting; the requests on it see them too.
        if let Err(e) = ended {
            tracing::trace!(server = %addr, error = %e, "upstream HTTP/2 connection ended");
        }
    });
    Ok((send, server_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests that wait for another's connect share its failure instead of each trying
    /// (and, against a black hole, each waiting `connect_timeout`) in turn; a request that
    /// comes after it tries again.
    #[tokio::test(start_paused = true)]
    async fn waiters_share_a_failed_connect() {
        let shared = Arc::new(Shared::default());
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let attempts = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let shared = Arc::clone(&shared);
            let attempts = Arc::clone(&attempts);
            tasks.push(tokio::spawn(async move {
                shared
                    .connect(addr, started, || async {
                        attempts.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Err(ConnectError::Timeout(addr, Duration::from_secs(1)))
                    })
                    .await
                    .map(|_| ())
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_err());
        }
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "one wait, not five"
        );

        tokio::time::advance(Duration::from_millis(1)).await;
        let later = shared
            .connect(addr, Instant::now(), || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(ConnectError::Timeout(addr, Duration::from_secs(1)))
            })
            .await;
        assert!(later.is_err());
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            2,
            "a later request tries again"
        );
        assert!(shared.checkout(Instant::now()).is_none());
    }
}
