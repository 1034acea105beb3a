//! What ACME keeps in `dir`: the account's credentials and, per certificate, its chain and
//! key. Secrets are written 0600 in a 0700 directory, every file atomically (a temp file in the
//! same directory, synced, renamed over the old one), so a crash leaves the old file or the
//! new one, never half of either.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

use super::Error;
use crate::store::Named;

/// The files of one certificate (named after its first domain) and of the account.
#[derive(Debug, Clone)]
pub struct Files {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub account: PathBuf,
}

impl Files {
    pub fn new(dir: &Path, domains: &[String], directory: &str) -> Files {
        let first = domains.first().map_or("certificate", String::as_str);
        Files {
            dir: dir.to_path_buf(),
            cert: dir.join(format!("{first}.crt")),
            key: dir.join(format!("{first}.key")),
            account: dir.join(format!("account-{}.json", authority(directory))),
        }
    }

    /// Creates `dir` (0700) if need be.
    pub fn ensure_dir(&self) -> Result<(), Error> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))
    }
}

/// An account belongs to one CA: `acme-v02.api.letsencrypt.org`, `127.0.0.1_14000`.
fn authority(directory: &str) -> String {
    let rest = directory.split_once("://").map_or(directory, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A certificate ready to serve, with its validity.
#[derive(Debug, Clone)]
pub struct Stored {
    pub named: Named,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// The stored certificate for `domains`, if there is one whose names cover them all and whose
/// key matches. `Ok(None)` when there is none; an error for files that exist but are unusable.
pub fn load(files: &Files, domains: &[String]) -> Result<Option<Stored>, Error> {
    let chain = match fs::read(&files.cert) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&files.cert, e)),
    };
    let key = fs::read(&files.key).map_err(|e| Error::io(&files.key, e))?;
    let stored = parse(&chain, &key, domains)
        .map_err(|why| Error::Invalid(format!("{}: {why}", files.cert.display())))?;
    let missing: Vec<&String> = domains
        .iter()
        .filter(|d| !stored.named.names.contains(d))
        .collect();
    if !missing.is_empty() {
        tracing::info!(
            cert = %files.cert.display(),
            ?missing,
            "acme: the stored certificate does not cover every configured domain; a new one will be ordered"
        );
        return Ok(None);
    }
    Ok(Some(stored))
}

/// A PEM chain (leaf first) and its PEM key, checked to match; `names` are the leaf's DNS names.
pub fn parse(chain_pem: &[u8], key_pem: &[u8], domains: &[String]) -> Result<Stored, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM certificate: {e}"))?;
    let leaf = chain.first().ok_or("no certificate in the file")?.clone();
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("bad PEM key: {e}"))?;
    let certified = CertifiedKey::from_der(chain, key, &crate::provider())
        .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    let validity = cert.validity();
    let time = |t: &x509_parser::time::ASN1Time| {
        u64::try_from(t.timestamp())
            .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    // Served under the configured names, in their order, when it covers them all (the store
    // replaces a certificate by its names).
    if domains.iter().all(|d| names.contains(d)) {
        names = domains.to_vec();
    }
    Ok(Stored {
        named: Named {
            names,
            key: Arc::new(certified),
        },
        not_before: time(&validity.not_before),
        not_after: time(&validity.not_after),
    })
}

/// Writes the key, then the chain: a crash between the two leaves a new key beside the old
/// chain, which `load` refuses (the key does not fit), so a new order follows; never the old
/// key served with a chain that is not its own.
pub fn save(files: &Files, chain_pem: &[u8], key_pem: &[u8]) -> Result<(), Error> {
    files.ensure_dir()?;
    write_atomic(&files.key, key_pem, 0o600)?;
    write_atomic(&files.cert, chain_pem, 0o644)
}

/// `bytes` to `path` through a temp file beside it, renamed over it once synced.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        // A temp file left by a crash keeps the mode it was created with.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        // The rename itself is durable once the directory is synced.
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&temp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn saved_files_load_back_with_their_names_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let domains = vec!["a.example".to_owned(), "b.example".to_owned()];
        let files = Files::new(&dir.path().join("acme"), &domains, "https://ca.example/dir");
        assert!(load(&files, &domains).unwrap().is_none());

        let (chain, key) = self_signed(&["b.example", "a.example"]);
        save(&files, chain.as_bytes(), key.as_bytes()).unwrap();
        let stored = load(&files, &domains).unwrap().expect("stored");
        assert_eq!(stored.named.names, domains);
        assert!(stored.not_after > stored.not_before);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&files.dir), 0o700);
        // Only the two files: no temp file left behind.
        assert_eq!(fs::read_dir(&files.dir).unwrap().count(), 2);

        // Another set of domains is not covered: a new order is due.
        let more = vec!["a.example".to_owned(), "c.example".to_owned()];
        assert!(load(&Files { ..files.clone() }, &more).unwrap().is_none());
    }

    #[test]
    fn a_key_that_does_not_fit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let domains = vec!["a.example".to_owned()];
        let files = Files::new(dir.path(), &domains, "https://ca.example/dir");
        let (chain, _) = self_signed(&["a.example"]);
        let (_, other_key) = self_signed(&["a.example"]);
        save(&files, chain.as_bytes(), other_key.as_bytes()).unwrap();
        let error = load(&files, &domains).unwrap_err().to_string();
        assert!(error.contains("does not fit"), "{error}");
    }

    #[test]
    fn account_files_are_per_ca() {
        let domains = vec!["a.example".to_owned()];
        let le = Files::new(
            Path::new("/d"),
            &domains,
            "https://acme-v02.api.letsencrypt.org/directory",
        );
        let pebble = Files::new(Path::new("/d"), &domains, "https://127.0.0.1:14000/dir");
        assert_eq!(
            le.account,
            Path::new("/d/account-acme-v02.api.letsencrypt.org.json")
        );
        assert_eq!(pebble.account, Path::new("/d/account-127.0.0.1_14000.json"));
        assert_eq!(le.cert, Path::new("/d/a.example.crt"));
    }
}
