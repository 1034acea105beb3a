//! `https://` supervisord urls. supervisord serves no TLS itself (it sits behind a
//! TLS-terminating proxy when an operator wants it), so the other end here is a stand-in: a
//! rustls server answering `supervisor.getState` as supervisord does, with a certificate made
//! by rcgen. The driver must verify it against `ca_file` and refuse one it cannot verify.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rouse_config::{SupervisordConfig, SupervisordUrl, TlsClientConfig};
use rouse_supervisor::Supervisord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const STATE: &str = "<?xml version=\"1.0\"?><methodResponse><params><param><value><struct>\
    <member><name>statecode</name><value><int>1</int></value></member>\
    <member><name>statename</name><value><string>RUNNING</string></value></member>\
    </struct></value></param></params></methodResponse>";

/// A CA (its PEM written to `ca_path`) and a TLS acceptor whose certificate it signed for
/// `localhost`.
fn pki(ca_path: &Path) -> TlsAcceptor {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "supervisord test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    std::fs::write(ca_path, ca.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// Serves XML-RPC over TLS on 127.0.0.1: every call gets supervisord's RUNNING state.
async fn tls_supervisord(acceptor: TlsAcceptor) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(13).any(|w| w == b"</methodCall>") {
                        seen.clear();
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{STATE}",
                            STATE.len()
                        );
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, task)
}

fn config(port: u16, ca_file: &Path) -> SupervisordConfig {
    SupervisordConfig {
        name: "tls".to_owned(),
        url: SupervisordUrl::Http {
            host: "localhost".to_owned(),
            port,
            path: "/RPC2".to_owned(),
        },
        username: None,
        password: None,
        tls: Some(TlsClientConfig {
            ca_file: Some(ca_file.to_owned()),
            verify: true,
            server_name: None,
        }),
        poll_interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn an_https_supervisord_is_verified_against_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let (port, server) = tls_supervisord(pki(&ca)).await;
    let sup = Supervisord::new(&config(port, &ca), vec![]);
    sup.reachable().await.expect("reached over TLS");
    // Again, on the kept-alive TLS connection.
    sup.reachable().await.expect("reached again");
    server.abort();
}

#[tokio::test]
async fn an_https_supervisord_with_an_unknown_certificate_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (port, server) = tls_supervisord(pki(&dir.path().join("theirs.pem"))).await;
    // Another CA than the one that signed the server's certificate.
    let _other = pki(&dir.path().join("ours.pem"));
    let sup = Supervisord::new(&config(port, &dir.path().join("ours.pem")), vec![]);
    let started = tokio::time::Instant::now();
    let e = sup.reachable().await.expect_err("certificate refused");
    let message = e.to_string();
    assert!(
        message.contains("TLS with supervisord \"tls\" at https://localhost:")
            && message.contains("certificate"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "not a hang");
    server.abort();
}
