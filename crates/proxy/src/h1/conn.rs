//! One client connection on the fast path: read a head, route it, send it to a server,
//! pass the answer back, and again, until the client leaves, a timeout or shutdown closes the
//! connection, or a request the fast path declines hands the connection to hyper (for that
//! request only, mostly: see [`Outcome::Decline`]).

use std::borrow::Cow;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::Response;
use rouse_config::Protocol;
use rouse_state::Server;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

use super::bufs::{self, Bufs};
use super::copy::{self, Cut, Timeouts, Upstream};
use super::decode::Decoder;
use super::exchange::{self, HeadError};
use super::request::{self, Head, Parsed};
use super::response::{self, ClientConn};
use super::rewrite;
use super::timer::{arm, until};
use crate::access::Seen;
use crate::access::request_id;
use crate::body::ProxyBody;
use crate::buffer::{Limits, spool::Spool};
use crate::connection::{Clients, STOP_GRACE};
use crate::forward::Done;
use crate::hold::Waiter;
use crate::proxy::{Proxy, RouteUpstream, Routes};
use crate::signal::Watch;
use crate::sock;

/// A head not whole in this many bytes is left to hyper (which answers 431 or 414 past the
/// limits, or takes a long one within them).
const HEAD_MAX: usize = 16 * 1024;

/// The largest request body the fast path reads (whole, before a server is chosen, which is
/// what `request_buffering` means); larger ones go to hyper's path and its temp files.
const BODY_MAX: u64 = 64 * 1024;

/// A client socket the fast path can wait on without a buffer.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready when a read would not block (or may not: a spurious wake-up costs a buffer
    /// taken and given back).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// What must be sent before the connection is dropped: TLS's close_notify. A plain
    /// socket needs nothing: dropping it closes it, which sends the FIN; a shutdown first
    /// would cost a system call per closed connection and change nothing (a close with
    /// unread bytes resets the connection either way).
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self).poll_shutdown(cx)
    }

    /// Reads what has come into `buf`'s spare room: how much, 0 at the client's end.
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut Vec<u8>) -> Poll<io::Result<usize>> {
        tokio_util::io::poll_read_buf(Pin::new(self), cx, buf)
    }

    /// Writes what of `data` the stream takes now.
    fn poll_send(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self).poll_write(cx, data)
    }
}

/// A plain socket is read and written with the system calls themselves (`crate::sock`).
impl ClientStream for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn poll_finish(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut Vec<u8>) -> Poll<io::Result<usize>> {
        sock::poll_recv(self, cx, buf)
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        sock::poll_send(self, cx, data)
    }
}

impl ClientStream for UnixStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        UnixStream::poll_read_ready(self, cx)
    }

    fn poll_finish(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut Vec<u8>) -> Poll<io::Result<usize>> {
        sock::poll_recv(self, cx, buf)
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        sock::poll_send(self, cx, data)
    }
}

/// TLS: ready when rustls holds plaintext already (it does not want to read), else when the
/// socket under it is.
impl<T: ClientStream> ClientStream for tokio_rustls::server::TlsStream<T> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (io, conn) = self.get_ref();
        if !conn.wants_read() {
            return Poll::Ready(Ok(()));
        }
        io.poll_read_ready(cx)
    }
}

/// How a connection left the fast path.
pub(crate) enum Outcome<IO> {
    /// Closed (or to be closed): nothing more to do.
    Done,
    /// Hyper serves the next request, reading `read` first. `since`: accept, or when the last
    /// answer went out (the next head's timer counts from it). `once`: the connection may
    /// come back here after that request; otherwise it is hyper's from then on (an Upgrade,
    /// which may make it a tunnel; an upstream the fast path never serves, which every
    /// request on it is likely for).
    Decline {
        io: IO,
        read: Vec<u8>,
        since: Instant,
        once: bool,
        /// The fast path answered a request of the connection since it had it (last).
        answered: bool,
    },
}

/// What one request left the connection as.
enum Step {
    KeepAlive,
    Close,
    /// See [`Outcome::Decline`]'s `once`.
    Decline {
        once: bool,
    },
}

