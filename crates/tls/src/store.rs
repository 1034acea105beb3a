//! The server certificates, chosen by SNI.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// One certificate and the DNS names it serves (lower case; `*.example.com` for a wildcard),
/// read from its subjectAltName.
#[derive(Debug, Clone)]
pub struct Named {
    pub names: Vec<String>,
    pub key: Arc<CertifiedKey>,
}

#[derive(Debug, Default)]
struct Set {
    /// From `[[proxy.tls]]`, in config order: the first is served to a client without SNI or
    /// whose name matches none.
    files: Vec<Named>,
    /// From ACME, one per order (its `domains`).
    acme: Vec<Named>,
}

/// Every certificate rouse serves; shared by all TLS listeners.
#[derive(Debug, Default)]
pub struct CertStore {
    set: ArcSwap<Set>,
}

impl CertStore {
    pub fn new() -> Arc<CertStore> {
        Arc::new(CertStore::default())
    }

    /// Replaces the certificates read from files (at start and on every reload).
    pub fn set_files(&self, files: Vec<Named>) {
        self.set.rcu(|old| {
            Arc::new(Set {
                files: files.clone(),
                acme: old.acme.clone(),
            })
        });
    }

    /// Installs an ACME certificate, replacing the one that served the same names.
    pub fn set_acme(&self, cert: Named) {
        self.set.rcu(|old| {
            let mut acme: Vec<Named> = old
                .acme
                .iter()
                .filter(|n| n.names != cert.names)
                .cloned()
                .collect();
            acme.push(cert.clone());
            Arc::new(Set {
                files: old.files.clone(),
                acme,
            })
        });
    }

    /// The certificate for `sni` (exact name first, then a wildcard one label up), else the
    /// first file certificate, else the first ACME one.
    pub fn find(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let set = self.set.load();
        let all = || set.files.iter().chain(set.acme.iter());
        if let Some(sni) = sni {
            let sni = sni.to_ascii_lowercase();
            if let Some(n) = all().find(|n| n.names.contains(&sni)) {
                return Some(Arc::clone(&n.key));
            }
            if let Some((_, parent)) = sni.split_once('.') {
                let wildcard = format!("*.{parent}");
                if let Some(n) = all().find(|n| n.names.contains(&wildcard)) {
                    return Some(Arc::clone(&n.key));
                }
            }
        }
        all().next().map(|n| Arc::clone(&n.key))
    }

    pub fn is_empty(&self) -> bool {
        let set = self.set.load();
        set.files.is_empty() && set.acme.is_empty()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.find(hello.server_name())
    }
}
