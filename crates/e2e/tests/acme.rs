//! `[proxy.acme]` against a real ACME CA: Debian's pebble validates HTTP-01 by fetching the
//! challenge from rouse's plain listener; the certificate lands in `dir` and in the store; a
//! second rouse on the same `dir` serves it without ordering; a CA that cannot be reached is
//! logged, retried, and costs nothing else.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::https::get;
use common::{client, static_upstream, url};
use rouse::Rouse;
use rouse_e2e::{Pebble, spawn_in_process, unique_port, wait_until};
use rouse_proxy::Kind;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{ServerName, UnixTime};

const DOMAIN: &str = "acme.rouse.test";
const WWW: &str = "www.acme.rouse.test";
/// Issuance on loopback takes well under a second; the bound allows for a loaded machine.
const ISSUED_WITHIN: Duration = Duration::from_secs(60);

fn acme_config(
    port: u16,
    directory: &str,
    ca_file: &Path,
    dir: &Path,
    backend: std::net::SocketAddr,
) -> rouse_config::Config {
    let text = format!(
        "[proxy]\nlisten = [\"127.0.0.1:{port}\"]\nlisten_tls = [\"127.0.0.1:0\"]\n\n[proxy.acme]\nemail = \"ops@rouse.test\"\n\
         directory = \"{directory}\"\ndomains = [\"{DOMAIN}\", \"{WWW}\"]\ndir = \"{}\"\n\
         ca_file = \"{}\"\n\n{}",
        dir.display(),
        ca_file.display(),
        static_upstream("app", &[], "", &[backend]),
    );
    rouse_config::parse("acme.toml", &text)
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{text}"))
}