/// Serves `io` from a request boundary. `resumed`: the connection comes back from hyper,
/// which answered a request at `since`; these bytes came after it.
pub(crate) async fn serve<IO: ClientStream>(
    clients: &Clients,
    mut io: IO,
    peer: SocketAddr,
    https: bool,
    since: Instant,
    resumed: Option<Vec<u8>>,
) -> Outcome<IO> {
    let settings = &clients.proxy.settings;
    let mut since = since;
    let mut served = resumed.is_some();
    let mut answered = false;
    let mut grace: Option<Instant> = None;
    let mut held: Option<Box<Bufs>> = resumed.filter(|r| !r.is_empty()).map(|r| {
        let mut b = bufs::take();
        b.read.extend_from_slice(&r);
        b
    });
    // Made once per connection, not per wait: each new one registers with its token (a lock)
    // and each dropped one leaves it, for every request; the timer is moved lazily (`h1::timer`),
    // and set at first where the first wait will want it.
    let kill = clients.kill.cancelled();
    let stop = clients.stop.cancelled();
    let timer = tokio::time::sleep_until(rouse_core::time::deadline(
        since,
        settings.client_header_timeout,
    ));
    tokio::pin!(kill, stop, timer);
    let mut kill = Watch::new(&clients.kill, kill);
    let mut stop = Watch::new(&clients.stop, stop);
    loop {
        let limit = if served {
            settings
                .client_header_timeout
                .min(settings.client_idle_timeout)
        } else {
            settings.client_header_timeout
        };
        let due = rouse_core::time::deadline(since, limit);
        // An idle connection holds no buffer: it waits for readiness first, then reads
        // without waiting; a wake-up with nothing to read gives the buffer back.
        let mut woke_empty = false;
        let mut b = match held.take() {
            Some(b) => b,
            None => loop {
                let by = grace.map_or(due, |g| g.min(due));
                arm(timer.as_mut(), by);
                tokio::select! {
                    biased;
                    () = kill.wait() => return Outcome::Done,
                    r = poll_fn(|cx| io.poll_read_ready(cx)) => {
                        if r.is_err() {
                            return Outcome::Done;
                        }
                    }
                    () = until(timer.as_mut(), by) => return Outcome::Done,
                    () = stop.wait(), if grace.is_none() => {
                        grace = Some(Instant::now() + STOP_GRACE);
                        continue;
                    }
                }
                let mut b = bufs::take();
                match poll_fn(|cx| io.poll_recv(cx, &mut b.read)).now_or_never() {
                    // A stream that keeps saying ready with nothing to read (a TLS state
                    // rustls does not count as wanting to read) must not spin: it waits in
                    // its read, with the buffer, as hyper's connections do.
                    None if woke_empty => break b,
                    None => {
                        woke_empty = true;
                        bufs::give(b);
                    }
                    Some(Ok(0) | Err(_)) => return done(b),
                    Some(Ok(_)) => break b,
                }
            },
        };
        // The head, whole.
        loop {
            if !b.read.is_empty() {
                let Bufs { read, head, .. } = &mut *b;
                match head.parse(read, &settings.head) {
                    Parsed::Ready => break,
                    Parsed::Partial if read.len() < HEAD_MAX => {}
                    Parsed::Partial => {
                        return decline(io, b, (since, answered), "a long head", true);
                    }
                    Parsed::Decline(why) => {
                        let once = why != request::UPGRADE;
                        return decline(io, b, (since, answered), why, once);
                    }
                    Parsed::Refuse(why) => {
                        return refuse(clients, io, b, peer, why, timer.as_mut()).await;
                    }
                }
            }
            b.read.reserve(4096);
            let by = grace.map_or(due, |g| g.min(due));
            arm(timer.as_mut(), by);
            let got = tokio::select! {
                biased;
                () = kill.wait() => return Outcome::Done,
                r = poll_fn(|cx| io.poll_recv(cx, &mut b.read)) => r,
                () = until(timer.as_mut(), by) => {
                    tracing::debug!(client = %peer, "no request in time; closing the connection");
                    return done(b);
                }
            };
            match got {
                Ok(0) | Err(_) => return done(b),
                Ok(_) => {}
            }
        }
        let stopping = grace.is_some() || clients.stop.fired();
        let step = tokio::select! {
            biased;
            () = kill.wait() => return Outcome::Done,
            // Boxed: an exchange's state (holding, retries, the body copy) is needed only
            // while one is in progress, not by every idle connection.
            step = Box::pin(request(clients, &mut io, &mut b, peer.ip(), https, stopping, timer.as_mut())) => step,
        };
        match step {
            Step::Decline { once } => {
                return decline(io, b, (since, answered), "the request's route", once);
            }
            Step::Close => {
                let _ = poll_fn(|cx| io.poll_finish(cx)).await;
                return done(b);
            }
            Step::KeepAlive => {}
        }
        since = Instant::now();
        (served, answered) = (true, true);
        if b.read.is_empty() {
            bufs::give(b);
        } else {
            // Pipelined: the next request is already here.
            held = Some(b);
        }
    }
}

