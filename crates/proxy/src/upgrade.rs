//! Upgraded connections (WebSocket): after both sides agreed on 101, bytes are copied both ways
//! until either closes. The server stays counted as in flight meanwhile, so it is never idle-
//! stopped under an open socket.

use std::sync::Arc;
use std::time::Duration;

use http::Response;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::{Completion, ProxyBody};
use crate::headers;
use crate::proxy::Proxy;

/// Both upgrades normally complete at once; this only bounds a peer that vanishes mid-switch.
const UPGRADE_WAIT: Duration = Duration::from_secs(30);

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
            let mut client = TokioIo::new(client);
            let mut server = TokioIo::new(server);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
                tracing::debug!(error = %e, "upgraded connection ended");
            }
            drop(guard);
        });
        let (mut parts, _) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, true);
        Response::from_parts(parts, ProxyBody::empty())
    }
}
