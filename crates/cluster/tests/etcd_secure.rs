//! The etcd shell against a real etcd that is secured as a production one would be: TLS
//! (`ca_file`), client certificates required (`cert_file`/`key_file`), and etcd's own users
//! (`user`/`password`). A replica with the right credentials leads; one without them stays
//! `Unreachable`, says why in its log, and retries with backoff rather than spinning.
//!
//! Every wait polls (every 50 ms) for a condition, with a bound.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use common::{A, B, SOON, until};

use etcd_client::{Client, ConnectOptions, Permission, TlsOptions};
use rouse_cluster::{Cluster, ClusterHandle, EtcdState};
use rouse_config::ClusterConfig;
use rouse_e2e::Etcd;
use tokio::time::{Instant, sleep};

/// The least time three tries take: the shell waits 0.5 s, then 1 s, between them. One that
/// spun would have been refused hundreds of times by then.
const THREE_TRIES: Duration = Duration::from_millis(1400);

/// `etcd`'s https URL and its CA; no client certificate, no user.
fn config(etcd: &Etcd) -> ClusterConfig {
    ClusterConfig {
        ca_file: Some(etcd.ca_file()),
        ..common::config(etcd)
    }
}

fn with_client_cert(etcd: &Etcd) -> ClusterConfig {
    ClusterConfig {
        cert_file: Some(etcd.client_cert_file()),
        key_file: Some(etcd.client_key_file()),
        ..config(etcd)
    }
}

fn with_user(etcd: &Etcd, user: &str, password: &str) -> ClusterConfig {
    ClusterConfig {
        user: Some(user.into()),
        password: Some(password.into()),
        ..config(etcd)
    }
}

/// `Ok`, and leading: it connected, took a lease, read, watched and won the campaign.
async fn leads(handle: &ClusterHandle) {
    let id = handle.snapshot().id.clone();
    let snap = until(handle, "Ok and leading", SOON, |s| {
        s.etcd == EtcdState::Ok && s.leader.as_deref() == Some(id.as_str())
    })
    .await;
    assert!(snap.leading(Instant::now()), "{snap:#?}");
}