/// The connection ends: its buffers go back for the next one (a client that connects for
/// one request would otherwise have each take new ones and grow them again).
fn done<IO>(b: Box<Bufs>) -> Outcome<IO> {
    bufs::give(b);
    Outcome::Done
}

fn decline<IO>(
    io: IO,
    mut b: Box<Bufs>,
    (since, answered): (Instant, bool),
    why: &str,
    once: bool,
) -> Outcome<IO> {
    tracing::trace!(why, once, "the fast path hands a request to hyper");
    let read = std::mem::take(&mut b.read);
    bufs::give(b);
    Outcome::Decline {
        io,
        read,
        since,
        once,
        answered,
    }
}

/// Answers a head the fast path refuses (see `request.rs`) with 400, as rouse's own answers
/// are made and written, logs it (its request line) as the answers made before any route
/// are, and closes: where the next request would begin is unknowable.
async fn refuse<IO: ClientStream>(
    clients: &Clients,
    mut io: IO,
    mut b: Box<Bufs>,
    peer: SocketAddr,
    why: &str,
    timer: Pin<&mut tokio::time::Sleep>,
) -> Outcome<IO> {
    tracing::debug!(client = %peer, why, "request head refused: 400");
    let proxy = &clients.proxy;
    {
        let resp = crate::answer::error(
            http::StatusCode::BAD_REQUEST,
            "bad-request",
            format!("the request head is refused: {why}"),
        );
        proxy.refused_head(&b.head, &b.read, peer, Instant::now(), &resp);
        b.out.clear();
        let conn = ClientConn {
            close: true,
            http10: b.head.http10,
        };
        serialize(&resp, false, conn, &mut b.out);
    }
    let send = proxy.settings.send_timeout;
    if copy::write_all(&mut io, &b.out, send, timer).await.is_ok() {
        let _ = poll_fn(|cx| io.poll_finish(cx)).await;
    }
    bufs::give(b);
    Outcome::Done
}

