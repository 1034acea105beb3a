//! rouse's admin API (skeleton; being written).
#![forbid(unsafe_code)]

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rouse_control::ControlHandle;
use rouse_state::Table;
use tokio::net::TcpListener;

/// What the admin API reads and steers.
#[derive(Clone)]
pub struct AdminState {
    /// The current table generation (swapped on reload).
    pub table: Arc<ArcSwap<Table>>,
    pub control: ControlHandle,
    /// When set, every POST needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// Serves the admin API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let _ = (listener, state);
    shutdown.await;
}
