//! Reading `[[proxy.tls]]` files: a PEM certificate chain and its private key.
//!
//! Every error names the file it is about, since an operator with several certificates must
//! know which one to fix. An expired or not yet valid certificate is a warning, not an error:
//! refusing to start (or to reload) over it would take down every other name with it, while
//! serving it only fails the clients of that one name, as nginx does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::store::Named;

/// One `[[proxy.tls]]` entry: where its certificate chain and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not valid PEM: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("{}: no certificate in it (expected a PEM block \"-----BEGIN CERTIFICATE-----\")", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: cannot parse the certificate: {message}", path.display())]
    BadCertificate { path: PathBuf, message: String },
    #[error(
        "{}: no private key in it (expected \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error("{}: unusable private key: {message}", path.display())]
    BadKey { path: PathBuf, message: String },
    #[error("{}: this key does not match the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// A certificate ready to serve, with what the operator should hear about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub named: Named,
    pub warnings: Vec<String>,
}

/// Reads every entry, in order; all errors, not only the first, so one `rouse check` shows
/// every file to fix.
pub fn load_all(entries: &[Files], now: SystemTime) -> Result<Certificates, Vec<LoadError>> {
    let mut named = Vec::new();
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match load(entry, now) {
            Ok(l) => {
                named.push(l.named);
                warnings.extend(l.warnings);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(Certificates { named, warnings })
    } else {
        Err(errors)
    }
}

/// Every certificate of a `[proxy]` section, and the warnings about them.
#[derive(Debug, Clone, Default)]
pub struct Certificates {
    pub named: Vec<Named>,
    pub warnings: Vec<String>,
}

/// Reads one certificate chain and its key, checks that they belong together, and reads the
/// names the certificate serves from its subjectAltName.
pub fn load(files: &Files, now: SystemTime) -> Result<Loaded, LoadError> {
    let cert_pem = read(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoadError::Pem {
            path: files.cert.clone(),
            message: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(LoadError::NoCertificate {
            path: files.cert.clone(),
        });
    };
    let (names, warnings) = inspect(&files.cert, leaf, now)?;

    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => LoadError::NoKey {
            path: files.key.clone(),
        },
        e => LoadError::Pem {
            path: files.key.clone(),
            message: e.to_string(),
        },
    })?;
    let signing = crate::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| LoadError::BadKey {
            path: files.key.clone(),
            message: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        // The key type cannot say its public key: nothing to compare, the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(LoadError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            });
        }
    }
    Ok(Loaded {
        named: Named {
            names,
            key: Arc::new(certified),
        },
        warnings,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The leaf's DNS names (lower case) and warnings about its validity period.
fn inspect(
    path: &Path,
    leaf: &CertificateDer<'_>,
    now: SystemTime,
) -> Result<(Vec<String>, Vec<String>), LoadError> {
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| LoadError::BadCertificate {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                let dns = dns.to_ascii_lowercase();
                if !names.contains(&dns) {
                    names.push(dns);
                }
            }
        }
    }
    let mut warnings = Vec::new();
    let shown = path.display();
    if names.is_empty() {
        warnings.push(format!(
            "{shown}: the certificate names no DNS name (subjectAltName); it is only served to \
             clients whose name matches no other certificate"
        ));
    }
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let validity = cert.validity();
    if validity.not_after.timestamp() < now {
        warnings.push(format!(
            "{shown}: the certificate expired on {} (clients will refuse it)",
            validity.not_after
        ));
    } else if validity.not_before.timestamp() > now {
        warnings.push(format!(
            "{shown}: the certificate is not valid before {} (clients will refuse it until then)",
            validity.not_before
        ));
    }
    Ok((names, warnings))
}