/// The request whose head is parsed in `b`: route, body, server, answer.
async fn request<IO: ClientStream>(
    clients: &Clients,
    io: &mut IO,
    b: &mut Bufs,
    client: IpAddr,
    https: bool,
    stopping: bool,
    mut timer: Pin<&mut tokio::time::Sleep>,
) -> Step {
    let proxy: &Arc<Proxy> = &clients.proxy;
    let settings = &proxy.settings;
    let started = Instant::now();
    let Bufs {
        read,
        head,
        out,
        up: rbuf,
        up_fields: fields,
    } = b;
    let routes = proxy.routes.load_full();
    let up_at = {
        let path = head.path(read);
        if head.method(read) == b"GET" && proxy.challenges.answer(path).is_some() {
            return Step::Decline { once: true };
        }
        match routes.router.route(host_of(head.host(read)), path) {
            Some(at) => at,
            None => return Step::Decline { once: true },
        }
    };
    let up = &routes.upstreams[up_at];
    let limits = Limits::of(&up.state.config, &settings.temp_dir);
    let length = head.content_length;
    if up.state.config.protocol != Protocol::Http1 {
        return Step::Decline { once: false };
    }
    if length > 0
        && (!limits.request_buffering
            || length > BODY_MAX.min(limits.request_buffer_size as u64)
            || length > limits.max_request_body)
    {
        return Step::Decline { once: true };
    }
    let mut conn = ClientConn {
        close: head.close || stopping,
        http10: head.http10,
    };
    let is_head = head.is_head;
    let end = head.len + length as usize;
    // Ready for a server when its body is in: at once, unless more had to be read.
    let mut arrived = started;
    while read.len() < end {
        read.reserve(end - read.len());
        let limit = settings.client_body_timeout;
        let got = copy::read_within(io, read, limit, timer.as_mut()).await;
        match got {
            Some(Ok(0) | Err(_)) => return Step::Close,
            Some(Ok(_)) => arrived = Instant::now(),
            None => {
                body_timed_out(
                    proxy, &routes, up, head, read, client, started, is_head, out,
                );
                let _ = copy::write_all(io, out, settings.send_timeout, timer.as_mut()).await;
                return Step::Close;
            }
        }
    }
    let path = head.path(read);
    out.clear();
    let id = rewrite::upstream_head_with_id(head, read, client, https, out);
    out.extend_from_slice(&read[head.len..end]);
    let waiter = Waiter {
        path,
        browser: head.browser,
        arrived,
        held_us: AtomicU64::new(0),
    };
    let mut moved = None;
    let done = || Done {
        started,
        status: 0,
        client,
        held_us: waiter.held_us.load(Ordering::Relaxed),
        arrived: waiter.arrived,
        sent: None,
        request_id: id.as_bytes(),
        seen: Seen::H1 { head, buf: read },
    };
    let t = Timeouts {
        read: settings.read_timeout,
        send: settings.send_timeout,
    };
    // Taken apart where it is made, the refusal answered by a call: a value matched in a
    // local of its own would keep its room (368 bytes, with rouse's answer) in the request's
    // future through every later await.
    let Some(mut answering) = (match exchange::send(
        proxy,
        &routes,
        up_at,
        out,
        is_head,
        &waiter,
        rbuf,
        fields,
        &mut moved,
        timer.as_mut(),
    )
    .await
    {
        Ok(a) => Some(a),
        Err((resp, server)) => {
            let up = moved_or(&moved, up);
            own_answer(
                proxy,
                &routes,
                up,
                server.as_ref(),
                done(),
                resp,
                is_head,
                conn,
                out,
            );
            None
        }
    }) else {
        let after = copy::write_all(io, out, t.send, timer.as_mut()).await;
        return after_answer(after, conn, read, end);
    };
    let up = moved_or(&moved, up);
    let mut done = done();
    // Interim answers (103 Early Hints, 100) go on; the final one follows on the same
    // connection. A 101 was never asked for (Upgrade is declined).
    while (100..200).contains(&answering.info.status) {
        let server = Arc::clone(answering.guard.server());
        let next = if answering.info.status == 101 {
            Err(HeadError::Malformed(
                "101 Switching Protocols without Upgrade".into(),
            ))
        } else {
            // RFC 9110 §15.2: never to an HTTP/1.0 client.
            if !conn.http10 {
                out.clear();
                response::client_head(rbuf, &answering.info, fields, conn, out);
                if copy::write_all(io, out, t.send, timer.as_mut())
                    .await
                    .is_err()
                {
                    return Step::Close;
                }
            }
            rbuf.drain(..answering.info.len);
            let deadline = rouse_core::time::deadline(Instant::now(), t.read);
            // Boxed: interim answers are rare, and the request's future is kept small.
            Box::pin(exchange::read_head(
                &mut answering.stream,
                rbuf,
                fields,
                is_head,
                timer.as_mut(),
                deadline,
            ))
            .await
        };
        match next {
            Ok(info) => answering.info = info,
            Err(e) => {
                let resp = crate::answer::server_failed(
                    server.address(),
                    up.state.name(),
                    e.after_interim(),
                );
                own_answer(
                    proxy,
                    &routes,
                    up,
                    Some(&server),
                    done,
                    resp,
                    is_head,
                    conn,
                    out,
                );
                drop(answering);
                let after = copy::write_all(io, out, t.send, timer.as_mut()).await;
                return after_answer(after, conn, read, end);
            }
        }
    }
    let info = answering.info.clone();
    done.status = info.status;
    // The instant the head came in: the request's duration, and when the server's
    // connection went idle if its body came with the head.
    let head_in = Instant::now();
    proxy.count(
        &routes.table,
        up,
        Some(answering.guard.server()),
        &done,
        head_in,
    );
    // The log's line waits for the body's end (its bytes and total time); the upstream time
    // is to this head. The server is held for it only then: an `Arc` clone and its drop
    // are two locked operations a request.
    let logged = proxy.logs(done.status).then(|| {
        (
            crate::forward::upstream_us(&done),
            Arc::clone(answering.guard.server()),
        )
    });
    out.clear();
    conn = conn.after(info.framing);
    response::client_head(rbuf, &info, fields, conn, out);
    let mut dec = if conn.http10 {
        // The data alone, read to the close (`ClientConn::after`); trailers have no place.
        Decoder::plain(info.framing)
    } else {
        Decoder::new(info.framing, head.trailers)
    };
    let upstream = Upstream {
        stream: answering.stream,
        pool: answering.pool,
        guard: answering.guard,
    };
    let used = match dec.decode(&rbuf[info.len..], out) {
        Ok(used) => used,
        Err(e) => {
            // Nothing went to the client yet: say what happened.
            let server = Arc::clone(upstream.guard.server());
            upstream.release(false);
            let logged = logged.map(|(us, _)| us);
            malformed_body(
                proxy, &routes, up, &server, &mut done, logged, &e, is_head, conn, out,
            );
            let after = copy::write_all(io, out, t.send, timer.as_mut()).await;
            return after_answer(after, conn, read, end);
        }
    };
    let reuse = !info.close;
    let written = if dec.is_done() {
        upstream.release_idle_since((reuse && info.len + used == rbuf.len()).then_some(head_in));
        copy::write_all(io, out, t.send, timer.as_mut()).await
    } else {
        rbuf.clear();
        let limits = Limits::of(&up.state.config, &settings.temp_dir);
        let spool = limits.response_buffering.then(|| {
            let file = limits
                .max_response_buffer
                .saturating_sub(limits.response_buffer_size as u64);
            Spool::new(limits.response_buffer_size, file, limits.temp_dir)
        });
        // Boxed: only a body that did not come whole with the head needs this state.
        Box::pin(copy::body(
            io,
            upstream,
            reuse,
            &mut dec,
            rbuf,
            out,
            spool,
            t,
            &clients.kill,
        ))
        .await
    };
    if let Some((upstream_us, server)) = logged {
        // Of a cut answer, what was read from the server: what went out, give or take what
        // was still on its way.
        let address = Some(server.address());
        proxy.log_line(
            Some(up.state.name()),
            address,
            &done,
            Some(dec.data()),
            Some(upstream_us),
        );
    }
    after_answer(written, conn, read, end)
}

