//! One client connection, from accept to close: hyper serves it, and this task closes it when
//! [`Activity`] says it waited too long for a request, when shutdown asks it to finish, or when
//! the shutdown deadline passes.
//!
//! A connection that did not send a whole head in time is closed without an answer, as nginx
//! does past `client_header_timeout` (it logs 408 but sends nothing) and as hyper's own header
//! timer does: the peer may be no HTTP client at all, and a 408 written to an idle keep-alive
//! connection races the client's next request, which it would take for that request's answer,
//! while a plain close is what every client already retries on a reused connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use http::StatusCode;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::activity::{Activity, Limits, Tracked, Verdict};
use crate::client_body::ClientBody;
use crate::client_io::ClientIo;
use crate::conn_limit::{ConnLimit, Slot};
use crate::h1::fallback::{Rewind, may_come_back};
use crate::h1::{ClientStream, Outcome};
use crate::headers::{self, Https};
use crate::listen::Kind;
use crate::proxy::Proxy;
use crate::send_timeout::SendTimeout;
use crate::signal::{Signal, Watch};

/// What every client connection of one `serve` shares.
pub(crate) struct Clients {
    pub proxy: Arc<Proxy>,
    /// Tells HTTP/1 from h2 by the first bytes (plain listeners, TLS without ALPN).
    pub builder: auto::Builder<TokioExecutor>,
    /// The same, told the protocol by ALPN.
    pub h1: auto::Builder<TokioExecutor>,
    /// One request the fast path declined, its connection handed back after it
    /// (`hyper_once`); configured as `h1` is.
    pub once: hyper::server::conn::http1::Builder,
    /// HTTP/2 clients (ALPN h2, or the h2c preface) are rouse's own (`crate::http2`).
    pub h2: crate::http2::Config,
    /// The TLS listeners' handshakes (certificates from `Proxy::certs`).
    pub tls: TlsAcceptor,
    /// Where `redirect_https` sends clients: the first TLS listener's port, else 443.
    pub https_port: u16,
    pub limit: ConnLimit,
    pub limits: Limits,
    /// Shutdown began: finish the request in progress, take no more.
    pub stop: Signal,
    /// The shutdown deadline passed: close now.
    pub kill: Signal,
    pub tracker: TaskTracker,
}

/// A connection as the acceptor's runtime hands it over.
pub(crate) enum Accepted {
    Tcp(std::net::TcpStream, SocketAddr),
    /// A unix socket client has no address: it is logged and forwarded as 127.0.0.1 (it is on
    /// this machine), port 0, so `X-Forwarded-For` stays a list of IPs that backends parse.
    Unix(std::os::unix::net::UnixStream),
}

/// The address a unix socket client is known by.
pub(crate) const UNIX_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// What a connection's requests get.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Proxy { https: bool },
    Redirect { https_port: u16 },
}

impl Clients {
    /// Serves `stream`, accepted on the acceptor's own runtime, in a task of the serving
    /// runtime (`runtime`), tracked for shutdown. A TLS handshake happens there too, never on
    /// the acceptor's thread, whose only job is to drain the listen queue.
    pub fn spawn(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        accepted: Accepted,
        kind: Kind,
        slot: Slot,
    ) {
        let clients = Arc::clone(self);
        runtime.spawn(self.tracker.track_future(async move {
            // Registering with this runtime's reactor must happen on it.
            match accepted {
                Accepted::Tcp(stream, peer) => match TcpStream::from_std(stream) {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        clients.serve_kind(stream, peer, kind, slot).await
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, client = %peer, "cannot register a connection")
                    }
                },
                Accepted::Unix(stream) => match UnixStream::from_std(stream) {
                    Ok(stream) => clients.serve_kind(stream, UNIX_PEER, kind, slot).await,
                    Err(e) => tracing::debug!(error = %e, "cannot register a unix connection"),
                },
            }
        }));
    }

    async fn serve_kind<IO>(self: Arc<Self>, stream: IO, peer: SocketAddr, kind: Kind, slot: Slot)
    where
        IO: ClientStream,
    {
        let accepted = Instant::now();
        match kind {
            Kind::Plain => {
                let mode = Mode::Proxy { https: false };
                serve(self, stream, peer, slot, accepted, None, mode).await
            }
            Kind::Redirect => {
                let mode = Mode::Redirect {
                    https_port: self.https_port,
                };
                serve(self, stream, peer, slot, accepted, None, mode).await
            }
            // Boxed: rustls's state is large, and every connection's task would otherwise
            // be sized for it, plain ones too.
            Kind::Tls => {
                Box::pin(async move {
                    let Some((stream, h2)) =
                        crate::tls::handshake(&self, stream, peer, accepted).await
                    else {
                        return;
                    };
                    let mode = Mode::Proxy { https: true };
                    serve(self, stream, peer, slot, accepted, h2, mode).await
                })
                .await
            }
        }
    }
}

