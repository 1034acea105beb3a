//! The TLS handshake of an accepted connection, on the serving runtime, bounded by
//! `client_header_timeout` from accept: a client that opens a connection and sends nothing
//! (or a ClientHello byte by byte) is closed as a plain one would be before its head.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use crate::connection::Clients;
use rouse_core::time::deadline;

/// The established stream and what ALPN chose: `Some(true)` h2, `Some(false)` http/1.1,
/// `None` when the client offered no ALPN (its first bytes then tell). `None` overall when
/// the handshake failed or took too long (logged at debug: scanners and clients that do not
/// trust the certificate do this all day).
pub(crate) async fn handshake<IO>(
    clients: &Clients,
    stream: IO,
    peer: SocketAddr,
    accepted: Instant,
) -> Option<(TlsStream<IO>, Option<bool>)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let limit: Duration = clients.proxy.settings.client_header_timeout;
    let accepting = clients.tls.accept(stream);
    let done = tokio::select! {
        done = tokio::time::timeout_at(deadline(accepted, limit), accepting) => done,
        () = clients.stop.cancelled() => return None,
    };
    match done {
        Ok(Ok(stream)) => {
            let h2 = stream.get_ref().1.alpn_protocol().map(|p| p == b"h2");
            Some((stream, h2))
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, client = %peer, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(client = %peer, "no TLS handshake in time; closing the connection");
            None
        }
    }
}
