//! Readiness probes: is a starting server able to take requests yet?
//!
//! Polled often (every few ms at first) because the moment a server listens is the moment held
//! requests may go; a refused connect on loopback costs microseconds.
//!
//! Connections are opened as the data plane opens them ([`Target::connect`]): to the addresses
//! a host name resolved to, to a unix socket (a stale socket file whose process is gone refuses
//! the connect, so it is never taken for ready), or TLS (the handshake is part of readiness:
//! a server whose certificate rouse would refuse is not ready).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rouse_config::Readiness;
use rouse_proxy::connect::Target;
use rouse_supervisor::BoxFuture;
use tokio::time::{Instant, sleep, timeout};

/// How the control plane finds out whether a server takes requests: the seam between the
/// reconciler and the network, so that its tests can script the answers (and run on a paused
/// clock) while rouse itself connects for real ([`Tcp`]).
pub trait Probe: Send + Sync + 'static {
    /// Polls until the server is ready, or `deadline` passes (`Err` says what was last seen).
    fn until_ready<'a>(
        &'a self,
        target: &'a Target,
        readiness: &'a Readiness,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), String>>;

    /// One connect: whether a ready server the data plane could not reach still accepts
    /// connections (`Err` says why not).
    fn accepts<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), String>>;
}

/// The real probe: TCP connects and HTTP requests.
pub struct Tcp;

impl Probe for Tcp {
    fn until_ready<'a>(
        &'a self,
        target: &'a Target,
        readiness: &'a Readiness,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(until_ready(target, readiness, deadline))
    }

    fn accepts<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(accepts(target))
    }
}

/// One attempt may take this long before it counts as a failure.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Interval between attempts: fast at first (most servers come up within a second), then
/// gentler for slow starters.
fn interval(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_secs(2) {
        Duration::from_millis(2)
    } else {
        Duration::from_millis(25)
    }
}

/// Polls until the server is ready, or `deadline` passes (`Err` says what was last seen).
pub async fn until_ready(
    target: &Target,
    readiness: &Readiness,
    deadline: Instant,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let attempt = match readiness {
            // "supervisor" readiness is decided by the supervisor's RUNNING, not probed.
            Readiness::Supervisor => return Ok(()),
            Readiness::Tcp => connects(target).await,
            Readiness::Http { path } => http(target, path).await,
        };
        let last = match attempt {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let next = Instant::now() + interval(started.elapsed());
        if next >= deadline {
            return Err(last);
        }
        sleep(next - Instant::now()).await;
    }
}

/// One connect: whether a ready server the data plane could not reach still accepts
/// connections (`Err` says why not). The transport only: the question is whether its process
/// still listens, and a TLS setting rouse got wrong must not get a healthy process stopped.
pub async fn accepts(target: &Target) -> Result<(), String> {
    match target.connect_transport(ATTEMPT_TIMEOUT).await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// A connection as the data plane would open it, TLS handshake included.
async fn connects(target: &Target) -> Result<(), String> {
    match target.connect(ATTEMPT_TIMEOUT).await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

async fn http(target: &Target, path: &str) -> Result<(), String> {
    let attempt = async {
        let stream = target
            .connect(ATTEMPT_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {target}: {e}"))?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(header::HOST, host(target))
            .header(header::USER_AGENT, "rouse-readiness")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad probe request: {e}"))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("GET {path} on {target}: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("GET {path} on {target} answered {}", resp.status()))
        }
    };
    match timeout(ATTEMPT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("GET {path} on {target} timed out")),
    }
}

/// The probe's `Host`: the server's address (`localhost` for a unix socket, which has no
/// authority of its own).
fn host(target: &Target) -> String {
    match target.server().address() {
        rouse_config::ServerAddress::Unix(_) => "localhost".to_owned(),
        address => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rouse_state::Table;

    use super::*;

    /// The one server of a static upstream at `address`, as the probe sees it.
    fn target(address: &str) -> Target {
        let text = format!(
            "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"{address}\"\n"
        );
        let table = Table::new(&rouse_config::parse("t.toml", &text).expect("valid"));
        let up = &table.upstreams[0];
        Target::new(Arc::clone(&up.servers[0]), up.tls.as_ref())
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[tokio::test]
    async fn a_stale_unix_socket_file_is_not_ready_and_a_listening_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sock");
        // A process that died leaves its socket file: connecting to it is ECONNREFUSED.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let t = target(&format!("unix:{}", path.display()));
        let why = accepts(&t).await.expect_err("nobody listens");
        assert!(why.contains("refused"), "{why}");
        let why = until_ready(&t, &Readiness::Tcp, soon())
            .await
            .expect_err("not ready");
        assert!(why.contains("refused") && why.contains("app.sock"), "{why}");

        std::fs::remove_file(&path).unwrap();
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        until_ready(&t, &Readiness::Tcp, soon())
            .await
            .expect("ready once something listens");
        accepts(&t).await.expect("accepts");
        drop(listener);
    }

    #[tokio::test]
    async fn a_name_is_probed_at_its_resolved_addresses_and_not_before() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = target(&format!("app.internal:{port}"));
        let why = until_ready(&t, &Readiness::Tcp, soon())
            .await
            .expect_err("nothing to connect to yet");
        assert!(why.contains("does not resolve"), "{why}");
        // A refusing address first: each is tried in turn.
        let refusing = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = refusing.local_addr().unwrap();
        drop(refusing);
        t.server().set_resolved(vec![
            dead,
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        ]);
        until_ready(&t, &Readiness::Tcp, soon())
            .await
            .expect("ready at its second address");
    }
}