/// The upstream a request went to: its successor's if a reload replaced it while the
/// request was held (`exchange::send`'s `moved`).
fn moved_or<'a>(
    moved: &'a Option<(Arc<Routes>, usize)>,
    up: &'a RouteUpstream,
) -> &'a RouteUpstream {
    match moved {
        Some((r, at)) => &r.upstreams[*at],
        None => up,
    }
}

// rouse's own answers in place of a server's are made, counted and turned into bytes (in
// `out`) by these functions, not in `request`: a `Response` held there would take its room
// (352 bytes) in the request's future through the write that follows, and that future is
// allocated for every request (past 1 KiB, by mimalloc's slower path).

/// The request's body stopped arriving (`client_body_timeout`): 408, then the connection
/// closes.
#[allow(clippy::too_many_arguments)]
#[cold]
fn body_timed_out(
    proxy: &Proxy,
    routes: &Routes,
    up: &RouteUpstream,
    head: &Head,
    read: &[u8],
    client: IpAddr,
    started: Instant,
    is_head: bool,
    out: &mut Vec<u8>,
) {
    let timeout = proxy.settings.client_body_timeout;
    let resp = crate::answer::error(
        http::StatusCode::REQUEST_TIMEOUT,
        "client-body-timeout",
        format!("the request body stopped arriving for {timeout:?} (client_body_timeout)"),
    );
    let made = request_id::generate();
    let done = Done {
        started,
        status: 408,
        client,
        held_us: 0,
        arrived: started,
        sent: None,
        request_id: rewrite::client_request_id(head, read).unwrap_or(made.as_bytes()),
        seen: Seen::H1 { head, buf: read },
    };
    let conn = ClientConn {
        close: true,
        http10: head.http10,
    };
    own_answer(proxy, routes, up, None, done, resp, is_head, conn, out);
}

