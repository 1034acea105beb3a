//! Accepting client connections, and closing at once those past `max_connections`.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::connection::Clients;

/// How long a refused connection waits before the next one is logged: under a flood, one line
/// per connection would bury everything else.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Accepts on `listener` until `clients.stop`; past `max_connections`, closes at once.
pub(crate) async fn accept_loop(listener: TcpListener, clients: Arc<Clients>) {
    let mut last_refusal_logged: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            () = clients.stop.cancelled() => return,
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
        match clients.limit.admit() {
            Some(slot) => clients.spawn(stream, peer, slot),
            None => {
                drop(stream);
                let now = Instant::now();
                if last_refusal_logged.is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_EVERY)
                {
                    last_refusal_logged = Some(now);
                    tracing::warn!(
                        client = %peer,
                        max_connections = clients.proxy.settings.max_connections,
                        "too many client connections; closing new ones \
                         (rouse_connections_refused_total counts them)"
                    );
                }
            }
        }
    }
}
