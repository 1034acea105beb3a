//! How servers are reached: a server's `address` and `tls`, and its upstream's
//! `resolve_interval`, `tls_ca_file`, `tls_verify` and `tls_server_name`.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::Context;
use super::limits::DAY;
use crate::address::{ServerAddress, TlsClientConfig};
use crate::file::{FileServer, FileSupervisor, FileUpstream, Section};
use crate::values;

/// Most of a CA file read: far beyond any bundle of CA certificates.
const MAX_CA_FILE: u64 = 16 * 1024 * 1024;

/// A server's address and whether it uses TLS; `None` when missing or invalid (reported).
pub(crate) fn server_address(
    index: usize,
    section: &Section<FileServer>,
    cx: &mut Context<'_>,
) -> (Option<Spanned<ServerAddress>>, bool) {
    let file = &section.value;
    let Some(address) = &file.address else {
        if !section.is_rejected("address") {
            cx.error(
                section.span.clone(),
                format!("server {index} needs an address, e.g. address = \"127.0.0.1:9101\""),
            );
        }
        return (None, file.tls.unwrap_or(false));
    };
    let (parsed, https) = match values::server_address(address.get_ref()) {
        Ok(parsed) => parsed,
        Err(message) => {
            cx.error(address.span(), format!("address: {message}"));
            return (None, file.tls.unwrap_or(false));
        }
    };
    let tls = match file.tls {
        Some(false) if https => {
            cx.error(
                section.key_span("tls"),
                "tls = false contradicts the address's https://; drop one of them",
            );
            true
        }
        Some(tls) => tls || https,
        None => https,
    };
    if tls && matches!(parsed, ServerAddress::Unix(_)) {
        cx.error(
            section.key_span("tls"),
            "tls = true over a unix socket is not supported; the socket is local already",
        );
    }
    (Some(Spanned::new(address.span(), parsed)), tls)
}

/// The upstream's TLS client settings; errors for keys no server of it would use.
pub(crate) fn tls_settings(
    section: &Section<FileUpstream>,
    any_tls: bool,
    cx: &mut Context<'_>,
) -> TlsClientConfig {
    let file = &section.value;
    if !any_tls {
        for key in ["tls_ca_file", "tls_verify", "tls_server_name"] {
            if section.keys.contains_key(key) {
                cx.error(
                    section.key_span(key),
                    format!(
                        "{key} is set but no server of this upstream uses TLS (write \
                         address = \"https://HOST:PORT\" or tls = true on a server)"
                    ),
                );
            }
        }
    }
    let ca_file = file.tls_ca_file.as_ref().map(|ca| {
        if let Err(message) = ca_file(ca.get_ref()) {
            cx.error(ca.span(), format!("tls_ca_file: {message}"));
        }
        PathBuf::from(ca.get_ref())
    });
    let verify = file.tls_verify.unwrap_or(true);
    if !verify && ca_file.is_some() {
        cx.error(
            section.key_span("tls_verify"),
            "tls_verify = false ignores tls_ca_file; drop one of them",
        );
    }
    let server_name = file.tls_server_name.as_ref().map(|name| {
        let text = name.get_ref();
        if text.parse::<std::net::IpAddr>().is_ok() {
            return text.clone();
        }
        values::host_name(text).unwrap_or_else(|message| {
            cx.error(name.span(), format!("tls_server_name: {message}"));
            text.clone()
        })
    });
    TlsClientConfig {
        ca_file,
        verify,
        server_name,
    }
}

/// A supervisord's TLS: `https://` in its url, trusting `ca_file` when given.
pub(crate) fn supervisord_tls(
    section: &Section<FileSupervisor>,
    cx: &mut Context<'_>,
) -> Option<TlsClientConfig> {
    let file = &section.value;
    let https = file
        .url
        .as_ref()
        .is_some_and(|u| values::is_https(u.get_ref()));
    let ca_file = file.ca_file.as_ref().map(|ca| {
        if !https {
            cx.error(
                section.key_span("ca_file"),
                "ca_file is only for https:// urls; this supervisord is reached without TLS",
            );
        } else if let Err(message) = ca_file(ca.get_ref()) {
            cx.error(ca.span(), format!("ca_file: {message}"));
        }
        PathBuf::from(ca.get_ref())
    });
    https.then_some(TlsClientConfig {
        ca_file,
        verify: true,
        server_name: None,
    })
}

/// `resolve_interval`: 1 s to a day (default 30 s); more often would only load the resolver.
pub(crate) fn resolve_interval(file: &FileUpstream, cx: &mut Context<'_>) -> Duration {
    let interval = super::positive("resolve_interval", &file.resolve_interval, 30, DAY, cx);
    match &file.resolve_interval {
        Some(value) if !interval.is_zero() && interval < Duration::from_secs(1) => {
            cx.error(value.span(), "resolve_interval: must be at least 1s");
            Duration::from_secs(30)
        }
        _ => interval,
    }
}

/// A CA file must be there, readable and hold PEM certificates: found at load (and reload)
/// rather than at the first connection, when the operator has moved on.
pub(crate) fn ca_file(path: &str) -> Result<(), String> {
    pem_file(path, "-----BEGIN CERTIFICATE-----", "certificate")
}

/// A private key file, checked as [`ca_file`] is: a PEM key of any kind (PKCS#8, RSA, EC).
pub(crate) fn key_file(path: &str) -> Result<(), String> {
    pem_file(path, "PRIVATE KEY-----", "private key")
}

fn pem_file(path: &str, marker: &str, what: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{path} is not a file"));
    }
    if meta.len() > MAX_CA_FILE {
        return Err(format!("{path} is over 16 MiB: not a PEM {what} file"));
    }
    let text = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if !text.windows(marker.len()).any(|w| w == marker.as_bytes()) {
        let shown = if marker.starts_with("-----") {
            marker.to_owned()
        } else {
            format!("-----BEGIN ... {marker}")
        };
        return Err(format!("{path} holds no PEM {what} ({shown})"));
    }
    Ok(())
}
