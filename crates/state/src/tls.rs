//! The TLS client configuration of an upstream whose servers use TLS.

use std::sync::Arc;

use rouse_config::UpstreamConfig;
use rouse_tls::client::{Trust, client_config};

/// A configuration to connect with, or why there is none (a CA file that changed since the
/// config was checked): every connection attempt then fails saying so.
pub type TlsClient = Result<Arc<rustls::ClientConfig>, String>;

/// ALPN offered to HTTP/1.1 TLS servers.
pub const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];
/// ALPN offered by `protocol = "h2"`: h2 alone, so that a server that cannot speak it fails
/// the handshake or chooses nothing, instead of a connection in the wrong protocol.
pub const ALPN_H2: &[&[u8]] = &[b"h2"];

/// What an upstream offers by ALPN, by its `protocol`.
pub fn alpn(protocol: rouse_config::Protocol) -> &'static [&'static [u8]] {
    match protocol {
        rouse_config::Protocol::H2 => ALPN_H2,
        rouse_config::Protocol::Http1 | rouse_config::Protocol::H2c => ALPN_HTTP1,
    }
}

/// Built once per upstream generation: every server of it that uses TLS shares the one
/// configuration (and its session cache). `alpn`: the protocols offered, in preference order.
pub fn client(config: &UpstreamConfig, alpn: &[&[u8]]) -> Option<TlsClient> {
    let settings = config.servers.iter().find_map(|s| s.tls.as_ref())?;
    let trust = match (&settings.ca_file, settings.verify) {
        (_, false) => Trust::Nothing,
        (Some(path), true) => Trust::CaFile(path.clone()),
        (None, true) => Trust::WebPki,
    };
    Some(client_config(&trust, alpn).map_err(|e| e.to_string()))
}
