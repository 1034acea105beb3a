//! Upgraded connections (WebSocket): after both sides agreed on 101, bytes are copied both ways
//! until either closes. The server stays counted as in flight meanwhile, so it is never idle-
//! stopped under an open socket.
//!
//! When one side closes, the other gets a short grace to finish what it was sending, then
//! the connection ends: a client whose server went away (stopped, crashed) learns it at once
//! instead of holding a half-open socket and an in-flight slot until it next writes.
//!
//! With `upgrade_idle_timeout`, a connection over which no byte went either way for that long
//! is closed (nginx closes a WebSocket after `proxy_read_timeout` of silence from the server;
//! rouse counts both directions, so a client that only sends keeps its socket). Off by
//! default: a quiet WebSocket is often a healthy one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::body::{Completion, ProxyBody};
use crate::headers;
use crate::proxy::Proxy;
use rouse_core::time::deadline;

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
        let idle = self.settings.upgrade_idle_timeout;
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
            splice(TokioIo::new(client), TokioIo::new(server), idle).await;
            drop(guard);
        });
        let (mut parts, _) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, true);
        Response::from_parts(parts, ProxyBody::empty())
    }
}

/// Copies both ways until one side closes (passing its close on), then lets the other finish
/// within `CLOSE_GRACE`; or until nothing moved either way for `idle`.
async fn splice<C, S>(client: C, server: S, idle: Option<Duration>)
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let last = LastByte::new();
    let (client_read, mut client_write) = tokio::io::split(client);
    let (server_read, mut server_write) = tokio::io::split(server);
    let mut client_read = Touch {
        inner: client_read,
        last: &last,
    };
    let mut server_read = Touch {
        inner: server_read,
        last: &last,
    };
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
        () = last.quiet_for(idle) => {
            tracing::debug!(?idle, "upgraded connection idle; closing it (upgrade_idle_timeout)");
            return;
        }
    };
    if let Err(e) = first {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
    if rest.is_err() {
        tracing::debug!("upgraded connection: one side closed, the other did not follow in time");
    }
}

/// When a byte last came from either side, as nanoseconds since `base`: both directions write
/// it from the one task, the atomic only keeps the splice future `Send`.
struct LastByte {
    base: Instant,
    nanos: AtomicU64,
}

impl LastByte {
    fn new() -> LastByte {
        LastByte {
            base: Instant::now(),
            nanos: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let since = self.base.elapsed().as_nanos();
        self.nanos
            .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn at(&self) -> Instant {
        let since = Duration::from_nanos(self.nanos.load(Ordering::Relaxed));
        deadline(self.base, since)
    }

    /// Resolves once nothing came for `limit`; never when `limit` is `None`.
    async fn quiet_for(&self, limit: Option<Duration>) {
        let Some(limit) = limit else {
            return std::future::pending().await;
        };
        loop {
            let due = deadline(self.at(), limit);
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// A reader that records when it last gave bytes.
struct Touch<'a, R> {
    inner: R,
    last: &'a LastByte,
}

impl<R: AsyncRead + Unpin> AsyncRead for Touch<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.touch();
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, duplex};

    /// Traffic either way keeps a spliced connection open; silence both ways past the limit
    /// closes both sides.
    #[tokio::test(start_paused = true)]
    async fn a_splice_quiet_both_ways_for_the_idle_limit_is_closed() {
        let (client, mut client_peer) = duplex(64);
        let (server, mut server_peer) = duplex(64);
        let started = Instant::now();
        let spliced = tokio::spawn(splice(client, server, Some(Duration::from_secs(10))));

        tokio::time::sleep(Duration::from_secs(8)).await;
        client_peer.write_all(b"up").await.unwrap();
        let mut two = [0u8; 2];
        server_peer.read_exact(&mut two).await.unwrap();
        tokio::time::sleep(Duration::from_secs(8)).await;
        server_peer.write_all(b"dn").await.unwrap();
        client_peer.read_exact(&mut two).await.unwrap();
        let last = Instant::now();

        spliced.await.unwrap();
        assert_eq!(Instant::now() - last, Duration::from_secs(10));
        assert!(Instant::now() - started >= Duration::from_secs(26));
        let mut rest = Vec::new();
        assert_eq!(client_peer.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(server_peer.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_limit_a_quiet_splice_stays_open() {
        let (client, _client_peer) = duplex(64);
        let (server, _server_peer) = duplex(64);
        let spliced = tokio::spawn(splice(client, server, None));
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        assert!(!spliced.is_finished());
        spliced.abort();
    }
}
