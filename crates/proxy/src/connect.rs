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
    /// Reads what has come into `buf`'s spare room: how much, 0 at the server's end. A plain
    /// socket is read with the system call itself (`crate::sock`), TLS as any stream. (Not in
    /// `AsyncRead`, whose `ReadBuf` cannot be read into uninitialised room without `unsafe`.)
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
    ) -> Poll<io::Result<usize>> {
        match self {
            Stream::Tcp(s) => crate::sock::poll_recv(s, cx, buf),
            Stream::Unix(s) => crate::sock::poll_recv(s, cx, buf),
            Stream::Tls(_) => tokio_util::io::poll_read_buf(Pin::new(self), cx, buf),
        }
    }

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

/// A plain socket's writes are the system call itself (`crate::sock`).
impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => crate::sock::poll_send(s, cx, buf),
            Stream::Unix(s) => crate::sock::poll_send(s, cx, buf),
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

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rouse_state::Table;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::net::TcpListener;

    use super::*;

    /// The one server of a static upstream: `address`, and `upstream` keys added.
    fn target(address: &str, upstream: &str) -> Target {
        let text = format!(
            "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\n{upstream}\n\
             [[upstream.server]]\naddress = \"{address}\"\n"
        );
        let table = Table::new(&rouse_config::parse("t.toml", &text).expect("valid"));
        let up = &table.upstreams[0];
        Target::new(Arc::clone(&up.servers[0]), up.tls.as_ref())
    }

    /// A TLS server for 127.0.0.1 offering h2 and http/1.1, and the PEM of its CA in `ca`.
    async fn tls_server(ca: &std::path::Path) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(ca, issuer.pem()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(rouse_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut buf = [0u8; 1];
                        let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await;
                    }
                });
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn tls_is_verified_and_says_what_alpn_chose() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let (addr, server) = tls_server(&ca).await;
        let t = target(
            &format!("https://{addr}"),
            &format!("tls_ca_file = {:?}", ca.display().to_string()),
        );
        assert_eq!(t.to_string(), format!("https://{addr}"));
        let stream = t.connect(Duration::from_secs(5)).await.expect("verified");
        // rouse offers http/1.1 only (HTTP/1.1 upstreams), whatever the server prefers.
        assert_eq!(stream.negotiated_alpn(), Some(&b"http/1.1"[..]));

        // Without the CA, the same certificate is refused, saying why.
        let web_pki = target(&format!("https://{addr}"), "");
        let e = web_pki.connect(Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(&e, ConnectError::Tls(..)) && e.to_string().contains("certificate"),
            "{e}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_handshake_that_never_comes_is_bounded_by_the_connect_timeout() {
        // Accepts TCP connections and never says a word.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                open.push(s);
            }
        });
        let t = target(&format!("https://{addr}"), "");
        let started = Instant::now();
        let e = t.connect(Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(e, ConnectError::Timeout(..)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        held.abort();
    }

    #[tokio::test]
    async fn addresses_are_tried_in_turn_and_an_unresolved_name_says_so() {
        let t = target("app.internal:80", "");
        let e = t.connect(Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(e, ConnectError::NotResolved(_)), "{e}");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = listener.local_addr().unwrap();
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        t.server().set_resolved(vec![dead, live]);
        let stream = t
            .connect(Duration::from_secs(1))
            .await
            .expect("second address");
        assert!(matches!(stream, Stream::Tcp(_)));
        assert_eq!(stream.negotiated_alpn(), None);
    }
}
