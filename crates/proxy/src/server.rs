//! Accepting client connections and serving them until shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;
use crate::send_timeout::SendTimeout;

/// Serves clients on `listeners` until `shutdown` completes, then stops accepting, lets
/// in-flight requests and upgraded connections finish for up to `shutdown_timeout`, and returns.
/// Taking bound listeners (not addresses) lets tests bind port 0 and lets the caller report
/// "port in use" before anything else starts.
pub async fn serve(
    proxy: Arc<Proxy>,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let settings = proxy.settings().clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Also bounds how long an idle keep-alive connection waits for its next request.
        .header_read_timeout(settings.client_idle_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .max_concurrent_streams(512);
    crate::limits::head_limits(&mut builder, &settings);
    let builder = Arc::new(builder);
    let graceful = Arc::new(GracefulShutdown::new());
    let stop = CancellationToken::new();

    let mut accepting = Vec::new();
    for listener in listeners {
        accepting.push(tokio::spawn(accept_loop(
            listener,
            Arc::clone(&proxy),
            Arc::clone(&builder),
            Arc::clone(&graceful),
            stop.clone(),
        )));
    }
    let evictor = tokio::spawn(evict_loop(Arc::clone(&proxy), stop.clone()));

    shutdown.await;
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    stop.cancel();
    for a in accepting {
        let _ = a.await;
    }
    let _ = evictor.await;

    let deadline = tokio::time::Instant::now() + settings.shutdown_timeout;
    let graceful = Arc::try_unwrap(graceful).unwrap_or_default();
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {:?}; closing them",
            settings.shutdown_timeout
        );
    }
    proxy.upgrades.close();
    if tokio::time::timeout_at(deadline, proxy.upgrades.wait())
        .await
        .is_err()
    {
        tracing::warn!("upgraded connections still open at shutdown deadline; closing them");
    }
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Arc<GracefulShutdown>,
    stop: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning; accepted sockets still
                    // get served and will free descriptors.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let proxy_send_timeout = proxy.settings.send_timeout;
        let proxy = Arc::clone(&proxy);
        let service = service_fn(move |req| {
            let proxy = Arc::clone(&proxy);
            async move { Ok::<_, Infallible>(proxy.handle(req, peer).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(
                TokioIo::new(SendTimeout::new(stream, proxy_send_timeout)),
                service,
            )
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, client = %peer, "client connection ended with an error");
            }
        });
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
