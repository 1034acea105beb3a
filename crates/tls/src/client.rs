//! Client configurations: rouse as a TLS client of HTTPS upstream servers and supervisord.
//! Built once per upstream (at load and reload), never per connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::provider;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("CA file {0}: {1}")]
    CaFile(PathBuf, String),
    #[error("CA file {0} holds no certificate")]
    NoCertificates(PathBuf),
    #[error("TLS client configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Whom to trust: what `tls_ca_file` and `tls_verify` (or supervisord's `ca_file`) say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The web PKI roots built into rouse (webpki-roots), as a browser would.
    WebPki,
    /// Only the CA certificates of this PEM file.
    CaFile(PathBuf),
    /// Anything: the connection is encrypted but the server is not authenticated.
    Nothing,
}

/// A client configuration trusting `trust`, offering `alpn` (e.g. `[b"http/1.1"]`; HTTP/2
/// upstreams ask for `h2`).
pub fn client_config(trust: &Trust, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, ClientError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let mut config = match trust {
        Trust::WebPki => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::CaFile(path) => builder
            .with_root_certificates(ca_roots(path)?)
            .with_no_client_auth(),
        Trust::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The server name a connection sends (SNI) and verifies: a DNS name or an IP address.
pub fn server_name(name: &str) -> Result<ServerName<'static>, ClientError> {
    ServerName::try_from(name.to_owned()).map_err(|e| {
        ClientError::Rustls(rustls::Error::General(format!("server name {name:?}: {e}")))
    })
}

fn ca_roots(path: &Path) -> Result<RootCertStore, ClientError> {
    let fail = |why: String| ClientError::CaFile(path.to_owned(), why);
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ClientError::NoCertificates(path.to_owned()));
    }
    Ok(roots)
}

/// `tls_verify = false`: any certificate is taken, but the handshake's signatures are still
/// checked, so the session is at least with whoever holds that certificate's key.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_built_for_each_kind_of_trust() {
        let alpn: &[&[u8]] = &[b"http/1.1"];
        let web = client_config(&Trust::WebPki, alpn).expect("web pki");
        assert_eq!(web.alpn_protocols, [b"http/1.1".to_vec()]);
        client_config(&Trust::Nothing, &[b"h2"]).expect("no verification");
    }

    #[test]
    fn a_bad_ca_file_says_which_and_why() {
        let dir = std::env::temp_dir().join(format!("rouse-tls-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = client_config(&Trust::CaFile(missing.clone()), &[]).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let e = client_config(&Trust::CaFile(empty), &[]).unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = client_config(&Trust::CaFile(garbage), &[]).unwrap_err();
        assert!(e.to_string().contains("garbage.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn server_names_are_names_or_addresses() {
        assert!(server_name("api.internal").is_ok());
        assert!(server_name("10.0.0.5").is_ok());
        assert!(server_name("bad name").is_err());
    }
}
