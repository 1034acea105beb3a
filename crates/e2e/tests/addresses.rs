//! How rouse reaches servers besides `IP:PORT`: a unix socket, a host name it resolves, and
//! HTTPS (verified against a CA file). Real backend processes started on demand by the
//! embedded supervisor, real sockets, real certificates (made here with rcgen).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{WAIT, client, embedded_upstream, free_addrs, get, log::logged, state, url};
use rouse::Rouse;
use tokio::time::Instant;

fn capture_log() {
    common::log::capture(|| tracing_subscriber::EnvFilter::new("info,rouse::access=off"));
}

async fn start(toml: &str) -> Rouse {
    Rouse::start(common::config(toml))
        .await
        .expect("rouse starts")
}

/// An embedded server section running the test backend with `args`, reached at `address`.
fn server(address: &str, args: &[&str]) -> String {
    let mut argv = vec![env!("CARGO_BIN_EXE_rouse-test-backend").to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[[upstream.server]]\naddress = \"{address}\"\ncommand = [{}]\n",
        argv.join(", ")
    )
}

// === unix sockets ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_a_unix_socket_is_woken_on_demand_and_a_stale_socket_file_is_not_ready() {
    capture_log();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("app.sock");
    // What a killed app server leaves behind: the socket file, with nobody listening on it.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind a socket to leave stale"));
    assert!(path.exists(), "the stale socket file is there");
    let address = format!("unix:{}", path.display());
    let p = path.to_str().expect("utf-8 path");
    // The backend waits before it binds: all that time the stale file answers ECONNREFUSED.
    let toml = embedded_upstream(
        "app",
        &[],
        "",
        &[server(
            &address,
            &["--unix", p, "--id", "u0", "--delay-listen", "400"],
        )],
    );
    let rouse = start(&toml).await;
    assert_eq!(state(&rouse, 0, 0), "stopped", "nothing runs before demand");

    let sent = Instant::now();
    let a = get(&client(), &url(rouse.addr(), "/"), &[]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "u0"), "{a:?}");
    assert!(
        sent.elapsed() >= Duration::from_millis(400),
        "held until the backend listened ({:?}), not sent to the stale socket",
        sent.elapsed()
    );
    assert_eq!(state(&rouse, 0, 0), "ready");
    // Keep-alive and new connections alike go over the socket.
    for _ in 0..5 {
        let a = get(&client(), &url(rouse.addr(), "/"), &[]).await;
        assert_eq!((a.status, a.body.as_str()), (200, "u0"), "{a:?}");
    }
    let table = rouse.table();
    assert_eq!(table.upstreams[0].servers[0].address().to_string(), address);
    rouse.shutdown().await;
}

// === host names ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_named_by_host_name_is_woken_on_demand() {
    capture_log();
    let [addr]: [SocketAddr; 1] = free_addrs();
    let address = format!("localhost:{}", addr.port());
    let listen = addr.to_string();
    let toml = embedded_upstream(
        "named",
        &[],
        "resolve_interval = \"1s\"",
        &[server(&address, &["--listen", &listen, "--id", "n0"])],
    );
    let rouse = start(&toml).await;
    let table = rouse.table();
    let resolved = table.upstreams[0].servers[0].resolved();
    assert!(
        resolved.contains(&addr),
        "localhost was resolved at start: {resolved:?}"
    );
    assert_eq!(state(&rouse, 0, 0), "stopped");

    let a = get(&client(), &url(rouse.addr(), "/"), &[]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "n0"), "{a:?}");
    assert_eq!(table.upstreams[0].servers[0].address().to_string(), address);
    rouse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_resolves_the_names_it_brings_before_they_take_requests() {
    capture_log();
    let a = rouse_e2e::spawn_in_process("a").await;
    let b = rouse_e2e::spawn_in_process("b").await;
    let upstream = |address: String| {
        format!(
            "[[upstream]]\nname = \"app\"\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"{address}\"\n"
        )
    };
    let rouse = start(&upstream(a.addr().to_string())).await;
    let c = client();
    let got = get(&c, &url(rouse.addr(), "/"), &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, "a"), "{got:?}");

    let named = format!("localhost:{}", b.addr().port());
    assert!(
        rouse
            .reload(&common::config(&upstream(named)))
            .await
            .is_empty()
    );
    // At once: the new static server's name was resolved by the reload itself.
    let got = get(&c, &url(rouse.addr(), "/"), &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, "b"), "{got:?}");
    rouse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_leaves_its_server_not_ready_and_says_why() {
    capture_log();
    // `.invalid` never resolves (RFC 6761).
    let toml = embedded_upstream(
        "nowhere",
        &[],
        "start_timeout = \"1s\"",
        &[server("app.nowhere.invalid:8000", &["--id", "x"])],
    );
    let rouse = start(&toml).await;
    let said = logged(&["WARN", "app.nowhere.invalid:8000", "does not resolve"]);
    assert!(!said.is_empty(), "the failed lookup at start is logged");
    let sent = Instant::now();
    let a = get(&client(), &url(rouse.addr(), "/"), &[]).await;
    assert_eq!((a.status, a.kind.as_str()), (503, "start-timeout"), "{a:?}");
    assert!(sent.elapsed() < WAIT);
    assert_ne!(state(&rouse, 0, 0), "ready");
    rouse.shutdown().await;
}

