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
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::activity::{Activity, Limits, Tracked, Verdict};
use crate::client_io::ClientIo;
use crate::conn_limit::{ConnLimit, Slot};
use crate::proxy::Proxy;
use crate::send_timeout::SendTimeout;

/// What every client connection of one `serve` shares.
pub(crate) struct Clients {
    pub proxy: Arc<Proxy>,
    pub builder: auto::Builder<TokioExecutor>,
    pub limit: ConnLimit,
    pub limits: Limits,
    /// Shutdown began: finish the request in progress, take no more.
    pub stop: CancellationToken,
    /// The shutdown deadline passed: close now.
    pub kill: CancellationToken,
    pub tracker: TaskTracker,
}

impl Clients {
    /// Serves `stream`, accepted on the acceptor's own runtime, in a task of the serving
    /// runtime (`runtime`), tracked for shutdown.
    pub fn spawn(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        stream: std::net::TcpStream,
        peer: SocketAddr,
        slot: Slot,
    ) {
        let clients = Arc::clone(self);
        runtime.spawn(self.tracker.track_future(async move {
            // Registering with this runtime's reactor must happen on it.
            match TcpStream::from_std(stream) {
                Ok(stream) => serve(clients, stream, peer, slot).await,
                Err(e) => {
                    tracing::debug!(error = %e, client = %peer, "cannot register a connection")
                }
            }
        }));
    }
}

async fn serve(clients: Arc<Clients>, stream: TcpStream, peer: SocketAddr, slot: Slot) {
    let _ = stream.set_nodelay(true);
    let activity = Activity::new(Instant::now());
    let settings = &clients.proxy.settings;
    let io = ClientIo::new(
        SendTimeout::new(stream, settings.send_timeout),
        slot,
        Arc::clone(&activity),
    );
    let proxy = Arc::clone(&clients.proxy);
    let requests = Arc::clone(&activity);
    let service = service_fn(move |req| {
        let open = requests.open();
        let proxy = Arc::clone(&proxy);
        async move {
            let resp = proxy.handle(req, peer).await;
            Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, open)))
        }
    });
    let conn = clients
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut asked_to_finish = false;
    // Set at shutdown: until then, an idle HTTP/1 connection is kept for its next request.
    let mut stop_grace: Option<Instant> = None;
    loop {
        if let Some(at) = stop_grace
            && !asked_to_finish
            && (activity.can_finish() || Instant::now() >= at)
        {
            asked_to_finish = true;
            conn.as_mut().graceful_shutdown();
        }
        let wake = match activity.verdict(Instant::now(), clients.limits) {
            Verdict::Busy => None,
            Verdict::WaitUntil(at) => Some(at),
            Verdict::GoAway => {
                tracing::debug!(client = %peer, "idle h2 connection: GOAWAY");
                if !asked_to_finish {
                    asked_to_finish = true;
                    conn.as_mut().graceful_shutdown();
                }
                activity.going_away(Instant::now());
                continue;
            }
            Verdict::Close => {
                tracing::debug!(client = %peer, "no request in time; closing the connection");
                return;
            }
        };
        let wake = match (wake, stop_grace.filter(|_| !asked_to_finish)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, client = %peer, "client connection ended with an error");
                }
                return;
            }
            () = activity.changed() => {}
            () = sleep_until(wake), if wake.is_some() => {}
            // An idle HTTP/1 connection closed at once races the request its client may be
            // sending: one accepted as accepting stopped (shutdown, or `rouse upgrade`
            // handing the listeners over) would be closed unread, its request on the wire
            // answered by a reset; a keep-alive one would fail the client's next request.
            // So the next request within the grace is served, with `Connection: close`.
            () = clients.stop.cancelled(), if !asked_to_finish && stop_grace.is_none() => {
                stop_grace = Some(Instant::now() + STOP_GRACE);
            }
            () = clients.kill.cancelled() => return,
        }
    }
}

/// At shutdown, how long an idle HTTP/1 connection is kept for its next request.
const STOP_GRACE: Duration = Duration::from_secs(1);

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
