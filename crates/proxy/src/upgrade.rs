//! Upgraded connections (WebSocket): after both sides agreed on 101, bytes are copied both ways
//! until either closes. The server stays counted as in flight meanwhile, so it is never idle-
//! stopped under an open socket.
//!
//! When one side closes, the other gets a short grace to finish what it was sending, then
//! the connection ends: a client whose server went away (stopped, crashed) learns it at once
//! instead of holding a half-open socket and an in-flight slot until it next writes.

use std::sync::Arc;
use std::time::Duration;

use http::Response;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::body::{Completion, ProxyBody};
use crate::headers;
use crate::proxy::Proxy;

/// Both upgrades normally complete at once; this only bounds a peer that vanishes mid-switch.
const UPGRADE_WAIT: Duration = Duration::from_secs(30);
/// After one side closed, how long the other may go on sending (a WebSocket close reply).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl Proxy {
    pub(crate) fn splice_upgrade(
        self: &Arc<Self>,
        mut resp: Response<Incoming>,
        done: Completion,
        client: OnUpgrade,
    ) -> Response<ProxyBody> {
        let server = hyper::upgrade::on(&mut resp);
        let Completion { mut guard, .. } = done;
        guard.mark_upgraded();
        self.upgrades.spawn(async move {
            let both = async { tokio::try_join!(client, server) };
            let (client, server) = match tokio::time::timeout(UPGRADE_WAIT, both).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "upgrade failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("upgrade did not complete in time");
                    return;
                }
            };
            splice(TokioIo::new(client), TokioIo::new(server)).await;
            drop(guard);
        });
        let (mut parts, _) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, true);
        Response::from_parts(parts, ProxyBody::empty())
    }
}

/// Copies both ways until one side closes (passing its close on), then lets the other finish
/// within `CLOSE_GRACE`.
async fn splice<C, S>(client: C, server: S)
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let up = async {
        let copied = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
        copied
    };
    let down = async {
        let copied = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
        copied
    };
    tokio::pin!(up, down);
    let (first, rest) = tokio::select! {
        r = &mut up => (r, tokio::time::timeout(CLOSE_GRACE, &mut down).await),
        r = &mut down => (r, tokio::time::timeout(CLOSE_GRACE, &mut up).await),
    };
    if let Err(e) = first {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
    if rest.is_err() {
        tracing::debug!("upgraded connection: one side closed, the other did not follow in time");
    }
}
