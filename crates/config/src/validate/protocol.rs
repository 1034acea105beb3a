//! `protocol`: how rouse speaks to an upstream's servers.

use super::Context;
use super::upstream::CheckedServer;
use crate::file::{FileProtocol, FileUpstream, Section};
use crate::model::Protocol;

/// The upstream's protocol. `h2` is HTTP/2 chosen by ALPN inside TLS, so it needs servers
/// that are reached over TLS; until server addresses can say so (`https://…`), every `h2`
/// upstream is refused here, pointing at the key, rather than failing on its first request.
pub(super) fn protocol(
    section: &Section<FileUpstream>,
    servers: &[CheckedServer],
    cx: &mut Context<'_>,
) -> Protocol {
    let Some(value) = &section.value.protocol else {
        return Protocol::Http1;
    };
    match value.get_ref() {
        FileProtocol::Http1 => Protocol::Http1,
        FileProtocol::H2c => Protocol::H2c,
        FileProtocol::H2 => {
            // Every plain address: all of them, while addresses are IP:PORT only.
            let plain = servers.iter().filter(|s| s.address.is_some()).count();
            if plain > 0 || servers.is_empty() {
                cx.error(
                    value.span(),
                    "protocol = \"h2\" is HTTP/2 over TLS and needs TLS server addresses \
                     (\"https://HOST:PORT\"), which this version of rouse does not support yet; \
                     use \"h2c\" for HTTP/2 over plain TCP",
                );
            }
            Protocol::H2
        }
    }
}