// === HTTPS upstreams ===

/// A CA, and a server certificate it signed for `localhost` and 127.0.0.1, in PEM files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path, name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("rouse test CA {name}"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    let files = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&files.ca, ca.pem()).expect("write CA");
    std::fs::write(&files.cert, cert.pem()).expect("write certificate");
    std::fs::write(&files.key, key.serialize_pem()).expect("write key");
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_woken_and_verified_and_a_wrong_ca_gives_a_quick_502() {
    capture_log();
    let dir = tempfile::tempdir().expect("temp dir");
    let good = pki(dir.path(), "good");
    let other = pki(dir.path(), "other");
    let [addr]: [SocketAddr; 1] = free_addrs();
    let port = addr.port();
    let (cert, key) = (good.cert.to_str().unwrap(), good.key.to_str().unwrap());
    let listen = addr.to_string();
    let secure = embedded_upstream(
        "secure",
        &["secure.test"],
        &format!(
            "tls_ca_file = {:?}\nready = \"http:/\"",
            good.ca.display().to_string()
        ),
        &[server(
            &format!("https://localhost:{port}"),
            &[
                "--listen",
                &listen,
                "--id",
                "tls0",
                "--tls-cert",
                cert,
                "--tls-key",
                key,
            ],
        )],
    );
    // The same server, trusted through another CA: rouse must refuse its certificate.
    let wrong = format!(
        "[[upstream]]\nname = \"wrong\"\nhosts = [\"wrong.test\"]\nsupervisor = \"none\"\n\
         tls_ca_file = {:?}\n[[upstream.server]]\naddress = \"https://127.0.0.1:{port}\"\n",
        other.ca.display().to_string()
    );
    // tls_verify = false: encrypted, but any certificate is taken.
    let insecure = format!(
        "[[upstream]]\nname = \"insecure\"\nhosts = [\"insecure.test\"]\nsupervisor = \"none\"\n\
         tls_verify = false\n[[upstream.server]]\naddress = \"127.0.0.1:{port}\"\ntls = true\n"
    );
    let rouse = start(&format!("{secure}\n{wrong}\n{insecure}")).await;
    let c = client();

    let a = get(&c, &url(rouse.addr(), "/"), &[("host", "secure.test")]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "tls0"), "{a:?}");
    assert_eq!(state(&rouse, 0, 0), "ready");
    let a = get(
        &c,
        &url(rouse.addr(), "/headers"),
        &[("host", "secure.test")],
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");

    let sent = Instant::now();
    let a = get(&c, &url(rouse.addr(), "/"), &[("host", "wrong.test")]).await;
    assert_eq!(a.status, 502, "{a:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "refused at once, not a hang: {:?}",
        sent.elapsed()
    );
    let said = logged(&[
        "server unreachable",
        "TLS with https://127.0.0.1",
        "certificate",
    ]);
    assert!(!said.is_empty(), "the log says the certificate was refused");
    let a = get(&c, &url(rouse.addr(), "/"), &[("host", "insecure.test")]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "tls0"), "{a:?}");
    // The good upstream is untouched by the other's failure.
    let a = get(&c, &url(rouse.addr(), "/"), &[("host", "secure.test")]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "tls0"), "{a:?}");
    rouse.shutdown().await;
}

/// `protocol = "h2"`: HTTP/2 inside TLS, chosen by ALPN. The server is woken on demand,
/// verified against its CA, and the requests reach it as HTTP/2, however the client spoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_upstream_over_tls_is_woken_and_reached_over_http2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = pki(dir.path(), "good");
    let [addr]: [SocketAddr; 1] = free_addrs();
    let (cert, key) = (good.cert.to_str().unwrap(), good.key.to_str().unwrap());
    let listen = addr.to_string();
    let upstream = embedded_upstream(
        "secure",
        &[],
        &format!(
            "protocol = \"h2\"\ntls_ca_file = {:?}",
            good.ca.display().to_string()
        ),
        &[server(
            &format!("https://localhost:{}", addr.port()),
            &[
                "--listen",
                &listen,
                "--id",
                "h2tls",
                "--tls-cert",
                cert,
                "--tls-key",
                key,
            ],
        )],
    );
    let rouse = start(&upstream).await;
    let c = client();
    let a = get(&c, &url(rouse.addr(), "/"), &[]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "h2tls"), "{a:?}");
    for _ in 0..3 {
        let a = get(&c, &url(rouse.addr(), "/inspect"), &[]).await;
        assert_eq!(a.status, 200, "{a:?}");
        assert!(a.body.contains("\"version\":\"HTTP/2.0\""), "{}", a.body);
    }
    assert_eq!(state(&rouse, 0, 0), "ready");
    rouse.shutdown().await;
}
