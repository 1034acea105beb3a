//! A real ACME CA of a test's own: Debian's `pebble` (scripts/test.sh installs it), with
//! `pebble-challtestsrv` as its DNS server so that any name resolves to 127.0.0.1, in a
//! temporary directory, on loopback ports.
//!
//! Pebble validates HTTP-01 by fetching `http://NAME:PORT/.well-known/acme-challenge/TOKEN`,
//! where PORT is its `httpPort`: give it the port rouse listens on ([`Pebble::start`]).
//! Its own HTTPS certificate is made here, signed by a test CA written to [`Pebble::ca_file`]
//! (what rouse's `ca_file` must name); the root it issues certificates from is new on every
//! run and is read from its management API ([`Pebble::issuing_root`]).
//!
//! `PEBBLE_VA_NOSLEEP=1` (no random wait before validating) and `PEBBLE_WFE_NONCEREJECT=0`
//! (no nonces refused at random) keep runs fast and repeatable. Dropping a [`Pebble`] kills
//! both processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use super::net::unique_port;

/// How long pebble and its DNS server may take to listen.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// Bound of one request to pebble's management API.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A running pebble and its DNS server.
pub struct Pebble {
    dir: TempDir,
    listen: SocketAddr,
    management: SocketAddr,
    pebble_child: Child,
    dns_child: Child,
}

impl Pebble {
    /// Starts pebble-challtestsrv (DNS: every name is 127.0.0.1) and pebble, validating
    /// HTTP-01 on `http_port`; returns once both listen.
    pub async fn start(http_port: u16) -> Pebble {
        Pebble::start_at(http_port, ([127, 0, 0, 1], unique_port()).into()).await
    }

    /// [`Pebble::start`] with its ACME API on `listen`: a new pebble where an earlier one was
    /// (it keeps no state: every account and order of the earlier one is gone).
    pub async fn start_at(http_port: u16, listen: SocketAddr) -> Pebble {
        let dir = tempfile::Builder::new()
            .prefix("pebble")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let d = dir.path();
        let (cert, key) = write_test_pki(d);

        let dns: SocketAddr = ([127, 0, 0, 1], unique_port()).into();
        let dns_management: SocketAddr = ([127, 0, 0, 1], unique_port()).into();
        let dns_child = spawn(
            Command::new("pebble-challtestsrv")
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-dns01", &dns.to_string()])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &dns_management.to_string()]),
            &d.join("challtestsrv.log"),
        );

        let management: SocketAddr = ([127, 0, 0, 1], unique_port()).into();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": listen.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": cert.display().to_string(),
                "privateKey": key.display().to_string(),
                "httpPort": http_port,
                "tlsPort": unique_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        let config_path = d.join("pebble-config.json");
        std::fs::write(&config_path, config.to_string())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
        let pebble_child = spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &dns.to_string()])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .current_dir(d),
            &d.join("pebble.log"),
        );
        let mut pebble = Pebble {
            dir,
            listen,
            management,
            pebble_child,
            dns_child,
        };
        for addr in [dns_management, listen, management] {
            pebble.wait_listening(addr).await;
        }
        pebble
    }

    /// Kills both processes and waits for them to exit, so their ports are free again.
    pub async fn stop(mut self) {
        let _ = self.pebble_child.kill().await;
        let _ = self.dns_child.kill().await;
    }

    /// Where its ACME API listens.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    /// The CA that signed pebble's own HTTPS certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// pebble's and its DNS server's output so far, for failure messages.
    pub fn logs(&self) -> String {
        ["pebble.log", "challtestsrv.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
                format!("--- {f}\n{text}")
            })
            .collect()
    }

    /// The root certificate pebble issues from (its management API's `/roots/0`).
    pub async fn issuing_root(&self) -> CertificateDer<'static> {
        let url = format!("https://{}/roots/0", self.management);
        let pem = self.get(&url).await;
        CertificateDer::from_pem_slice(&pem)
            .unwrap_or_else(|e| panic!("{url} is not a PEM certificate ({e}): {pem:?}"))
    }

    async fn get(&self, url: &str) -> Bytes {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.ca_file()).expect("test CA file") {
            roots.add(cert.expect("test CA")).expect("test CA is a CA");
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client: Client<_, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(connector);
        let uri: http::Uri = url.parse().expect("a URL");
        let answer = timeout(CALL_TIMEOUT, async {
            let response = client.get(uri).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        })
        .await;
        match answer {
            Ok(Ok((status, body))) if status.is_success() => body,
            Ok(Ok((status, body))) => panic!("GET {url}: {status}: {body:?}"),
            Ok(Err(e)) => panic!("GET {url}: {e}"),
            Err(_) => panic!("GET {url}: no answer within {CALL_TIMEOUT:?}"),
        }
    }

    async fn wait_listening(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Ok(_)) = timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
                return;
            }
            let exited = [&mut self.pebble_child, &mut self.dns_child]
                .into_iter()
                .find_map(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!("a pebble process exited ({status}):\n{}", self.logs());
            }
            if Instant::now() >= deadline {
                panic!(
                    "pebble did not listen on {addr} within {READY_WITHIN:?}:\n{}",
                    self.logs()
                );
            }
            sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Spawns `command` with its output to `log`, killed when dropped.
fn spawn(command: &mut Command, log: &Path) -> Child {
    let out = std::fs::File::create(log)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let err = out.try_clone().expect("a second handle on the log");
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {:?} (is Debian's pebble installed?): {e}",
                command.as_std().get_program()
            )
        })
}

/// A test CA (`ca.pem`) and pebble's HTTPS certificate for 127.0.0.1 and localhost signed by
/// it; returns the certificate's and key's paths.
fn write_test_pki(dir: &Path) -> (PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rouse test CA for pebble");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("a CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let key = rcgen::KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = params
        .signed_by(&key, &issuer)
        .expect("pebble's certificate");

    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    };
    write("ca.pem", ca_cert.pem());
    (
        write("cert.pem", cert.pem()),
        write("key.pem", key.serialize_pem()),
    )
}
