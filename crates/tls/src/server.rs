//! The rustls server configuration every TLS listener shares.

use std::sync::Arc;

use rustls::ServerConfig;

use crate::store::CertStore;

/// ALPN protocols offered, in rouse's order of preference: the client's h2 gets HTTP/2.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// TLS 1.3 and 1.2, ALPN h2 and http/1.1, certificates chosen by SNI from `store`: swapping
/// the store's certificates changes what new handshakes get, with no new configuration.
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(crate::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