impl Clients {
    /// The client's socket as hyper or the HTTP/2 server reads it, with the connection's
    /// [`Activity`], timed from accept (a TLS handshake counts towards
    /// `client_header_timeout`).
    fn client_io<IO>(
        &self,
        stream: IO,
        slot: Slot,
        accepted: Instant,
    ) -> (Arc<Activity>, ClientIo<SendTimeout<IO>>) {
        let activity = Activity::new(accepted);
        let io = ClientIo::new(
            SendTimeout::new(stream, self.proxy.settings.send_timeout),
            slot,
            Arc::clone(&activity),
        );
        (activity, io)
    }
}

async fn serve<IO>(
    clients: Arc<Clients>,
    stream: IO,
    peer: SocketAddr,
    slot: Slot,
    accepted: Instant,
    alpn_h2: Option<bool>,
    mode: Mode,
) where
    IO: ClientStream,
{
    // HTTP/1.x requests to http1 upstreams are served by the fast path; a request it declines
    // (a streamed body, Expect, ...) is hyper's, and the connection comes back after it but
    // for upgrades, upstreams of another protocol (see `Outcome::Decline`) and connections
    // hyper would not keep alive itself (`fallback::may_come_back`), which hyper keeps; the
    // h2c preface is rouse's HTTP/2 server's. Their connection state is large: boxed, so that
    // a connection the fast path keeps idle costs only its own small state.
    match (mode, alpn_h2) {
        (Mode::Proxy { https }, Some(true)) => {
            Box::pin(http2(clients, stream, peer, slot, accepted, https)).await
        }
        (Mode::Proxy { https }, None | Some(false)) => {
            let (mut stream, mut slot, mut since, mut resumed) = (stream, slot, accepted, None);
            // Requests declined one after the other, none served by the fast path between.
            let mut in_a_row = 0;
            loop {
                let served = crate::h1::serve(&clients, stream, peer, https, since, resumed);
                let (io, read, at, once) = match served.await {
                    Outcome::Done => return,
                    Outcome::Decline {
                        io,
                        read,
                        since,
                        once,
                        answered,
                    } => {
                        in_a_row = if answered { 1 } else { in_a_row + 1 };
                        (io, read, since, once)
                    }
                };
                let h2c = alpn_h2.is_none() && read.starts_with(H2_PREFACE);
                let max_headers = clients.proxy.settings.head.max_headers;
                let once = once
                    && in_a_row < DECLINED_IN_A_ROW
                    && !h2c
                    && may_come_back(&read, max_headers);
                let io = Rewind::new(io, read);
                if h2c {
                    return Box::pin(http2(clients, io, peer, slot, at, https)).await;
                }
                if !once {
                    return Box::pin(hyper(clients, io, peer, slot, at, alpn_h2, mode)).await;
                }
                let back = Box::pin(hyper_once(&clients, io, peer, slot, at, https)).await;
                let Some(back) = back else { return };
                (stream, slot, since, resumed) = (back.io, back.slot, back.at, Some(back.read));
            }
        }
        _ => {
            let io = Rewind::new(stream, Vec::new());
            Box::pin(hyper(clients, io, peer, slot, accepted, alpn_h2, mode)).await
        }
    }
}

