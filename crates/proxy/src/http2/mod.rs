//! rouse's HTTP/2 server: h2 (the crate under hyper's own HTTP/2 server) driven directly.
//!
//! hyper's server layer over h2 cost about a tenth of an h2c request's instructions
//! (docs/benchmarks.md, session 13): its request and body wrappers, its per-stream state
//! machine and task, a pass over every response's fields for connection-specific ones, a
//! clock read per connection poll for its keep-alive. Here a stream is a task that calls
//! [`Proxy::handle`] and pipes the answer into h2 (`stream`); the connection is a future
//! that accepts streams, pings an idle client, and finishes on request, which the
//! connection's task (`crate::connection`) drives as it drives hyper's connections.

mod stream;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use crate::activity::Activity;
use crate::proxy::Proxy;
use crate::proxy::Settings;

/// An idle client is pinged this often, and closed when it has not answered by the next.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// What hyper's server asked of h2, kept: 1 MiB windows (the protocol's 64 KiB default
/// throttles an upload on any link with latency), 16 KiB frames, 400 KiB buffered per stream.
const WINDOW: u32 = 1024 * 1024;
const MAX_FRAME: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;
const MAX_CONCURRENT_STREAMS: u32 = 512;
/// Streams a client may make rouse reset (malformed ones) before the connection is closed.
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// The h2 settings rouse serves clients with.
pub(crate) fn builder(settings: &Settings) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .max_header_list_size(crate::limits::h2_header_list_size(&settings.head));
    builder
}

/// What each stream of a connection needs.
pub(crate) struct Streams {
    pub proxy: Arc<Proxy>,
    pub peer: SocketAddr,
    /// The connection came over TLS.
    pub https: bool,
    pub activity: Arc<Activity>,
}

/// One client's HTTP/2 connection, until it closes.
pub(crate) struct Connection<IO> {
    state: State<IO>,
    /// Finish was asked before the handshake ended.
    finish: bool,
    keep_alive: Option<KeepAlive>,
    streams: Arc<Streams>,
}

enum State<IO> {
    Handshaking(h2::server::Handshake<IO, Bytes>),
    Serving(h2::server::Connection<IO, Bytes>),
}

impl<IO> Connection<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    pub fn new(io: IO, builder: &h2::server::Builder, streams: Streams) -> Connection<IO> {
        Connection {
            state: State::Handshaking(builder.handshake(io)),
            finish: false,
            keep_alive: None,
            streams: Arc::new(streams),
        }
    }

    /// GOAWAY: the streams the client opened so far are served, no more are taken, and the
    /// connection ends when they are done.
    pub fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.get_mut();
        match &mut this.state {
            State::Handshaking(_) => this.finish = true,
            State::Serving(conn) => conn.graceful_shutdown(),
        }
    }
}

impl<IO> Future for Connection<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Result<(), h2::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let conn = match &mut this.state {
                State::Handshaking(hs) => {
                    let mut conn = ready!(Pin::new(hs).poll(cx))?;
                    if this.finish {
                        conn.graceful_shutdown();
                    }
                    this.keep_alive = conn.ping_pong().map(KeepAlive::new);
                    this.state = State::Serving(conn);
                    continue;
                }
                State::Serving(conn) => conn,
            };
            if let Some(keep_alive) = &mut this.keep_alive
                && keep_alive.poll_dead(cx).is_ready()
            {
                tracing::debug!(client = %this.streams.peer, "no answer to a keep-alive ping; closing");
                return Poll::Ready(Ok(()));
            }
            match ready!(conn.poll_accept(cx)) {
                Some(Ok((req, respond))) => {
                    let open = this.streams.activity.open();
                    // Boxed: spawning moves a task's future several times, and a stream's is
                    // 2 KiB (its answer's head and body, the pipe's state).
                    let stream = stream::serve(Arc::clone(&this.streams), req, respond, open);
                    tokio::spawn(Box::pin(stream));
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
                // The connection is closed (the peer went away, or GOAWAY and no stream left).
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// PINGs that find a dead peer (hyper's server did this with `keep_alive_interval`): one
/// every [`KEEP_ALIVE`], and when the last one is still unanswered at the next, the peer is
/// gone.
struct KeepAlive {
    ping: h2::PingPong,
    timer: Pin<Box<Sleep>>,
    waiting: bool,
}

impl KeepAlive {
    fn new(ping: h2::PingPong) -> KeepAlive {
        KeepAlive {
            ping,
            timer: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
            waiting: false,
        }
    }

    /// Ready when the peer did not answer in time (or the ping cannot be sent).
    fn poll_dead(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.waiting && self.ping.poll_pong(cx).is_ready() {
            self.waiting = false;
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            if self.waiting || self.ping.send_ping(h2::Ping::opaque()).is_err() {
                return Poll::Ready(());
            }
            self.waiting = true;
            self.timer.as_mut().reset(Instant::now() + KEEP_ALIVE);
            // Registers for the pong now: it may come before this connection is polled again.
            if self.ping.poll_pong(cx).is_ready() {
                self.waiting = false;
            }
        }
        Poll::Pending
    }
}