/// rouse's answer for the request `done` describes (the server it concerns, if any):
/// counted, accounted and serialized into `out`.
#[allow(clippy::too_many_arguments)]
#[cold]
fn own_answer(
    proxy: &Proxy,
    routes: &Routes,
    up: &RouteUpstream,
    server: Option<&Arc<Server>>,
    mut done: Done<'_>,
    resp: Response<ProxyBody>,
    is_head: bool,
    conn: ClientConn,
    out: &mut Vec<u8>,
) {
    done.status = resp.status().as_u16();
    done.sent = http_body::Body::size_hint(resp.body()).exact();
    crate::answer::count_error(&routes.table.metrics, up.state.name(), &resp);
    proxy.account(&routes.table, up, server, done);
    out.clear();
    serialize(&resp, is_head, conn, out);
}

/// The server's body is malformed before any of it went out: 502 in its place (the request
/// was counted with the server's head; the access log's line, if any, says 502).
#[allow(clippy::too_many_arguments)]
#[cold]
fn malformed_body(
    proxy: &Proxy,
    routes: &Routes,
    up: &RouteUpstream,
    server: &Server,
    done: &mut Done<'_>,
    logged: Option<u64>,
    e: &dyn std::fmt::Display,
    is_head: bool,
    conn: ClientConn,
    out: &mut Vec<u8>,
) {
    let msg = format!(
        "server {} of upstream {:?} sent a malformed body: {e}",
        server.address(),
        up.state.name()
    );
    tracing::warn!("{msg}");
    let resp = crate::answer::error(http::StatusCode::BAD_GATEWAY, "server-error", msg);
    crate::answer::count_error(&routes.table.metrics, up.state.name(), &resp);
    if let Some(upstream_us) = logged {
        done.status = 502;
        let sent = http_body::Body::size_hint(resp.body()).exact();
        let address = Some(server.address());
        proxy.log_line(
            Some(up.state.name()),
            address,
            done,
            sent,
            Some(upstream_us),
        );
    }
    out.clear();
    serialize(&resp, is_head, conn, out);
}

/// The connection after an answer: the request's bytes dropped from the read buffer, closed
/// if the answer could not go out or the client is to leave.
fn after_answer(
    written: Result<(), Cut>,
    conn: ClientConn,
    read: &mut Vec<u8>,
    end: usize,
) -> Step {
    read.drain(..end);
    match written {
        Ok(()) if !conn.close => Step::KeepAlive,
        _ => Step::Close,
    }
}

/// An answer of rouse's own, as HTTP/1.1 bytes, for a client `conn` describes.
pub(crate) fn serialize(
    resp: &Response<ProxyBody>,
    is_head: bool,
    conn: ClientConn,
    out: &mut Vec<u8>,
) {
    use std::io::Write;
    let status = resp.status();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in resp.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let body: &[u8] = match resp.body() {
        ProxyBody::Local { data: Some(d) } => d,
        _ => &[],
    };
    let _ = write!(out, "content-length: {}\r\ndate: ", body.len());
    super::date::append(out);
    out.extend_from_slice(b"\r\n");
    conn.write_connection(out);
    out.extend_from_slice(b"\r\n");
    if !is_head {
        out.extend_from_slice(body);
    }
}

/// The host a Host value routes by: lower-cased, without its port (`headers::host_of`; the
/// fast path has no IPv6 literal, see `request::valid_host`), with no copy when it already is.
fn host_of(authority: &[u8]) -> Cow<'_, [u8]> {
    let host = match authority.iter().rposition(|&b| b == b':') {
        Some(i) => &authority[..i],
        None => authority,
    };
    if host.iter().any(u8::is_ascii_uppercase) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `headers::host_of` for every Host the fast path takes (names and IPv4 addresses,
    /// with or without a port): what a request routes by is the same on either path.
    #[test]
    fn the_host_routed_by_is_the_one_hyper_s_path_routes_by() {
        for authority in [
            "app.test",
            "App.Test:8080",
            "127.0.0.1:80",
            "EXAMPLE.com",
            "a-b.c:1",
        ] {
            let fast = host_of(authority.as_bytes());
            assert_eq!(
                &*fast,
                crate::headers::host_of(authority).as_bytes(),
                "{authority}"
            );
            let copied = matches!(fast, Cow::Owned(_));
            assert_eq!(
                copied,
                authority.bytes().any(|b| b.is_ascii_uppercase()),
                "{authority}"
            );
        }
    }
}