async fn hyper<IO>(
    clients: Arc<Clients>,
    stream: IO,
    peer: SocketAddr,
    slot: Slot,
    accepted: Instant,
    alpn_h2: Option<bool>,
    mode: Mode,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (activity, io) = clients.client_io(stream, slot, accepted);
    let proxy = Arc::clone(&clients.proxy);
    let requests = Arc::clone(&activity);
    let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let open = requests.open();
        let proxy = Arc::clone(&proxy);
        async move {
            let resp = match mode {
                Mode::Redirect { https_port } => crate::redirect::answer(&proxy, &req, https_port),
                Mode::Proxy { https } => {
                    if https {
                        req.extensions_mut().insert(Https);
                    }
                    // Boxed: hyper's dispatcher would otherwise move all of `handle`'s
                    // state with this future.
                    Box::pin(proxy.handle(req.map(ClientBody::Hyper), peer)).await
                }
            };
            Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, open)))
        }
    });
    let builder = match alpn_h2 {
        Some(false) => &clients.h1,
        // Only redirect listeners get here with h2 (a client's h2c preface).
        Some(true) | None => &clients.builder,
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let ended = watch(&clients, &activity, peer, pin!(conn), |c| {
        c.graceful_shutdown()
    })
    .await;
    if let Some(Err(e)) = ended {
        log_hyper_answer(&clients, peer, &*e);
    }
}

/// A connection [`hyper_once`] gives back to the fast path.
struct Back<IO> {
    io: IO,
    slot: Slot,
    /// What came after the request (pipelined), to be read first.
    read: Vec<u8>,
    /// When its answer was over.
    at: Instant,
}

/// Serves one request the fast path declined with hyper, and gives the connection back after
/// its answer: a request hyper keeps the connection after (`may_come_back` read its head),
/// answered in full, and hyper idle again. It closes instead when rouse's answer says
/// `Connection: close` (it does when it was made before the request's body was read to its
/// end, as a 413 is: the rest of the body is still on the wire, and only whoever reads a body
/// to its end knows hyper read it all), when hyper ends the connection itself, when shutdown
/// asked it to finish, or on an error or timeout.
///
/// hyper is asked to stop (`graceful_shutdown`) only once it is idle after that answer
/// ([`OneRequest`]): asked any sooner, it would write `Connection: close` into the answer
/// (and asked before it has read anything, it closes at once). Its shutdown of the socket
/// then only flushes it ([`Rewind::keeping_open`]), and what it read past the request comes
/// back with the socket (`into_parts`). A pipelined request it reads at once after the first
/// makes it hyper's to keep, as before: nothing can tell it the connection would close.
async fn hyper_once<IO: ClientStream>(
    clients: &Arc<Clients>,
    io: Rewind<IO>,
    peer: SocketAddr,
    slot: Slot,
    since: Instant,
    https: bool,
) -> Option<Back<IO>> {
    let (activity, io) = clients.client_io(io.keeping_open(), slot, since);
    let proxy = Arc::clone(&clients.proxy);
    let requests = Arc::clone(&activity);
    let calls = Arc::new(AtomicUsize::new(0));
    let close = Arc::new(AtomicBool::new(false));
    let seen = (Arc::clone(&calls), Arc::clone(&close));
    let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let (calls, close) = (&seen.0, Arc::clone(&seen.1));
        calls.fetch_add(1, Ordering::AcqRel);
        let whole = http_body::Body::is_end_stream(req.body());
        let whole = Arc::new(AtomicBool::new(whole));
        let open = requests.open();
        let proxy = Arc::clone(&proxy);
        // Boxed: the connection is taken apart after it ends, which needs it `Unpin`.
        Box::pin(async move {
            if https {
                req.extensions_mut().insert(Https);
            }
            let read_whole = Arc::clone(&whole);
            let req = req.map(|body| ClientBody::HyperOnce { body, whole });
            let mut resp = Box::pin(proxy.handle(req, peer)).await;
            if !read_whole.load(Ordering::Acquire) {
                // The client is told, or it would send its next request on a connection
                // about to close.
                let close = http::HeaderValue::from_static("close");
                resp.headers_mut().insert(http::header::CONNECTION, close);
            }
            if headers::wants_close(resp.headers()) {
                close.store(true, Ordering::Release);
            }
            Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, open)))
        })
    });
    let mut conn = OneRequest {
        // With upgrades: a pipelined request hyper reads after the first is served in full, a
        // WebSocket one too.
        conn: clients
            .once
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades(),
        calls: Arc::clone(&calls),
        activity: Arc::clone(&activity),
        asked: false,
        finishing: false,
    };
    let ended = watch(clients, &activity, peer, Pin::new(&mut conn), |c| {
        c.get_mut().finish()
    })
    .await;
    match ended {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            log_hyper_answer(clients, peer, &e);
            return None;
        }
        None => return None,
    }
    let back = conn.asked
        && !conn.finishing
        && calls.load(Ordering::Acquire) == 1
        && !close.load(Ordering::Acquire);
    // None: upgraded, the socket is the tunnel's.
    let parts = conn.conn.into_parts()?;
    let (io, slot) = parts.io.into_inner().into_parts();
    let (mut io, unread) = io.into_inner().into_parts();
    if !back {
        let _ = io.shutdown().await;
        return None;
    }
    let mut read = parts.read_buf.to_vec();
    read.extend_from_slice(&unread);
    Some(Back {
        io,
        slot,
        read,
        at: Instant::now(),
    })
}

