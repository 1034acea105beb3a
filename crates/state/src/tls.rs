//! The TLS client configuration of an upstream whose servers use TLS.

use std::sync::Arc;

use rouse_config::UpstreamConfig;
use rouse_tls::client::{Trust, client_config};

/// A configuration to connect with, or why there is none (a CA file that changed since the
/// config was checked): every connection attempt then fails saying so.
pub type TlsClient = Result<Arc<rustls::ClientConfig>, String>;

/// ALPN offered to TLS servers. HTTP/2 upstreams (`protocol = "h2"`) will offer `h2` here.
const ALPN: &[&[u8]] = &[b"http/1.1"];

/// Built once per upstream generation: every server of it that uses TLS shares the one
/// configuration (and its session cache).
pub fn client(config: &UpstreamConfig) -> Option<TlsClient> {
    let settings = config.servers.iter().find_map(|s| s.tls.as_ref())?;
    let trust = match (&settings.ca_file, settings.verify) {
        (_, false) => Trust::Nothing,
        (Some(path), true) => Trust::CaFile(path.clone()),
        (None, true) => Trust::WebPki,
    };
    Some(client_config(&trust, ALPN).map_err(|e| e.to_string()))
}
