//! Opening a connection to a server, whatever its address says: TCP to the addresses its
//! host name resolved to (each in turn), a unix socket, or TLS over TCP. The data plane's pools
//! and the control plane's readiness probe both connect through here, so "ready" means "the
//! proxy can connect".
//!
//! Nothing here resolves names: the control plane's resolver keeps each server's addresses
//! up to date ([`Server::resolved`]), so a request never waits on DNS.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rouse_config::ServerAddress;
use rouse_state::{Server, TlsClient};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0} timed out after {1:?}")]
    Timeout(String, Duration),
    #[error("connect to {0}: {1}")]
    Io(String, io::Error),
    #[error("{0} does not resolve (yet): no address to connect to")]
    NotResolved(String),
    #[error("TLS with {0}: {1}")]
    Tls(String, String),
}

/// A connection to a server: one type for the HTTP client whatever the transport.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The protocol the server chose by ALPN (TLS only), e.g. `b"h2"`.
    pub fn negotiated_alpn(&self) -> Option<&[u8]> {
        match self {
            Stream::Tls(tls) => tls.get_ref().1.alpn_protocol(),
            Stream::Tcp(_) | Stream::Unix(_) => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// One server as connections see it: where it is and, for a TLS server, its upstream's
/// client configuration.
#[derive(Debug, Clone)]
pub struct Target {
    server: Arc<Server>,
    tls: Option<TlsClient>,
}

impl Target {
    /// `upstream_tls` is the upstream's configuration ([`rouse_state::Upstream::tls`]); it is
    /// used only if this server's config asks for TLS.
    pub fn new(server: Arc<Server>, upstream_tls: Option<&TlsClient>) -> Target {
        let tls = server.config.tls.as_ref().map(|_| {
            upstream_tls.cloned().unwrap_or_else(|| {
                Err("no TLS client configuration was built for this upstream".into())
            })
        });
        Target { server, tls }
    }

    /// A connection, TLS included, within `timeout` for all of it.
    pub async fn connect(&self, timeout: Duration) -> Result<Stream, ConnectError> {
        let deadline = rouse_core::time::deadline(Instant::now(), timeout);
        let transport = self.transport(deadline, timeout).await?;
        let Some(tls) = &self.tls else {
            return Ok(transport);
        };
        let Stream::Tcp(tcp) = transport else {
            // Validation refuses TLS over a unix socket.
            return Err(ConnectError::Tls(
                self.to_string(),
                "TLS over a unix socket is not supported".into(),
            ));
        };
        let config = tls
            .as_ref()
            .map_err(|why| ConnectError::Tls(self.to_string(), why.clone()))?;
        let name = self.server_name();
        let server_name = rouse_tls::client::server_name(&name)
            .map_err(|e| ConnectError::Tls(self.to_string(), e.to_string()))?;
        let handshake = TlsConnector::from(Arc::clone(config)).connect(server_name, tcp);
        match tokio::time::timeout_at(deadline, handshake).await {
            Err(_) => Err(ConnectError::Timeout(self.to_string(), timeout)),
            Ok(Err(e)) => Err(ConnectError::Tls(self.to_string(), e.to_string())),
            Ok(Ok(stream)) => Ok(Stream::Tls(Box::new(stream))),
        }
    }

    /// The transport alone (no TLS handshake): whether something accepts connections there.
    pub async fn connect_transport(&self, timeout: Duration) -> Result<Stream, ConnectError> {
        self.transport(rouse_core::time::deadline(Instant::now(), timeout), timeout)
            .await
    }

    /// The name TLS sends (SNI) and verifies: `tls_server_name`, else the address's host.
    pub fn server_name(&self) -> String {
        self.server
            .config
            .tls
            .as_ref()
            .and_then(|t| t.server_name.clone())
            .or_else(|| self.server.address().host())
            .unwrap_or_default()
    }

    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    async fn transport(
        &self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Stream, ConnectError> {
        let path = match self.server.address() {
            ServerAddress::Unix(path) => path,
            ServerAddress::Ip(_) | ServerAddress::Name { .. } => {
                let addresses = self.server.resolved();
                return tcp(self, &addresses, deadline, timeout)
                    .await
                    .map(Stream::Tcp);
            }
        };
        match tokio::time::timeout_at(deadline, UnixStream::connect(path)).await {
            Err(_) => Err(ConnectError::Timeout(self.to_string(), timeout)),
            Ok(Err(e)) => Err(ConnectError::Io(self.to_string(), e)),
            Ok(Ok(s)) => Ok(Stream::Unix(s)),
        }
    }
}

/// The first of `addresses` that accepts, in order, all within `deadline`; the last error
/// if none does.
async fn tcp(
    target: &Target,
    addresses: &[SocketAddr],
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let mut last = ConnectError::NotResolved(target.to_string());
    for (i, address) in addresses.iter().enumerate() {
        // Names with several addresses show which one failed.
        let shown = || match addresses.len() {
            1 => target.to_string(),
            _ => format!("{target} ({address}, {} of {})", i + 1, addresses.len()),
        };
        match tokio::time::timeout_at(deadline, TcpStream::connect(address)).await {
            Err(_) => return Err(ConnectError::Timeout(shown(), timeout)),
            Ok(Err(e)) => last = ConnectError::Io(shown(), e),
            Ok(Ok(stream)) => {
                // Small request/response exchanges must not wait on Nagle.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
        }
    }
    Err(last)
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tls {
            Some(_) => write!(f, "https://{}", self.server.address()),
            None => write!(f, "{}", self.server.address()),
        }
    }
}