/// hyper's connection for [`hyper_once`]: asked to stop once it has answered its one request
/// in full (its response body done with: no request of the connection's [`Activity`] open)
/// and is waiting for the next; never when it has read a second.
struct OneRequest<C> {
    conn: C,
    calls: Arc<AtomicUsize>,
    activity: Arc<Activity>,
    /// It was asked to stop, to give the connection back.
    asked: bool,
    /// Shutdown asked it to finish: the answer may say `Connection: close`.
    finishing: bool,
}

impl<I, S> OneRequest<hyper::server::conn::http1::UpgradeableConnection<I, S>>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    fn finish(&mut self) {
        self.finishing = true;
        Pin::new(&mut self.conn).graceful_shutdown();
    }
}

impl<I, S, B> Future for OneRequest<hyper::server::conn::http1::UpgradeableConnection<I, S>>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    hyper::server::conn::http1::UpgradeableConnection<I, S>: Unpin,
{
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let polled = Pin::new(&mut this.conn).poll(cx);
            let answered = this.calls.load(Ordering::Acquire) == 1 && this.activity.none_open();
            if polled.is_ready() || this.asked || this.finishing || !answered {
                return polled;
            }
            // Polled again at once: hyper idle ends only when polled (one still flushing the
            // answer ends when that is done).
            this.asked = true;
            Pin::new(&mut this.conn).graceful_shutdown();
        }
    }
}

