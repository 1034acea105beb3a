//! A real etcd of a test's own: Debian's `etcd-server` (scripts/test.sh installs it), one
//! member on two loopback ports (client and peer), its data in a temporary directory.
//!
//! [`Etcd::stop`] and [`Etcd::start_again`] take it down and bring it back on the same ports
//! with the same data, as an etcd restarted by its supervisor would be: what a client must
//! survive without being restarted itself. Dropping an [`Etcd`] kills it.
//!
//! [`Etcd::start_tls`]: its client URL is https, with a server certificate signed by a test
//! CA of its own, and optionally client certificates required. Its health is read from a
//! third, plain-HTTP port (`--listen-metrics-urls`), so the harness needs no TLS client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use super::client::http_get;
use super::net::unique_port;
use super::pki::TestCa;

/// How long etcd may take to answer `/health` with a leader elected (about a second alone).
const READY_WITHIN: Duration = Duration::from_secs(20);
/// How long [`Etcd::stop`] waits after SIGTERM before SIGKILL.
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// A running (or stopped, until [`Etcd::start_again`]) one-member etcd.
pub struct Etcd {
    dir: TempDir,
    client: SocketAddr,
    peer: SocketAddr,
    /// `/health` without TLS, whatever the client URL needs.
    metrics: SocketAddr,
    tls: Option<Tls>,
    child: Option<Child>,
}

/// How its client URL is secured.
#[derive(Clone, Copy)]
struct Tls {
    /// `--client-cert-auth`: a client without a certificate signed by the test CA is refused.
    client_cert_auth: bool,
}

impl Etcd {
    /// Starts etcd on new loopback ports and returns once it is healthy.
    pub async fn start() -> Etcd {
        Etcd::start_with(None).await
    }

    /// [`Etcd::start`] with an https client URL: its certificate (for 127.0.0.1 and
    /// localhost) is signed by the CA in [`Etcd::ca_file`]. With `client_cert_auth`, a client
    /// must show a certificate signed by that CA too: [`Etcd::client_cert_file`].
    pub async fn start_tls(client_cert_auth: bool) -> Etcd {
        Etcd::start_with(Some(Tls { client_cert_auth })).await
    }

    async fn start_with(tls: Option<Tls>) -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("etcd")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let mut etcd = Etcd {
            dir,
            client: ([127, 0, 0, 1], unique_port()).into(),
            peer: ([127, 0, 0, 1], unique_port()).into(),
            metrics: ([127, 0, 0, 1], unique_port()).into(),
            tls,
            child: None,
        };
        if tls.is_some() {
            let d = etcd.dir.path();
            let ca = TestCa::new("rouse test CA for etcd");
            ca.write(&d.join("ca.pem"));
            ca.server(d, "server");
            ca.client(d, "client", "rouse");
        }
        etcd.launch().await;
        etcd
    }

    /// Its client URL (`http://127.0.0.1:PORT`, or `https://` after [`Etcd::start_tls`]).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.client)
    }

    /// The CA that signed its certificate and [`Etcd::client_cert_file`] (PEM; TLS only).
    pub fn ca_file(&self) -> PathBuf {
        self.tls_file("ca.pem")
    }

    /// A client certificate signed by [`Etcd::ca_file`]'s CA (PEM; TLS only), common name
    /// `rouse` (which etcd takes as the user name once auth is on and no password is given);
    /// its key is [`Etcd::client_key_file`].
    pub fn client_cert_file(&self) -> PathBuf {
        self.tls_file("client.pem")
    }

    pub fn client_key_file(&self) -> PathBuf {
        self.tls_file("client-key.pem")
    }

    fn tls_file(&self, name: &str) -> PathBuf {
        assert!(
            self.tls.is_some(),
            "{name}: this etcd was started without TLS"
        );
        self.dir.path().join(name)
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s; waits until it is gone. Its
    /// data directory stays for [`Etcd::start_again`].
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
            // ESRCH: it already exited, which the wait below sees.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if timeout(STOP_WITHIN, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same ports with the same data (after [`Etcd::stop`]).
    pub async fn start_again(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// etcd's output so far (every run of it), for failure messages.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    async fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path().display()));
        let err = log.try_clone().expect("a second handle on the log");
        let client = self.url();
        let peer = format!("http://{}", self.peer);
        let mut command = Command::new("etcd");
        if let Some(tls) = self.tls {
            let d = self.dir.path();
            command
                .arg("--cert-file")
                .arg(d.join("server.pem"))
                .arg("--key-file")
                .arg(d.join("server-key.pem"));
            if tls.client_cert_auth {
                command
                    .arg("--client-cert-auth")
                    .arg("--trusted-ca-file")
                    .arg(d.join("ca.pem"));
            }
        }
        let child = command
            .args(["--name", "test"])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--listen-metrics-urls", &format!("http://{}", self.metrics)])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run etcd (is Debian's etcd-server installed?): {e}")
            });
        self.child = Some(child);
        self.wait_healthy().await;
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let healthy = http_get(self.metrics, "/health").await.is_ok_and(|answer| {
                answer.status.is_success()
                    && answer
                        .text()
                        .replace(' ', "")
                        .contains(r#""health":"true""#)
            });
            if healthy {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!("etcd exited ({status}):\n{}", self.logs());
            }
            if Instant::now() >= deadline {
                panic!(
                    "etcd on {} was not healthy within {READY_WITHIN:?}:\n{}",
                    self.client,
                    self.logs()
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
    }
}
