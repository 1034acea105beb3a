//! Loading certificates made by rcgen, and handshakes against the server configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair};

use crate::load::{Files, LoadError, load, load_all};
use crate::store::CertStore;

struct Made {
    files: Files,
    _dir: tempfile::TempDir,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn params(names: &[&str]) -> CertificateParams {
    CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap()
}

fn make_with(params: CertificateParams) -> Made {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let files = Files {
        cert: write(dir.path(), "cert.pem", &cert.pem()),
        key: write(dir.path(), "key.pem", &key.serialize_pem()),
    };
    Made { files, _dir: dir }
}

fn make(names: &[&str]) -> Made {
    make_with(params(names))
}

#[test]
fn names_come_from_the_subject_alt_name_in_lower_case() {
    let made = make(&["A.test", "*.b.test"]);
    let loaded = load(&made.files, SystemTime::now()).unwrap();
    assert_eq!(loaded.named.names, ["a.test", "*.b.test"]);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn a_missing_file_is_named() {
    let made = make(&["a.test"]);
    let files = Files {
        cert: made.files.cert.with_file_name("nope.pem"),
        key: made.files.key.clone(),
    };
    let e = load(&files, SystemTime::now()).unwrap_err();
    assert!(matches!(e, LoadError::Read { .. }), "{e}");
    assert!(e.to_string().contains("nope.pem: cannot read"), "{e}");
}

#[test]
fn a_file_without_certificate_or_key_says_so() {
    let made = make(&["a.test"]);
    // The key file given as the certificate, and the certificate as the key.
    let swapped = Files {
        cert: made.files.key.clone(),
        key: made.files.cert.clone(),
    };
    let e = load(&swapped, SystemTime::now()).unwrap_err();
    assert!(matches!(e, LoadError::NoCertificate { .. }), "{e}");
    assert!(e.to_string().contains("key.pem: no certificate"), "{e}");

    let no_key = Files {
        cert: made.files.cert.clone(),
        key: made.files.cert.clone(),
    };
    let e = load(&no_key, SystemTime::now()).unwrap_err();
    assert!(matches!(e, LoadError::NoKey { .. }), "{e}");
    assert!(e.to_string().contains("cert.pem: no private key"), "{e}");
}

#[test]
fn a_key_of_another_certificate_is_refused_naming_both_files() {
    let a = make(&["a.test"]);
    let b = make(&["b.test"]);
    let mixed = Files {
        cert: a.files.cert.clone(),
        key: b.files.key.clone(),
    };
    let e = load(&mixed, SystemTime::now()).unwrap_err();
    assert!(matches!(e, LoadError::Mismatch { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&b.files.key.display().to_string())
            && text.contains(&a.files.cert.display().to_string()),
        "{text}"
    );
}

/// openssl's `ecparam -genkey` writes SEC1 ("EC PRIVATE KEY"), not PKCS#8; PKCS#1 RSA goes
/// through the same PEM reader (ring cannot generate RSA keys for a test).
#[test]
fn sec1_ec_keys_are_read() {
    let made = make(&["a.test"]);
    let key = KeyPair::generate().unwrap();
    let cert = params(&["a.test"]).self_signed(&key).unwrap();
    std::fs::write(&made.files.cert, cert.pem()).unwrap();
    let sec1 = pkcs8_inner(&key.serialize_der());
    std::fs::write(&made.files.key, pem("EC PRIVATE KEY", &sec1)).unwrap();
    load(&made.files, SystemTime::now()).unwrap();
}

fn pem(label: &str, der: &[u8]) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The privateKey OCTET STRING of a PKCS#8 PrivateKeyInfo (short-form lengths are enough for
/// P-256, but long forms are handled).
fn pkcs8_inner(der: &[u8]) -> Vec<u8> {
    fn len(der: &[u8], at: &mut usize) -> usize {
        let first = der[*at];
        *at += 1;
        if first < 0x80 {
            return first as usize;
        }
        let n = (first & 0x7f) as usize;
        let mut l = 0;
        for _ in 0..n {
            l = (l << 8) | der[*at] as usize;
            *at += 1;
        }
        l
    }
    let mut at = 1; // SEQUENCE
    len(der, &mut at);
    for _ in 0..2 {
        // version INTEGER, algorithm SEQUENCE: skipped whole.
        at += 1;
        let l = len(der, &mut at);
        at += l;
    }
    assert_eq!(der[at], 0x04, "OCTET STRING");
    at += 1;
    let l = len(der, &mut at);
    der[at..at + l].to_vec()
}

#[test]
fn an_expired_or_future_certificate_is_a_warning_with_its_date() {
    let mut p = params(&["old.test"]);
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2021, 1, 2);
    let made = make_with(p);
    let loaded = load(&made.files, SystemTime::now()).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0].contains("expired on") && loaded.warnings[0].contains("2021"),
        "{:?}",
        loaded.warnings
    );

