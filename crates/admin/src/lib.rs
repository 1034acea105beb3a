//! rouse's admin API, on `[admin] listen` (loopback by default):
//!
//! | method, path | answer |
//! |---|---|
//! | `GET /` | the HTML dashboard ([`dashboard`]) |
//! | `GET /status` | JSON snapshot of the live table, recent lifecycle events and the cluster ([`routes::status`]) |
//! | `GET /history` | the last 15 minutes per upstream, for the dashboard's charts ([`routes::history`]) |
//! | `GET /supervisors` | each supervisor: reachable or not, its programs' pids and uptimes ([`routes::supervisors`]) |
//! | `GET /metrics` | Prometheus text, or OpenMetrics when asked for ([`routes::metrics`]) |
//! | `POST /upstreams/{name}/start` · `/stop` | manual start of the next / stop of the last server |
//! | `POST /upstreams/{name}/servers/{index}/start` · `/stop` | manual start / stop of one server |
//! | `POST /reload` | re-read the config file, as SIGHUP, and answer how it went ([`routes::reload`]) |
//! | `POST /upgrade` | a new rouse process takes over, as SIGUSR2 ([`routes::upgrade`]) |
//!
//! Every request must name the admin API in `Host` (its address, a loopback name or an entry
//! of `[admin] hosts`), against DNS rebinding ([`host`]). POSTs need
//! `Authorization: Bearer <token>` when a token is configured, and are refused when a browser
//! sends them from another origin ([`auth`]). Every request is bounded in time, and
//! so is the whole server's shutdown.
#![forbid(unsafe_code)]

pub mod auth;
pub mod dashboard;
pub mod history;
pub mod host;
pub mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rouse_control::ControlHandle;
use rouse_state::Table;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use routes::Answer;
pub use routes::cluster::ClusterStatus;
pub use routes::reload::{ReloadHook, ReloadRefused};
pub use routes::status::{Event, ServerStatus, Status, UpstreamStatus};
pub use routes::upgrade::{UpgradeHook, UpgradeRefused};

/// What the admin API reads and steers.
#[derive(Clone)]
pub struct AdminState {
    /// The current table generation (swapped on reload).
    pub table: Arc<ArcSwap<Table>>,
    pub control: ControlHandle,
    /// When set, every POST needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// `[admin] hosts`: `Host` names accepted besides the address and loopback names.
    pub hosts: Vec<String>,
    /// `POST /reload`; without it the endpoint answers 503.
    pub reload: Option<routes::reload::ReloadHook>,
    /// `POST /upgrade`; without it the endpoint answers 503.
    pub upgrade: Option<routes::upgrade::UpgradeHook>,
    /// The samples `GET /history` serves; [`serve`] keeps taking them.
    pub history: Arc<history::History>,
    /// `[cluster]`: the etcd shell's snapshot, for `/status`, `/metrics` and the dashboard;
    /// None without it.
    pub cluster: Option<rouse_cluster::ClusterHandle>,
}

/// Longest any one request may take (a manual command waits up to 10 s for the control plane).
pub const HANDLER_TIMEOUT: Duration = Duration::from_secs(15);
/// A client must send a request's head within this; also how long an idle keep-alive
/// connection is kept.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// At shutdown, requests in progress get this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Connections served at once; further ones are closed at once.
const MAX_CONNECTIONS: usize = 256;

/// The admin API's routes, for [`serve`] and for tests that drive it without a socket.
pub fn router(state: AdminState) -> Router {
    let commands = Router::new()
        .route(
            "/upstreams/{name}/start",
            post(routes::manual::upstream_start),
        )
        .route(
            "/upstreams/{name}/stop",
            post(routes::manual::upstream_stop),
        )
        .route(
            "/upstreams/{name}/servers/{index}/start",
            post(routes::manual::server_start),
        )
        .route(
            "/upstreams/{name}/servers/{index}/stop",
            post(routes::manual::server_stop),
        )
        .route("/reload", post(routes::reload::handler))
        .route("/upgrade", post(routes::upgrade::handler))
        // route_layer: only matched routes ask for the token, so unknown paths are still 404
        // and wrong methods 405.
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require));
    Router::new()
        .route("/", get(dashboard::page))
        .route("/status", get(routes::status::handler))
        .route("/history", get(routes::history::handler))
        .route("/supervisors", get(routes::supervisors::handler))
        .route("/metrics", get(routes::metrics::handler))
        .merge(commands)
        .fallback(routes::not_found)
        // Around every route and the fallback: a misdirected request learns nothing, not even
        // a 404 or a 401.
        .layer(middleware::from_fn_with_state(state.clone(), host::require))
        .layer(middleware::from_fn(bounded))
        .with_state(state)
}

/// Answers 503 for a request that takes longer than [`HANDLER_TIMEOUT`].
async fn bounded(req: Request, next: Next) -> Response {
    match tokio::time::timeout(HANDLER_TIMEOUT, next.run(req)).await {
        Ok(response) => response,
        Err(_) => routes::answer(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the admin API did not answer within {HANDLER_TIMEOUT:?}"),
        ),
    }
}

/// Ends a task when its owner goes, however that happens.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves the admin API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Samples only while the admin API serves: nothing else reads them.
    let _sampler = AbortOnDrop(tokio::spawn(
        Arc::clone(&state.history).run(Arc::clone(&state.table)),
    ));
    let service = TowerToHyperService::new(router(state));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin API listening");
    }
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "admin: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(client = %peer, "admin: too many connections; closing this one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok().map(host::LocalAddr);
        let service = service.clone();
        let service = service_fn(move |mut req: http::Request<Incoming>| {
            if let Some(local) = local {
                req.extensions_mut().insert(local);
            }
            service.call(req)
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, client = %peer, "admin connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("admin requests still open after {SHUTDOWN_GRACE:?}; leaving them");
    }
}
