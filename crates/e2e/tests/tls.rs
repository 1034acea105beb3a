//! TLS termination end to end: a CA and leaf certificates made here (rcgen), rouse started from
//! a real config file on 127.0.0.1:0, and a rustls client (ring) that sends SNI and ALPN and
//! shows the certificate it got.
//!
//! - HTTPS h1 and h2 by ALPN, two names each getting its own certificate, and
//!   `X-Forwarded-Proto: https` at the backend;
//! - certificates swapped by reload under load with no failed request; a bad file refuses the
//!   reload and the old certificate stays;
//! - `redirect_https`: 308 with the right Location, ACME challenges still answered;
//! - a unix socket listener.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::https::{get, https_get};
use common::{WAIT, static_upstream};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rouse::Rouse;
use rouse_e2e::spawn_in_process;
use rouse_proxy::Kind;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A test CA, and where its leaves are written.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rouse test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki {
            ca,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A leaf for `name`, written to `NAME.pem` and `NAME.key`; returns its DER.
    fn leaf(&self, name: &str) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    fn client(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(rouse_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // Every connection a full handshake: a resumed session shows the certificate of the
        // session it resumes, not the one the server would now send.
        config.resumption = rustls::client::Resumption::disabled();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// Writes `rouse.toml` with `proxy` keys and a `[[proxy.tls]]` per name (relative paths:
    /// they are resolved against the file's directory), and starts rouse from it.
    async fn start(&self, proxy: &str, names: &[&str], upstreams: &str) -> Rouse {
        let mut text = format!("[proxy]\n{proxy}\n");
        for n in names {
            text.push_str(&format!(
                "[[proxy.tls]]\ncert = \"{n}.pem\"\nkey = \"{n}.key\"\n"
            ));
        }
        text.push_str(upstreams);
        let file = self.path("rouse.toml");
        std::fs::write(&file, &text).unwrap();
        let config = rouse_config::load(&file)
            .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{text}"));
        Rouse::start(config).await.expect("rouse starts")
    }
}

/// A header as the test backend's `/inspect` saw it.
fn inspected(body: &str, header: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(body).expect("inspect answers JSON");
    json["headers"][header].as_str().map(str::to_owned)
}

const TLS_PROXY: &str = "listen = [\"127.0.0.1:0\"]\nlisten_tls = [\"127.0.0.1:0\"]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_h1_and_h2_by_alpn_each_name_with_its_own_certificate() {
    let backend = spawn_in_process("b").await;
    let pki = Pki::new();
    let a = pki.leaf("a.test");
    let b = pki.leaf("b.test");
    let rouse = pki
        .start(
            TLS_PROXY,
            &["a.test", "b.test"],
            &static_upstream("s", &[], "", &[backend.addr()]),
        )
        .await;
    let tls = rouse.addr_of(Kind::Tls).expect("a TLS listener");

    for (name, der) in [("a.test", &a), ("b.test", &b)] {
        for (offer, want) in [
            (&[&b"h2"[..], b"http/1.1"][..], http::Version::HTTP_2),
            (&[&b"http/1.1"[..]][..], http::Version::HTTP_11),
        ] {
            let got = get(&pki.client(offer), tls, name, "/inspect").await;
            assert_eq!(got.status, 200, "{name}: {}", got.body);
            assert_eq!(&got.cert, der, "{name} gets its own certificate");
            assert_eq!(got.version, want, "{name}");
            assert_eq!(got.alpn.as_deref(), Some(offer[0]), "{name}");
            assert_eq!(
                inspected(&got.body, "x-forwarded-proto").as_deref(),
                Some("https")
            );
            assert_eq!(inspected(&got.body, "host").as_deref(), Some(name));
        }
    }
    // The plain listener of the same rouse still says http.
    let plain = rouse.addr_of(Kind::Plain).unwrap();
    let body = common::client()
        .get(common::url(plain, "/inspect"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        inspected(&body, "x-forwarded-proto").as_deref(),
        Some("http")
    );
    rouse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_swapped_by_reload_under_load_fails_no_request() {
    let backend = spawn_in_process("b").await;
    let pki = Pki::new();
    let old = pki.leaf("a.test");
    pki.leaf("b.test");
    let rouse = pki
        .start(
            TLS_PROXY,
            &["a.test", "b.test"],
            &static_upstream("s", &[], "", &[backend.addr()]),
        )
        .await;
    let tls = rouse.addr_of(Kind::Tls).unwrap();
    let connector = pki.client(&[b"h2", b"http/1.1"]);

    // A keep-alive connection opened before the reload must still work after it.
    let tcp = TcpStream::connect(tls).await.unwrap();
    let kept = pki
        .client(&[b"http/1.1"])
        .connect(ServerName::try_from("a.test").unwrap(), tcp)
        .await
        .unwrap();
    let (mut kept, kept_conn) = hyper::client::conn::http1::handshake(TokioIo::new(kept))
        .await
        .unwrap();
    tokio::spawn(kept_conn);

    // 4 clients, a new connection (so a new handshake) for every request.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let new_seen = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for n in 0..4 {
        let (stop, failures, done, new_seen) = (
            Arc::clone(&stop),
            Arc::clone(&failures),
            Arc::clone(&done),
            Arc::clone(&new_seen),
        );
        let connector = connector.clone();
        let old = old.clone();
        let name = if n % 2 == 0 { "a.test" } else { "b.test" };
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match timeout(WAIT, https_get(&connector, tls, name, "/")).await {
                    Ok(Ok(got)) if got.status == 200 => {
                        done.fetch_add(1, Ordering::Relaxed);
                        if name == "a.test" && got.cert != old {
                            new_seen.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Ok(got)) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{}: {}", got.status, got.body)),
                    Ok(Err(e)) => failures.lock().unwrap().push(e),
                    Err(_) => failures.lock().unwrap().push("timed out".into()),
                }
            }
        }));
    }
    wait_for_count(&done, 50).await;
    // About 2 s of load in all: one before the swap, one after.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let new = pki.leaf("a.test");
    assert_ne!(new, old);
    let reloaded = rouse.reload_file().await.expect("the reload is applied");
    assert!(
        reloaded.not_applied.is_empty(),
        "{:?}",
        reloaded.not_applied
    );
    let at_reload = done.load(Ordering::Relaxed);
    wait_for_count(&done, at_reload + 100).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(new_seen.load(Ordering::Relaxed) > 0);
    let got = get(&connector, tls, "a.test", "/").await;
    assert_eq!(got.cert, new, "new handshakes get the new certificate");

    let resp = kept
        .send_request(
            http::Request::get("/")
                .header("host", "a.test")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .expect("the connection opened before the reload still serves");
    assert_eq!(resp.status(), 200);
    rouse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_file_refuses_the_reload_and_the_old_one_stays() {
    let backend = spawn_in_process("b").await;
    let pki = Pki::new();
    let old = pki.leaf("a.test");
    let rouse = pki
        .start(
            TLS_PROXY,
            &["a.test"],
            &static_upstream("s", &[], "", &[backend.addr()]),
        )
        .await;
    let tls = rouse.addr_of(Kind::Tls).unwrap();
    // Another certificate's key in a.test.key.
    pki.leaf("other.test");
    std::fs::copy(pki.path("other.test.key"), pki.path("a.test.key")).unwrap();
    let refused = rouse.reload_file().await.expect_err("refused");
    let text = format!("{refused:?}");
    assert!(
        text.contains("a.test.key") && text.contains("does not match"),
        "{text}"
    );
    let got = get(&pki.client(&[b"h2"]), tls, "a.test", "/").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.cert, old, "the running certificate stays");
    rouse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rouse_refuses_to_start_on_a_missing_certificate_naming_it() {
    let pki = Pki::new();
    let mut text =
        format!("[proxy]\n{TLS_PROXY}\n[[proxy.tls]]\ncert = \"none.pem\"\nkey = \"none.key\"\n");
    text.push_str(&static_upstream(
        "s",
        &[],
        "",
        &["127.0.0.1:9".parse().unwrap()],
    ));
    let file = pki.path("rouse.toml");
    std::fs::write(&file, &text).unwrap();
    let config = rouse_config::load(&file).unwrap();
    let e = Rouse::start(config).await.err().expect("refused");
    let e = e.to_string();
    assert!(
        e.contains(&pki.path("none.pem").display().to_string()) && e.contains("cannot read"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_https_answers_308_and_still_answers_acme_challenges() {
    let backend = spawn_in_process("b").await;
    let pki = Pki::new();
    pki.leaf("a.test");
    let rouse = pki
        .start(
            &format!("{TLS_PROXY}\nredirect_https = [\"127.0.0.1:0\"]"),
            &["a.test"],
            &static_upstream("s", &[], "", &[backend.addr()]),
        )
        .await;
    let tls_port = rouse.addr_of(Kind::Tls).unwrap().port();
    let redirect = rouse.addr_of(Kind::Redirect).expect("a redirect listener");
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(WAIT)
        .no_proxy()
        .build()
        .unwrap();

    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let r = c
            .request(method.clone(), common::url(redirect, "/a/b?c=1"))
            .header("host", "A.test:80")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 308, "{method}");
        assert_eq!(
            r.headers()["location"],
            format!("https://a.test:{tls_port}/a/b?c=1").as_str()
        );
    }
    assert_eq!(backend.stats().requests, 0, "nothing reaches the backend");

    rouse
        .challenges()
        .insert("tok".into(), "tok.thumbprint".into());
    let r = c
        .get(common::url(redirect, "/.well-known/acme-challenge/tok"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "tok.thumbprint");
    // An unknown token is redirected like anything else.
    let r = c
        .get(common::url(redirect, "/.well-known/acme-challenge/other"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    rouse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_listener_serves() {
    let backend = spawn_in_process("b").await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("rouse.sock");
    let text = format!(
        "[proxy]\nlisten = [\"unix:{}\"]\n{}",
        sock.display(),
        static_upstream("s", &[], "", &[backend.addr()])
    );
    let config = rouse_config::parse("t.toml", &text).unwrap();
    let rouse = Rouse::start(config).await.expect("rouse starts");
    assert!(rouse.addrs().is_empty(), "no TCP listener");

    for _ in 0..2 {
        let body = unix_get(&sock, "/inspect").await;
        assert_eq!(
            inspected(&body, "x-forwarded-for").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            inspected(&body, "x-forwarded-proto").as_deref(),
            Some("http")
        );
    }
    rouse.shutdown().await;
}

async fn unix_get(sock: &Path, path: &str) -> String {
    let stream = timeout(WAIT, tokio::net::UnixStream::connect(sock))
        .await
        .unwrap()
        .expect("connects to the unix socket");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = timeout(
        WAIT,
        send.send_request(
            http::Request::get(path)
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// Waits (bounded) until `count` reaches `n`.
async fn wait_for_count(count: &AtomicUsize, n: usize) {
    rouse_e2e::wait_until("enough requests", WAIT, || async {
        count.load(Ordering::Relaxed) >= n
    })
    .await;
}

/// A client that connects to the TLS port and never sends its ClientHello is closed once
/// `client_header_timeout` has passed since accept, as a silent plain client is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tls_client_is_closed_after_client_header_timeout() {
    use tokio::io::AsyncReadExt;
    let pki = Pki::new();
    pki.leaf("a.test");
    let rouse = pki
        .start(
            &format!("{TLS_PROXY}\nclient_header_timeout = \"300ms\""),
            &["a.test"],
            &static_upstream("s", &[], "", &["127.0.0.1:9".parse().unwrap()]),
        )
        .await;
    let tls = rouse.addr_of(Kind::Tls).unwrap();
    let started = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(tls).await.unwrap();
    let mut buf = [0u8; 16];
    let read = timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("closed within the bound");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "not before the timeout: {:?}",
        started.elapsed()
    );
    rouse.shutdown().await;
}
