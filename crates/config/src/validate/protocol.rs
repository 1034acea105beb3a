//! `protocol`: how rouse speaks to an upstream's servers.

use std::sync::Arc;

use super::Context;
use crate::file::{FileProtocol, FileUpstream, Section};
use crate::model::{Protocol, ServerConfig};

/// The upstream's protocol. `h2` is HTTP/2 chosen by ALPN inside TLS, so every server must be
/// reached over TLS; `h2c` is HTTP/2 over plain TCP, so none may be. A mismatch is refused
/// here, pointing at the key, rather than failing on the first request.
pub(super) fn protocol(
    section: &Section<FileUpstream>,
    servers: &[Arc<ServerConfig>],
    cx: &mut Context<'_>,
) -> Protocol {
    let Some(value) = &section.value.protocol else {
        return Protocol::Http1;
    };
    let plain = servers.iter().find(|s| s.tls.is_none());
    let tls = servers.iter().find(|s| s.tls.is_some());
    match value.get_ref() {
        FileProtocol::Http1 => Protocol::Http1,
        FileProtocol::H2c => {
            if let Some(s) = tls {
                cx.error(
                    value.span(),
                    format!(
                        "protocol = \"h2c\" is HTTP/2 over plain TCP, but server {} is reached \
                         over TLS; use \"h2\" (HTTP/2 over TLS, chosen by ALPN)",
                        s.address
                    ),
                );
            }
            Protocol::H2c
        }
        FileProtocol::H2 => {
            if let Some(s) = plain {
                cx.error(
                    value.span(),
                    format!(
                        "protocol = \"h2\" is HTTP/2 over TLS, but server {} is not reached over \
                         TLS (write \"https://HOST:PORT\" or tls = true); use \"h2c\" for HTTP/2 \
                         over plain TCP",
                        s.address
                    ),
                );
            }
            Protocol::H2
        }
    }
}