    let mut p = params(&["new.test"]);
    p.not_before = rcgen::date_time_ymd(2100, 1, 1);
    p.not_after = rcgen::date_time_ymd(2101, 1, 1);
    let made = make_with(p);
    let loaded = load(&made.files, SystemTime::now()).unwrap();
    assert!(
        loaded.warnings[0].contains("not valid before") && loaded.warnings[0].contains("2100"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn load_all_reports_every_bad_file() {
    let a = make(&["a.test"]);
    let missing = Files {
        cert: a.files.cert.with_file_name("x.pem"),
        key: a.files.key.with_file_name("y.pem"),
    };
    let errors = load_all(
        &[missing.clone(), a.files.clone(), missing],
        SystemTime::now(),
    )
    .unwrap_err();
    assert_eq!(errors.len(), 2);
    let ok = load_all(std::slice::from_ref(&a.files), SystemTime::now()).unwrap();
    assert_eq!(ok.named.len(), 1);
}

/// A real handshake over memory: the client's SNI picks the certificate and ALPN h2 wins.
#[test]
fn handshakes_get_the_certificate_of_their_name_and_h2() {
    let a = make(&["a.test"]);
    let b = make(&["b.test"]);
    let store = CertStore::new();
    let loaded = load_all(&[a.files.clone(), b.files.clone()], SystemTime::now()).unwrap();
    store.set_files(loaded.named);
    let server = crate::server::server_config(Arc::clone(&store)).unwrap();

    for (name, files) in [("a.test", &a.files), ("b.test", &b.files)] {
        let (cert, alpn) = handshake(&server, name, &files.cert);
        assert_eq!(cert, pem_der(&files.cert), "{name}");
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    }
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

/// Drives a client and server connection to the end of the handshake; the client trusts only
/// `trust` (the self-signed certificate it expects).
fn handshake(
    server: &Arc<rustls::ServerConfig>,
    name: &str,
    trust: &Path,
) -> (Vec<u8>, Option<Vec<u8>>) {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(trust).unwrap())
        .unwrap();
    let mut client_config = rustls::ClientConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut client =
        rustls::ClientConnection::new(Arc::new(client_config), name.to_owned().try_into().unwrap())
            .unwrap();
    let mut server = rustls::ServerConnection::new(Arc::clone(server)).unwrap();
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
        let mut buf = Vec::new();
        client.write_tls(&mut buf).unwrap();
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets().unwrap();
        let mut buf = Vec::new();
        server.write_tls(&mut buf).unwrap();
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets().unwrap();
    }
    assert!(!client.is_handshaking(), "handshake did not finish");
    let cert = client.peer_certificates().unwrap()[0].to_vec();
    (cert, client.alpn_protocol().map(<[u8]>::to_vec))
}

#[test]
fn a_bad_file_does_not_disturb_the_store() {
    // Reload semantics: load first, swap only when everything loaded.
    let a = make(&["a.test"]);
    let store = CertStore::new();
    store.set_files(
        load_all(std::slice::from_ref(&a.files), SystemTime::now())
            .unwrap()
            .named,
    );
    let broken = Files {
        cert: a.files.cert.clone(),
        key: a.files.cert.clone(),
    };
    assert!(load_all(&[broken], SystemTime::now() + Duration::ZERO).is_err());
    assert!(store.find(Some("a.test")).is_some());
}