/// Polls until `etcd`'s log holds `needle` at least `times` times, asserting meanwhile that
/// `handle` never gets through to etcd; returns how long that took.
async fn refused(etcd: &Etcd, handle: &ClusterHandle, needle: &str, times: usize) -> Duration {
    let start = Instant::now();
    loop {
        let snap = handle.snapshot();
        assert_eq!(snap.etcd, EtcdState::Unreachable, "{snap:#?}");
        assert!(
            snap.lease_until.is_none() && snap.leader.is_none(),
            "{snap:#?}"
        );
        if etcd.logs().matches(needle).count() >= times {
            return start.elapsed();
        }
        if start.elapsed() >= SOON {
            panic!(
                "etcd did not log {needle:?} {times} times within {SOON:?}:\n{}",
                etcd.logs()
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// The shell's log lines (`rouse_cluster` at debug), for the tests on what it says.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Captures this thread's log from now on (a `#[tokio::test]` runs its tasks on it) until
    /// the guard drops.
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("rouse_cluster=debug"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }

    /// The lines an operator sees at rouse's default level that are warnings.
    fn warnings(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains(" WARN "))
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A client as etcd's root user (over TLS with `etcd`'s CA), `root_password` once auth is on.
async fn root(etcd: &Etcd, root_password: Option<&str>) -> Client {
    let ca = std::fs::read(etcd.ca_file()).expect("the test CA");
    let mut options = ConnectOptions::new()
        .with_timeout(SOON)
        .with_tls(TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(ca)));
    if let Some(password) = root_password {
        options = options.with_user("root", password);
    }
    Client::connect([etcd.url()], Some(options))
        .await
        .unwrap_or_else(|e| panic!("root client: {e}\n{}", etcd.logs()))
}

/// Turns etcd's auth on, as its docs say to: a `root` user (password `rootpw`), a role that
/// may read and write the cluster's prefix (all rouse needs: leases need no permission),
/// and `users` with it. Returns a client logged in as root.
async fn enable_auth(etcd: &Etcd, users: &[(&str, &str)]) -> Client {
    let mut root_client = root(etcd, None).await;
    let call = "setting up etcd's users";
    root_client
        .user_add("root", "rootpw", None)
        .await
        .expect(call);
    root_client
        .user_grant_role("root", "root")
        .await
        .expect(call);
    root_client.role_add("rouse").await.expect(call);
    root_client
        .role_grant_permission(
            "rouse",
            Permission::read_write("/rouse/test/").with_prefix(),
        )
        .await
        .expect(call);
    for (user, password) in users {
        root_client
            .user_add(*user, *password, None)
            .await
            .expect(call);
        root_client
            .user_grant_role(*user, "rouse")
            .await
            .expect(call);
    }
    root_client.auth_enable().await.expect(call);
    root(etcd, Some("rootpw")).await
}

#[tokio::test]
async fn a_replica_reaches_etcd_over_https_trusting_the_ca_file() {
    let etcd = Etcd::start_tls(false).await;
    assert!(etcd.url().starts_with("https://"), "{}", etcd.url());
    let a = Cluster::start(&config(&etcd), A.into());
    leads(&a.handle()).await;
    a.leave().await;
}

#[tokio::test]
async fn with_client_certificates_required_a_replica_with_one_leads() {
    let etcd = Etcd::start_tls(true).await;
    let a = Cluster::start(&with_client_cert(&etcd), A.into());
    leads(&a.handle()).await;
    a.leave().await;
}

#[tokio::test]
async fn with_client_certificates_required_a_replica_without_one_stays_unreachable_and_says_so() {
    let log = Captured::default();
    let _guard = log.install();
    let etcd = Etcd::start_tls(true).await;
    let b = Cluster::start(&config(&etcd), B.into());
    // etcd refuses each handshake and logs why. The client only sees the connection end
    // (closed, an alert, a broken pipe: TLS 1.3 refuses after the handshake), so its log
    // says that it cannot reach etcd, and etcd's says why.
    let took = refused(&etcd, &b.handle(), "client didn't provide a certificate", 3).await;
    assert!(took >= THREE_TRIES, "three refusals within {took:?}");
    let warnings = log.warnings();
    assert_eq!(warnings.len(), 1, "{}", log.text());
    assert!(warnings[0].contains("cannot reach etcd"), "{}", log.text());
    b.leave().await;
}

#[tokio::test]
async fn with_auth_on_the_right_password_leads_and_a_wrong_one_stays_unreachable_with_backoff() {
    let log = Captured::default();
    let _guard = log.install();
    let etcd = Etcd::start_tls(false).await;
    let mut root = enable_auth(&etcd, &[("edge-a", "secret-a"), ("edge-b", "secret-b")]).await;

    let a = Cluster::start(&with_user(&etcd, "edge-a", "secret-a"), A.into());
    leads(&a.handle()).await;

    let b = Cluster::start(&with_user(&etcd, "edge-b", "wrong"), B.into());
    let took = refused(&etcd, &b.handle(), "invalid password for user edge-b", 3).await;
    assert!(took >= THREE_TRIES, "three refusals within {took:?}");
    // Said once, at the default level, with etcd's reason.
    let warnings = log.warnings();
    assert_eq!(warnings.len(), 1, "{}", log.text());
    assert!(
        warnings[0].contains("cannot reach etcd") && warnings[0].contains("authentication failed"),
        "{}",
        log.text()
    );
    let members = a.handle().snapshot().members.clone();
    assert_eq!(members.len(), 1, "{members:?}");

    // Still trying, without a restart: once its password is right, it gets in.
    root.user_change_password("edge-b", "wrong")
        .await
        .expect("changing edge-b's password");
    until(
        &b.handle(),
        "Ok once its password is right",
        SOON * 2,
        |s| s.etcd == EtcdState::Ok && s.members.len() == 2 && s.leader.as_deref() == Some(A),
    )
    .await;
    b.leave().await;
    a.leave().await;
}