/// Logs the answer hyper wrote itself, if the connection ended with one.
fn log_hyper_answer(
    clients: &Clients,
    peer: SocketAddr,
    e: &(dyn std::error::Error + Send + Sync + 'static),
) {
    if let Some(status) = hyper_answer(e) {
        clients.proxy.refused_by_hyper(peer, status);
    }
}

/// The answer hyper wrote itself, if the connection ended with one. hyper answers a head it
/// cannot parse (400), one past `max_buf_size` or `max_headers` (431) and a request line past
/// its own URI limit (414) without calling rouse's service, then ends the connection with the
/// parse error: the only trace those requests leave, and nginx logs its own such answers.
/// hyper keeps the status private (`Server::on_error`): 414 and 431 share
/// `is_parse_too_large` and only the message tells them apart, and a parse error it does not
/// answer (an h2 preface on an h1 connection, its internal one) is told by its predicate or
/// message. `the_answers_hyper_makes_itself_are_logged` (rouse's tests) holds each kind.
fn hyper_answer(e: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<StatusCode> {
    let e = e.downcast_ref::<hyper::Error>()?;
    if e.is_parse_too_large() {
        return Some(if e.to_string() == "URI too long" {
            StatusCode::URI_TOO_LONG
        } else {
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        });
    }
    let unanswered = e.is_parse_status()
        || e.is_parse_version_h2()
        || e.to_string().starts_with("internal error");
    (e.is_parse() && !unanswered).then_some(StatusCode::BAD_REQUEST)
}

/// An HTTP/2 client, served by rouse's own server.
async fn http2<IO>(
    clients: Arc<Clients>,
    stream: IO,
    peer: SocketAddr,
    slot: Slot,
    accepted: Instant,
    https: bool,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (activity, io) = clients.client_io(stream, slot, accepted);
    let streams = crate::http2::Streams {
        proxy: Arc::clone(&clients.proxy),
        peer,
        https,
        activity: Arc::clone(&activity),
    };
    let conn = crate::http2::Connection::new(io, clients.h2, streams);
    watch(&clients, &activity, peer, pin!(conn), |c| {
        c.graceful_shutdown()
    })
    .await;
}

/// Drives `conn` (hyper's or rouse's HTTP/2 server) until it ends, and asks it to finish
/// (`finish`) or drops it when the connection's [`Activity`], shutdown or its deadline say so.
/// What it ended with, if it ended by itself (`None`: dropped).
async fn watch<C, E>(
    clients: &Clients,
    activity: &Activity,
    peer: SocketAddr,
    mut conn: Pin<&mut C>,
    finish: impl Fn(Pin<&mut C>),
) -> Option<Result<(), E>>
where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut asked_to_finish = false;
    // Set at shutdown: until then, an idle HTTP/1 connection is kept for its next request.
    let mut stop_grace: Option<Instant> = None;
    let (stop, kill) = (
        pin!(clients.stop.cancelled()),
        pin!(clients.kill.cancelled()),
    );
    let mut stop = Watch::new(&clients.stop, stop);
    let mut kill = Watch::new(&clients.kill, kill);
    loop {
        if let Some(at) = stop_grace
            && !asked_to_finish
            && (activity.can_finish() || Instant::now() >= at)
        {
            asked_to_finish = true;
            finish(conn.as_mut());
        }
        let wake = match activity.verdict(Instant::now(), clients.limits) {
            Verdict::Busy => None,
            Verdict::WaitUntil(at) => Some(at),
            Verdict::GoAway => {
                tracing::debug!(client = %peer, "idle h2 connection: GOAWAY");
                if !asked_to_finish {
                    asked_to_finish = true;
                    finish(conn.as_mut());
                }
                activity.going_away(Instant::now());
                continue;
            }
            Verdict::Close => {
                tracing::debug!(client = %peer, "no request in time; closing the connection");
                return None;
            }
        };
        let wake = match (wake, stop_grace.filter(|_| !asked_to_finish)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = &ended {
                    tracing::debug!(error = %e, client = %peer, "client connection ended with an error");
                }
                return Some(ended);
            }
            () = activity.changed() => {}
            () = sleep_until(wake), if wake.is_some() => {}
            // An idle HTTP/1 connection closed at once races the request its client may be
            // sending: one accepted as accepting stopped (shutdown, or `rouse upgrade`
            // handing the listeners over) would be closed unread, its request on the wire
            // answered by a reset; a keep-alive one would fail the client's next request.
            // So the next request within the grace is served, with `Connection: close`.
            () = stop.wait(), if !asked_to_finish && stop_grace.is_none() => {
                stop_grace = Some(Instant::now() + STOP_GRACE);
            }
            () = kill.wait() => return None,
        }
    }
}

/// The h2c connection preface starts with the method `PRI` (RFC 9113 §3.4), which the fast
/// path declines as soon as it sees it.
const H2_PREFACE: &[u8] = b"PRI ";

/// A connection whose requests the fast path declined this many times in a row is hyper's to
/// keep: a client that only uploads chunked bodies would otherwise pay each time for the fast
/// path's look at the head and a new hyper connection (measured: 8% more CPU per request).
const DECLINED_IN_A_ROW: u32 = 4;

/// At shutdown, how long an idle HTTP/1 connection is kept for its next request.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(1);

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<'a, A: 'a, B, C, D, E, Fut>(_: impl FnOnce(A, B, C, D, E) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Every client connection's task is sized for its largest state: TLS and hyper's are
    /// boxed, so that an idle keep-alive connection costs little more than its socket. (The
    /// bound is loose: debug builds lay futures out larger than release ones.)
    #[test]
    fn a_connection_task_stays_small() {
        let task = future_size(Clients::serve_kind::<TcpStream>);
        assert!(task <= 2048, "a plain connection's task is {task} bytes");
    }
}