/// Waits for the first certificate; fails at once, with the reason and pebble's log, if an
/// order fails (the next attempt would be a minute away).
async fn wait_issued(rouse: &Rouse, pebble: &Pebble) {
    let deadline = tokio::time::Instant::now() + ISSUED_WITHIN;
    loop {
        let status = rouse.acme_status().expect("acme is configured");
        if status.issued >= 1 {
            return;
        }
        if status.failures > 0 || tokio::time::Instant::now() >= deadline {
            panic!("no certificate: {status:?}\n{}", pebble.logs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_obtained_over_http01_stored_served_and_reused() {
    let backend = spawn_in_process("app").await;
    let port = unique_port();
    let pebble = Pebble::start(port).await;
    let dir = tempfile::tempdir().unwrap();
    let acme_dir = dir.path().join("acme");
    let config = acme_config(
        port,
        &pebble.directory(),
        &pebble.ca_file(),
        &acme_dir,
        backend.addr(),
    );

    let rouse = Rouse::start(config).await.expect("rouse starts");
    assert!(
        rouse.cert_store().is_empty(),
        "nothing to serve before the order"
    );
    wait_issued(&rouse, &pebble).await;

    // Served for both names, issued by pebble's root, for these names, valid now.
    let store = rouse.cert_store();
    let served = store
        .find(Some(DOMAIN))
        .expect("a certificate for the domain");
    let www = store.find(Some(WWW)).expect("a certificate for www");
    assert!(Arc::ptr_eq(&served, &www), "one certificate for both names");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(pebble.issuing_root().await)
        .expect("pebble's root");
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        rouse_tls::provider(),
    )
    .build()
    .expect("a verifier");
    for name in [DOMAIN, WWW] {
        verifier
            .verify_server_cert(
                &served.cert[0],
                &served.cert[1..],
                &ServerName::try_from(name).unwrap(),
                &[],
                UnixTime::now(),
            )
            .unwrap_or_else(|e| panic!("the certificate does not verify for {name}: {e}"));
    }
    // Served by the TLS listener to clients that trust pebble's root, for each name.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(pebble.issuing_root().await)
        .expect("pebble's root");
    let mut tls = rustls::ClientConfig::builder_with_provider(rouse_tls::provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let https = rouse.addr_of(Kind::Tls).expect("a TLS listener");
    for name in [DOMAIN, WWW] {
        let got = get(&connector, https, name, "/").await;
        assert_eq!(got.status, 200, "{name}: {}", got.body);
        assert_eq!(
            got.cert,
            served.cert[0].to_vec(),
            "{name}: the ACME certificate"
        );
    }
    // The proxy still proxies, and no challenge is left pending.
    let answer = client()
        .get(url(rouse.addr(), "/"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), 200);

    // Stored: the chain, the key (0600) and the account (0600).
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let cert_file = acme_dir.join(format!("{DOMAIN}.crt"));
    let key_file = acme_dir.join(format!("{DOMAIN}.key"));
    assert!(
        std::fs::read_to_string(&cert_file)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert_eq!(mode(&key_file), 0o600);
    let accounts: Vec<_> = std::fs::read_dir(&acme_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("account-")
        })
        .collect();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(mode(&accounts[0]), 0o600);
    let status = rouse.acme_status().unwrap();
    assert_eq!((status.orders, status.issued, status.failures), (1, 1, 0));
    let renew_at = status.renew_at.expect("a renewal date");
    assert!(
        renew_at > SystemTime::now() + Duration::from_secs(86_400),
        "{status:?}"
    );
    rouse.shutdown().await;

    // A second rouse on the same dir serves the stored certificate from the start, and its loop
    // looks at it and orders nothing. It listens on another port: the first one's may still be
    // held for a moment by a process another test is spawning (a forked child keeps a copy of
    // every descriptor until its exec closes them), which made the rebind fail once in CI-like
    // runs. An order it should not make would fail there (pebble validates on `port`), and is
    // caught below all the same.
    let again_config = acme_config(
        unique_port(),
        &pebble.directory(),
        &pebble.ca_file(),
        &acme_dir,
        backend.addr(),
    );
    let rouse = Rouse::start(again_config)
        .await
        .expect("rouse starts again");
    let again = rouse
        .cert_store()
        .find(Some(DOMAIN))
        .expect("served from dir at once");
    assert_eq!(again.cert[0], served.cert[0], "the same certificate");
    wait_until("the ACME loop looked", Duration::from_secs(10), || async {
        rouse.acme_status().unwrap().checks >= 1
    })
    .await;
    let status = rouse.acme_status().unwrap();
    assert!(status.loaded, "{status:?}");
    assert_eq!(status.orders, 0, "no new order: {status:?}");
    rouse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_due_for_renewal_is_served_until_its_successor_is_in() {
    let backend = spawn_in_process("app").await;
    let port = unique_port();
    let pebble = Pebble::start(port).await;
    let dir = tempfile::tempdir().unwrap();
    let acme_dir = dir.path().join("acme");
    // What an earlier run left: a certificate for both names that expires in two days, well
    // inside `renew_before` (30 days).
    std::fs::create_dir_all(&acme_dir).unwrap();
    let (chain, key) = expiring_certificate(&[DOMAIN, WWW], 2);
    let cert_file = acme_dir.join(format!("{DOMAIN}.crt"));
    std::fs::write(&cert_file, &chain).unwrap();
    std::fs::write(acme_dir.join(format!("{DOMAIN}.key")), &key).unwrap();
    let config = acme_config(
        port,
        &pebble.directory(),
        &pebble.ca_file(),
        &acme_dir,
        backend.addr(),
    );

    let rouse = Rouse::start(config).await.expect("rouse starts");
    // Served from the start: the order takes several round trips to pebble, this does not.
    let old = rouse
        .cert_store()
        .find(Some(DOMAIN))
        .expect("the stored certificate, at once");
    let old_der = rustls::pki_types::CertificateDer::from_pem_slice(chain.as_bytes()).unwrap();
    assert_eq!(
        old.cert[0], old_der,
        "the stored certificate is what is served first"
    );
    assert!(rouse.acme_status().unwrap().loaded);

    wait_issued(&rouse, &pebble).await;
    let new = rouse
        .cert_store()
        .find(Some(DOMAIN))
        .expect("a certificate");
    assert_ne!(new.cert[0], old.cert[0], "replaced by the renewed one");
    let on_disk = std::fs::read(&cert_file).unwrap();
    let on_disk = rustls::pki_types::CertificateDer::from_pem_slice(&on_disk).unwrap();
    assert_eq!(on_disk, new.cert[0], "and stored");
    let status = rouse.acme_status().unwrap();
    assert_eq!((status.orders, status.issued), (1, 1), "{status:?}");
    rouse.shutdown().await;
}

/// A self-signed certificate for `names` (PEM chain, PEM key), valid from 2000 until
/// `days` days from now.
fn expiring_certificate(names: &[&str], days: u64) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let today = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let (y, m, d) = civil_date(today + days);
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_date(days: u64) -> (i32, u8, u8) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_the_ca_forgot_is_replaced() {
    let backend = spawn_in_process("app").await;
    let port = unique_port();
    let pebble = Pebble::start(port).await;
    let listen = pebble.listen();
    let dir = tempfile::tempdir().unwrap();
    let acme_dir = dir.path().join("acme");
    let config = acme_config(
        port,
        &pebble.directory(),
        &pebble.ca_file(),
        &acme_dir,
        backend.addr(),
    );
    let rouse = Rouse::start(config).await.expect("rouse starts");
    wait_issued(&rouse, &pebble).await;
    rouse.shutdown().await;
    let account_file = std::fs::read_dir(&acme_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("account-")
        })
        .expect("an account file");
    let first_account = std::fs::read(&account_file).unwrap();

    // A new pebble at the same address knows no account; the certificate is gone too, so the
    // next start orders with the stored account, is refused, and makes a new one.
    // rouse and pebble's validations move to another port (the directory stays where it was):
    // the first rouse's may still be held for a moment by a child another test is spawning.
    pebble.stop().await;
    let port = unique_port();
    let pebble = Pebble::start_at(port, listen).await;
    std::fs::remove_file(acme_dir.join(format!("{DOMAIN}.crt"))).unwrap();
    let config = acme_config(
        port,
        &pebble.directory(),
        &pebble.ca_file(),
        &acme_dir,
        backend.addr(),
    );
    let rouse = Rouse::start(config).await.expect("rouse starts again");
    wait_issued(&rouse, &pebble).await;
    assert!(rouse.cert_store().find(Some(DOMAIN)).is_some());
    let status = rouse.acme_status().unwrap();
    assert_eq!(
        (status.orders, status.failures),
        (1, 0),
        "recovered within the one order"
    );
    assert_ne!(
        std::fs::read(&account_file).unwrap(),
        first_account,
        "a new account"
    );
    rouse.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_directory_is_logged_and_retried_without_crashing() {
    common::log::capture(|| tracing_subscriber::EnvFilter::new("rouse_tls=info"));
    let backend = spawn_in_process("app").await;
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there.
    let ca_port = unique_port();
    let directory = format!("https://127.0.0.1:{ca_port}/dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, throwaway_ca()).unwrap();
    let config = acme_config(
        unique_port(),
        &directory,
        &ca,
        &dir.path().join("acme"),
        backend.addr(),
    );
    let rouse = Rouse::start(config.clone()).await.expect("rouse starts");

    let status = wait_until("a failed attempt", Duration::from_secs(30), || async {
        rouse.acme_status().filter(|s| s.failures >= 1)
    })
    .await;
    let error = status.last_error.clone().unwrap_or_default();
    assert!(!error.is_empty(), "{status:?}");
    assert_eq!(status.retry_in, Some(Duration::from_secs(60)), "{status:?}");
    assert!(rouse.cert_store().is_empty());
    assert!(
        error.contains(&directory) && error.contains("refused"),
        "{error}"
    );
    let lines = common::log::logged(&[
        "WARN",
        "could not obtain a certificate",
        &directory,
        "Connection refused",
        "retry_in=60s",
    ]);
    assert_eq!(
        lines.len(),
        1,
        "the failure is logged with its reason: {lines:?}"
    );

    // rouse serves on.
    let answer = client()
        .get(url(rouse.addr(), "/"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), 200);

    // A reload looks again at once: a second attempt, and a longer wait after it.
    assert!(rouse.reload(&config).await.is_empty());
    let status = wait_until("a second attempt", Duration::from_secs(30), || async {
        rouse.acme_status().filter(|s| s.failures >= 2)
    })
    .await;
    assert_eq!(
        status.retry_in,
        Some(Duration::from_secs(120)),
        "{status:?}"
    );
    assert_eq!(status.issued, 0);
    rouse.shutdown().await;
}

/// Any CA certificate will do for a directory nothing answers at.
fn throwaway_ca() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}
