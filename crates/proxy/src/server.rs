//! Serving clients on the listeners until shutdown, then draining within `shutdown_timeout`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::activity::Limits;
use crate::conn_limit::ConnLimit;
use crate::connection::Clients;
use crate::listen::{Kind, Listener};
use crate::proxy::Proxy;
use crate::signal::Signal;
use crate::workers::Workers;
use rouse_core::time::{cap, deadline};

/// After the shutdown deadline closed what remained, how long their tasks may take to end.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Serves clients on `listeners` until `shutdown` completes, then stops accepting, lets
/// in-flight requests and upgraded connections finish for up to `shutdown_timeout`, closes
/// what is left, and returns. Taking bound listeners (not addresses) lets tests bind port 0
/// and lets the caller report "port in use" before anything else starts. TLS listeners take
/// their certificates from `proxy.certs()`, read at each handshake.
pub async fn serve(
    proxy: Arc<Proxy>,
    listeners: Vec<Listener>,
    shutdown: impl Future<Output = ()>,
) {
    serve_on(proxy, listeners, shutdown, None).await
}

/// [`serve`], with each client connection served on one of `workers`' runtimes (the current
/// runtime without); accepting, eviction and the shutdown's drain stay on the current one.
pub async fn serve_on(
    proxy: Arc<Proxy>,
    listeners: Vec<Listener>,
    shutdown: impl Future<Output = ()>,
    workers: Option<Arc<Workers>>,
) {
    let settings = proxy.settings().clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // `Activity` bounds the wait for a head, from accept; hyper's own timer (30 s unless
        // set) is kept at the same limit, capped because hyper adds it to an instant.
        .header_read_timeout(cap(settings.client_header_timeout))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .max_concurrent_streams(512);
    crate::limits::head_limits(&mut builder, &settings);
    let h1 = builder.clone().http1_only();
    let mut once = hyper::server::conn::http1::Builder::new();
    once.timer(TokioTimer::new())
        .header_read_timeout(cap(settings.client_header_timeout));
    crate::limits::h1_head_limits(&mut once, &settings);
    let h2 = crate::http2::Config::of(&settings);
    let tls = match rouse_tls::server::server_config(Arc::clone(proxy.certs())) {
        Ok(config) => tokio_rustls::TlsAcceptor::from(config),
        Err(e) => {
            // Only a provider without TLS 1.2 or 1.3 gets here; ring has both.
            tracing::error!(error = %e, "cannot build the TLS configuration");
            return;
        }
    };
    let https_port = listeners
        .iter()
        .filter(|l| l.spec.kind == Kind::Tls)
        .find_map(Listener::local_addr)
        .map_or(443, |a| a.port());
    let metrics = Arc::clone(&proxy.routes.load().table.metrics);
    let clients = Arc::new(Clients {
        proxy: Arc::clone(&proxy),
        builder,
        h1,
        once,
        h2,
        tls,
        https_port,
        limit: ConnLimit::new(settings.max_connections, metrics),
        limits: Limits {
            header: settings.client_header_timeout,
            idle: settings.client_idle_timeout,
        },
        stop: Signal::default(),
        kill: Signal::default(),
        tracker: TaskTracker::new(),
    });

    let accepting = crate::accept::spawn_acceptor(listeners, Arc::clone(&clients), workers);
    let evictor = tokio::spawn(evict_loop(Arc::clone(&proxy), clients.stop.token()));

    shutdown.await;
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    clients.stop.fire();
    let _ = accepting.await;
    let _ = evictor.await;

    let deadline = deadline(Instant::now(), settings.shutdown_timeout);
    clients.tracker.close();
    if tokio::time::timeout_at(deadline, clients.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {:?}; closing them",
            settings.shutdown_timeout
        );
        clients.kill.fire();
        let _ = tokio::time::timeout(CLOSE_WAIT, clients.tracker.wait()).await;
    }
    proxy.upgrades.close();
    if tokio::time::timeout_at(deadline, proxy.upgrades.wait())
        .await
        .is_err()
    {
        tracing::warn!("upgraded connections still open at shutdown deadline; closing them");
    }
}

async fn evict_loop(proxy: Arc<Proxy>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => proxy.evict_idle(),
        }
    }
}
