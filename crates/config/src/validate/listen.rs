//! `[proxy]`'s listeners (`listen`, `listen_tls`, `redirect_https`) and `[[proxy.tls]]`.
//!
//! `listen` may be left out when `listen_tls` is set: an HTTPS-only rouse should not open a
//! plain port it was not asked for. Without either, the plain default (127.0.0.1:8080) applies.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::{Context, DEFAULT_PROXY_LISTEN};
use crate::file::{FileProxy, FileTls, Section};
use crate::model::{ListenAddr, TlsFiles};
use crate::values;

pub(crate) struct Listeners {
    pub listen: Vec<ListenAddr>,
    pub listen_tls: Vec<SocketAddr>,
    pub redirect_https: Vec<SocketAddr>,
    pub tls: Vec<TlsFiles>,
    /// Every TCP address rouse's proxy binds, with where it is written (cross checks).
    pub tcp: Vec<Spanned<SocketAddr>>,
}

pub(super) fn listeners(
    section: Option<&Section<FileProxy>>,
    tls_sections: &[Section<FileTls>],
    acme: bool,
    cx: &mut Context<'_>,
) -> Listeners {
    let default = FileProxy::default();
    let file = section.map_or(&default, |s| &s.value);
    let table_span = section.map_or(0..0, |s| s.span.clone());
    // Every address bound, with its key, for duplicates across the three lists.
    let mut bound: Vec<(Spanned<ListenAddr>, &str)> = Vec::new();

    let tls_given = file
        .listen_tls
        .as_ref()
        .is_some_and(|l| !l.get_ref().is_empty());
    let mut listen = Vec::new();
    match &file.listen {
        Some(addresses) if addresses.get_ref().is_empty() && !tls_given => cx.error(
            addresses.span(),
            "listen: at least one address is needed, e.g. [\"127.0.0.1:8080\"] (or HTTPS \
             listeners in listen_tls)",
        ),
        Some(addresses) => {
            for address in addresses.get_ref() {
                match values::listen_addr(address.get_ref()) {
                    Ok(parsed) => {
                        add(&mut bound, "listen", address.span(), parsed.clone(), cx);
                        listen.push(parsed);
                    }
                    Err(message) => cx.error(address.span(), format!("listen: {message}")),
                }
            }
        }
        None if tls_given => {}
        None => {
            if let Ok(address) = values::listen_addr(DEFAULT_PROXY_LISTEN) {
                add(
                    &mut bound,
                    "listen",
                    table_span.clone(),
                    address.clone(),
                    cx,
                );
                listen.push(address);
            }
        }
    }
    let listen_tls = tcp_list("listen_tls", &file.listen_tls, &mut bound, cx);
    let redirect_https = tcp_list("redirect_https", &file.redirect_https, &mut bound, cx);

    let tls = tls_files(tls_sections, cx);
    if let Some(first) = file.listen_tls.as_ref().filter(|_| tls_given)
        && tls_sections.is_empty()
        && !acme
    {
        cx.error(
            first.span(),
            "listen_tls: HTTPS listeners need a certificate: add a [[proxy.tls]] table with \
             cert = \"...pem\" and key = \"...key\", or [proxy.acme]",
        );
    }

    let tcp = bound
        .iter()
        .filter_map(|(a, _)| match a.get_ref() {
            ListenAddr::Tcp(t) => Some(Spanned::new(a.span(), *t)),
            ListenAddr::Unix(_) => None,
        })
        .collect();
    Listeners {
        listen,
        listen_tls,
        redirect_https,
        tls,
        tcp,
    }
}

/// `listen_tls` or `redirect_https`: TCP addresses only.
fn tcp_list(
    key: &'static str,
    value: &Option<Spanned<Vec<Spanned<String>>>>,
    bound: &mut Vec<(Spanned<ListenAddr>, &'static str)>,
    cx: &mut Context<'_>,
) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for address in value.iter().flat_map(|v| v.get_ref()) {
        match values::socket_addr(address.get_ref()) {
            Ok(parsed) => {
                add(bound, key, address.span(), ListenAddr::Tcp(parsed), cx);
                out.push(parsed);
            }
            Err(message) => cx.error(address.span(), format!("{key}: {message}")),
        }
    }
    out
}

/// Records a bound address, refusing one that another listener already binds.
fn add<'k>(
    bound: &mut Vec<(Spanned<ListenAddr>, &'k str)>,
    key: &'k str,
    span: Range<usize>,
    address: ListenAddr,
    cx: &mut Context<'_>,
) {
    if let Some((first, first_key)) = bound.iter().find(|(a, _)| clash(a.get_ref(), &address)) {
        let line = cx.line(&first.span());
        let what = if first.get_ref() == &address {
            format!("{address} is listed twice")
        } else {
            format!("{address} clashes with {}", first.get_ref())
        };
        cx.error(
            span.clone(),
            format!("{key}: {what} (also in {first_key} on line {line})"),
        );
    }
    bound.push((Spanned::new(span, address), key));
}

fn clash(a: &ListenAddr, b: &ListenAddr) -> bool {
    match (a, b) {
        // Port 0 asks the kernel for a free port: never a clash (tests bind several).
        (ListenAddr::Tcp(a), ListenAddr::Tcp(b)) => super::cross::binds_clash(*a, *b),
        (ListenAddr::Unix(a), ListenAddr::Unix(b)) => a == b,
        _ => false,
    }
}

fn tls_files(sections: &[Section<FileTls>], cx: &mut Context<'_>) -> Vec<TlsFiles> {
    let mut out = Vec::new();
    for section in sections {
        let mut path = |key: &str, value: &Option<Spanned<String>>| -> PathBuf {
            match value {
                Some(v) if v.get_ref().trim().is_empty() => {
                    cx.error(v.span(), format!("{key}: must name a PEM file"));
                    PathBuf::new()
                }
                Some(v) => PathBuf::from(v.get_ref()),
                None => {
                    if !section.is_rejected(key) {
                        cx.error(
                            section.span.clone(),
                            format!("[[proxy.tls]] needs {key} = \"...\" (a PEM file)"),
                        );
                    }
                    PathBuf::new()
                }
            }
        };
        let cert = path("cert", &section.value.cert);
        let key = path("key", &section.value.key);
        out.push(TlsFiles { cert, key });
    }
    out
}

/// Relative `[[proxy.tls]]` paths are relative to the config file's directory, as nginx's
/// are to its prefix: rouse may run from any working directory.
pub(crate) fn resolve_paths(tls: &mut [TlsFiles], dir: &Path) {
    for entry in tls {
        for path in [&mut entry.cert, &mut entry.key] {
            if path.is_relative() && !path.as_os_str().is_empty() {
                *path = dir.join(&*path);
            }
        }
    }
}
