//! The accept loop, connections, and shutdown.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::listener::Listener;
use super::routes::{self, Conn};
use super::stats::InFlight;
use super::{Backend, GRACE_PERIOD, ServeOutcome, ws};

/// What the tasks of one running server share.
#[derive(Debug)]
pub(crate) struct ServerCtx {
    graceful: CancellationToken,
    immediate: CancellationToken,
    // Connections and upgraded sockets, so shutdown can wait for (or cut) all of them.
    tracker: TaskTracker,
}

impl ServerCtx {
    pub(crate) fn spawn_websocket(&self, on_upgrade: OnUpgrade, in_flight: InFlight) {
        self.tracker.spawn(ws::run(
            on_upgrade,
            self.graceful.clone(),
            self.immediate.clone(),
            in_flight,
        ));
    }
}

pub(crate) async fn serve(
    backend: Backend,
    listener: Listener,
    tls: Option<TlsAcceptor>,
    graceful: CancellationToken,
    immediate: CancellationToken,
) -> ServeOutcome {
    // Children, so the request limit can stop this server without cancelling the caller's
    // tokens, while the caller's still reach every task.
    let ctx = Arc::new(ServerCtx {
        graceful: graceful.child_token(),
        immediate: immediate.child_token(),
        tracker: TaskTracker::new(),
    });
    let limit_reached = backend.shared.limit_reached.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Past hyper's default of 100: a request at rouse's own `max_headers` (100) arrives with
    // the four fields rouse adds (X-Forwarded-For, -Proto, -Host, X-Request-Id).
    builder.http1().max_headers(128);

    let outcome = loop {
        tokio::select! {
            biased;
            () = immediate.cancelled() => break ServeOutcome::Shutdown,
            () = graceful.cancelled() => break ServeOutcome::Shutdown,
            () = limit_reached.cancelled() => break ServeOutcome::RequestLimitReached,
            accepted = accept(&listener) => match accepted {
                Ok(Accepted::Tcp(stream)) => {
                    backend.shared.counters.connection_accepted();
                    // Small request/response exchanges dominate the tests; don't let Nagle
                    // add latency.
                    let _ = stream.set_nodelay(true);
                    match &tls {
                        None => spawn_connection(&backend, &ctx, &builder, stream),
                        Some(tls) => spawn_tls(&backend, &ctx, &builder, tls, stream),
                    }
                }
                Ok(Accepted::Unix(stream)) => {
                    backend.shared.counters.connection_accepted();
                    spawn_connection(&backend, &ctx, &builder, stream);
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning until a descriptor frees up.
                    eprintln!("rouse-test-backend: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    };

    // Refuse new connections at once, as a stopping server would. Closing our descriptor is
    // not enough: a process that another test is spawning right now holds a copy of it
    // between fork and exec, and the kernel keeps accepting until that copy is gone too.
    // Shutting the socket down stops it listening for every holder (Linux; elsewhere this
    // fails harmlessly and the close below is all there is).
    match &listener {
        Listener::Tcp(l) => {
            let _ = socket2::SockRef::from(l).shutdown(std::net::Shutdown::Both);
        }
        Listener::Unix(l) => {
            let _ = socket2::SockRef::from(l).shutdown(std::net::Shutdown::Both);
        }
    }
    drop(listener);
    ctx.graceful.cancel();
    ctx.tracker.close();
    if tokio::time::timeout(GRACE_PERIOD, ctx.tracker.wait())
        .await
        .is_err()
    {
        ctx.immediate.cancel();
        ctx.tracker.wait().await;
    }
    outcome
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        Listener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

/// The TLS handshake in the connection's own task, so a slow or failing client holds up no
/// one else; a failed handshake just closes the connection (the client saw why).
fn spawn_tls(
    backend: &Backend,
    ctx: &Arc<ServerCtx>,
    builder: &auto::Builder<TokioExecutor>,
    tls: &TlsAcceptor,
    stream: tokio::net::TcpStream,
) {
    let (backend, ctx2, builder, tls) = (
        backend.clone(),
        Arc::clone(ctx),
        builder.clone(),
        tls.clone(),
    );
    ctx.tracker.spawn(async move {
        let handshake = tls.accept(stream);
        let accepted = tokio::select! {
            () = ctx2.immediate.cancelled() => return,
            r = tokio::time::timeout(GRACE_PERIOD, handshake) => r,
        };
        match accepted {
            Ok(Ok(stream)) => spawn_connection(&backend, &ctx2, &builder, stream),
            Ok(Err(e)) => eprintln!("rouse-test-backend: TLS handshake failed: {e}"),
            Err(_) => eprintln!("rouse-test-backend: TLS handshake timed out"),
        }
    });
}

fn spawn_connection<S>(
    backend: &Backend,
    ctx: &Arc<ServerCtx>,
    builder: &auto::Builder<TokioExecutor>,
    stream: S,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn_state = Conn::new();
    let service = {
        let backend = backend.clone();
        let ctx = Arc::clone(ctx);
        service_fn(move |req| {
            routes::handle(
                backend.clone(),
                Arc::clone(&ctx),
                Arc::clone(&conn_state),
                req,
            )
        })
    };
    let builder = builder.clone();
    let graceful = ctx.graceful.clone();
    let immediate = ctx.immediate.clone();
    ctx.tracker.spawn(async move {
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(conn);
        // Connection errors are the client's business (resets, half-sent requests).
        tokio::select! {
            biased;
            () = immediate.cancelled() => return,
            _ = conn.as_mut() => return,
            () = graceful.cancelled() => conn.as_mut().graceful_shutdown(),
        }
        tokio::select! {
            biased;
            () = immediate.cancelled() => {}
            _ = conn => {}
        }
    });
}
