//! Where a server is reached: an IP address, a host name resolved by rouse, or a unix socket;
//! and how (plain or TLS).

use std::net::SocketAddr;
use std::path::PathBuf;

/// A server's `address`, parsed. What it prints is what logs, `/status` and metrics labels
/// show: `127.0.0.1:9101` for an IP address (as before names and sockets were possible),
/// `app.internal:8000`, `unix:/run/app.sock`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerAddress {
    Ip(SocketAddr),
    /// A host name (lower-cased), resolved at start and every `resolve_interval`.
    Name {
        host: String,
        port: u16,
    },
    /// An absolute path to a listening unix socket.
    Unix(PathBuf),
}

impl ServerAddress {
    /// The TCP port, for addresses that have one.
    pub fn port(&self) -> Option<u16> {
        match self {
            ServerAddress::Ip(a) => Some(a.port()),
            ServerAddress::Name { port, .. } => Some(*port),
            ServerAddress::Unix(_) => None,
        }
    }

    /// The host part as a TLS server name (SNI) or `Host` would carry it.
    pub fn host(&self) -> Option<String> {
        match self {
            ServerAddress::Ip(a) => Some(a.ip().to_string()),
            ServerAddress::Name { host, .. } => Some(host.clone()),
            ServerAddress::Unix(_) => None,
        }
    }
}

impl std::fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddress::Ip(a) => write!(f, "{a}"),
            ServerAddress::Name { host, port } => write!(f, "{host}:{port}"),
            ServerAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// How rouse talks TLS to an upstream's servers that use it (`https://` or `tls = true`): the
/// upstream's `tls_ca_file`, `tls_verify` and `tls_server_name`, as nginx's
/// `proxy_ssl_trusted_certificate`, `proxy_ssl_verify` and `proxy_ssl_name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsClientConfig {
    /// PEM CA certificates to trust instead of the built-in web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Verify the server's certificate chain and name (default on).
    pub verify: bool,
    /// The name sent in SNI and verified; default the address's host.
    pub server_name: Option<String>,
}

impl Default for TlsClientConfig {
    fn default() -> Self {
        TlsClientConfig {
            ca_file: None,
            verify: true,
            server_name: None,
        }
    }
}
