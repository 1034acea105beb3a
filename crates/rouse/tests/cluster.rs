//! Several rouse replicas in front of one supervisord, coordinated through a real etcd (Debian's
//! `etcd-server`, which scripts/test.sh installs): each replica is a `rouse run` process of its
//! own, the backends are rouse-test-backend programs of a real supervisord, and what is
//! checked is what supervisord says runs.
//!
//! Every replica here has `lease_ttl = "2s"` and `idle_timeout = "2s"`, so that leases expire
//! and idle servers stop within a test's patience; the rules do not depend on the figures.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rouse_e2e::{Etcd, Program, SupervisordProcess, http_get, wait_until};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep};

mod common;

use common::{ROUSE, WAIT, free_addrs};

const LEASE_TTL: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(2);

/// One etcd, one supervisord with programs app0..app2, and the replicas' shared config.
struct Rig {
    etcd: Etcd,
    sd: SupervisordProcess,
    /// The servers' addresses, app0..app2.
    servers: [SocketAddr; 3],
    dir: tempfile::TempDir,
}

impl Rig {
    async fn new() -> Rig {
        let etcd = Etcd::start().await;
        // Unbound until woken: ports the kernel never gives a `bind(0)` (see unique_addr).
        let servers: [SocketAddr; 3] = std::array::from_fn(|_| rouse_e2e::unique_addr());
        let mut sd = SupervisordProcess::builder();
        for (i, addr) in servers.iter().enumerate() {
            sd = sd.program(Program::backend(&format!("app{i}"), *addr, &[]));
        }
        Rig {
            etcd,
            sd: sd.spawn().await,
            servers,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Replica `id`'s config: upstream "app" of app0 and app1 (two in flight per server),
    /// upstream "other" of app2.
    fn config(&self, id: &str, listen: SocketAddr, admin: SocketAddr) -> String {
        let [a0, a1, a2] = self.servers;
        format!(
            "[proxy]\nlisten = [\"{listen}\"]\n\
             [admin]\nlisten = \"{admin}\"\n\
             [cluster]\netcd = [\"{etcd}\"]\nname = \"test\"\nid = \"{id}\"\n\
             lease_ttl = \"{ttl}s\"\ntimeout = \"500ms\"\n\
             {sd}\
             [[upstream]]\nname = \"app\"\nsupervisor = \"sd\"\nmin_servers = 0\nmax_servers = 2\n\
             target_in_flight = 2\nidle_timeout = \"{idle}s\"\n\
             [[upstream.server]]\naddress = \"{a0}\"\nprogram = \"app0\"\n\
             [[upstream.server]]\naddress = \"{a1}\"\nprogram = \"app1\"\n\
             [[upstream]]\nname = \"other\"\nhosts = [\"other.test\"]\nsupervisor = \"sd\"\n\
             min_servers = 0\nidle_timeout = \"{idle}s\"\n\
             [[upstream.server]]\naddress = \"{a2}\"\nprogram = \"app2\"\n",
            etcd = self.etcd.url(),
            ttl = LEASE_TTL.as_secs(),
            idle = IDLE.as_secs(),
            sd = self.sd.rouse_section("sd", "poll_interval = \"200ms\""),
        )
    }

    /// Starts replica `id` and waits until its admin API answers and it has reached etcd.
    async fn replica(&self, id: &str) -> Replica {
        let [listen, admin] = free_addrs::<2>();
        let path = self.dir.path().join(format!("{id}.toml"));
        std::fs::write(&path, self.config(id, listen, admin)).unwrap();
        let log = self.dir.path().join(format!("{id}.log"));
        let child = Command::new(ROUSE)
            .args(["run", "-c"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .env_remove("ROUSE_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("rouse runs");
        let r = Replica {
            id: id.to_owned(),
            listen,
            admin,
            child,
            log,
        };
        wait_until(&format!("{id} to reach etcd"), WAIT, || async {
            r.cluster().await.is_some_and(|c| c["etcd"] == "ok")
        })
        .await;
        r
    }

    async fn state(&self, program: &str) -> String {
        self.sd.statename(program).await.unwrap_or_default()
    }

    async fn wait_state(&self, program: &str, state: &str, within: Duration) {
        wait_until(&format!("{program} {state}"), within, || async {
            self.state(program).await == state
        })
        .await;
    }
}

struct Replica {
    id: String,
    listen: SocketAddr,
    admin: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Replica {
    async fn status(&self) -> Option<Value> {
        let r = http_get(self.admin, "/status").await.ok()?;
        serde_json::from_slice(&r.body).ok()
    }

    async fn cluster(&self) -> Option<Value> {
        Some(self.status().await?.get("cluster")?.clone())
    }

    async fn leader(&self) -> Option<String> {
        Some(self.cluster().await?["leader"].as_str()?.to_owned())
    }

    /// `GET path` through this replica: the status, 0 for no answer.
    async fn get(&self, path: &str) -> u16 {
        match http_get(self.listen, path).await {
            Ok(r) => r.status.as_u16(),
            Err(_) => 0,
        }
    }

    /// `GET path` through this replica with `Host: host`.
    async fn get_host(&self, host: &str, path: &str) -> u16 {
        get_as(self.listen, host, path).await.unwrap_or(0)
    }

    fn kill9(&mut self) {
        let pid = self.child.id().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `GET path` with a Host header of `host`, on a new connection, bounded.
async fn get_as(addr: SocketAddr, host: &str, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.ok()?;
        let head = String::from_utf8_lossy(&answer);
        head.split(' ').nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

/// Requests through `replica` every 200 ms until `stop`; counts those answered 200 and not.
fn keep_busy(replica: &Replica, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, u64)> {
    let listen = replica.listen;
    tokio::spawn(async move {
        let (mut ok, mut bad) = (0, 0);
        while !stop.load(Ordering::SeqCst) {
            match http_get(listen, "/").await {
                Ok(r) if r.status == 200 => ok += 1,
                _ => bad += 1,
            }
            sleep(Duration::from_millis(200)).await;
        }
        (ok, bad)
    })
}

/// Waits until one of `replicas` names a leader, and returns it.
async fn wait_leader(replicas: &[&Replica], within: Duration) -> String {
    wait_until("a leader", within, || async {
        for r in replicas {
            if let Some(l) = r.leader().await {
                return Some(l);
            }
        }
        None
    })
    .await
}

/// Checks, for `span`, that `program` stays RUNNING.
async fn stays_running(rig: &Rig, program: &str, span: Duration) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        assert_eq!(rig.state(program).await, "RUNNING", "{program} was stopped");
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_through_one_replica_keeps_the_server_up_for_all() {
    let rig = Rig::new().await;
    let a = rig.replica("a").await;
    assert_eq!(
        wait_leader(&[&a], WAIT).await,
        "a",
        "the first replica leads"
    );
    let b = rig.replica("b").await;
    assert_eq!(b.leader().await.as_deref(), Some("a"));

    // Woken through b; a, the leader, never sees a request.
    assert_eq!(b.get("/").await, 200);
    // Ready to rouse when it accepts connections; RUNNING to supervisord after startsecs.
    rig.wait_state("app0", "RUNNING", WAIT).await;
    let stop = Arc::new(AtomicBool::new(false));
    let busy = keep_busy(&b, Arc::clone(&stop));
    stays_running(&rig, "app0", 3 * IDLE).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, bad) = busy.await.unwrap();
    assert!(ok >= 10 && bad == 0, "{ok} answered, {bad} not");
    assert_eq!(rig.state("app1").await, "STOPPED");

    // Idle everywhere now: the leader stops it, about idle_timeout after b's last request.
    rig.wait_state("app0", "STOPPED", IDLE + Duration::from_secs(8))
        .await;
    // Through the drain key: b stopped routing to it before the stop.
    let log = b.log();
    assert!(
        log.contains("the cluster's leader drains this server"),
        "b's log: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summed_load_scales_up_where_each_replica_alone_would_not() {
    let rig = Rig::new().await;
    let a = rig.replica("a").await;
    wait_leader(&[&a], WAIT).await;
    let b = rig.replica("b").await;
    assert_eq!(a.get("/").await, 200, "app0 woken");

    // Two slow requests through a alone: two in flight is one server's target.
    let slow = |r: &Replica| {
        let listen = r.listen;
        tokio::spawn(async move { http_get(listen, "/delay/8000").await.map(|r| r.status) })
    };
    let a_reqs = [slow(&a), slow(&a)];
    sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rig.state("app1").await,
        "STOPPED",
        "a's load alone needs one server"
    );

    // Two more through b: four in flight over the cluster, two servers' worth.
    let b_reqs = [slow(&b), slow(&b)];
    // Within b's next report (a second), a start, and supervisord's startsecs (1 s); a's
    // requests are still in flight until 8 s.
    rig.wait_state("app1", "RUNNING", Duration::from_secs(4))
        .await;
    for r in a_reqs.into_iter().chain(b_reqs) {
        assert_eq!(r.await.unwrap().unwrap(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_within_the_lease_and_nothing_in_use_stops() {
    let rig = Rig::new().await;
    let mut a = rig.replica("a").await;
    assert_eq!(wait_leader(&[&a], WAIT).await, "a");
    let b = rig.replica("b").await;
    let c = rig.replica("c").await;
    assert_eq!(b.get("/").await, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let busy = keep_busy(&b, Arc::clone(&stop));

    a.kill9();
    let killed = Instant::now();
    let new = wait_until("a new leader", WAIT, || async {
        for r in [&b, &c] {
            match r.leader().await {
                Some(l) if l != "a" => return Some(l),
                _ => {}
            }
        }
        None
    })
    .await;
    let took = killed.elapsed();
    eprintln!("{new} leads {took:?} after a was killed");
    assert!(new == "b" || new == "c", "{new}");
    // The lease runs out at most lease_ttl after a's last keep-alive; the key goes with it and
    // the others campaign at once (plus this test's polling of /status).
    assert!(
        took <= LEASE_TTL + Duration::from_millis(1500),
        "took {took:?}"
    );
    wait_until(
        "a gone from the members",
        Duration::from_secs(2),
        || async {
            b.cluster()
                .await
                .is_some_and(|c| c["members"] == serde_json::json!(["b", "c"]))
        },
    )
    .await;

    // b's traffic goes on through all this: app0 is never stopped.
    stays_running(&rig, "app0", 3 * IDLE).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, bad) = busy.await.unwrap();
    assert!(ok >= 10 && bad == 0, "{ok} answered, {bad} not");
    // The new leader decides: idle now, stopped.
    rig.wait_state("app0", "STOPPED", IDLE + Duration::from_secs(8))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_stops_nothing_wakes_still_work_and_decisions_resume_when_it_returns() {
    let mut rig = Rig::new().await;
    let a = rig.replica("a").await;
    wait_leader(&[&a], WAIT).await;
    let b = rig.replica("b").await;
    assert_eq!(a.get("/").await, 200);
    // Ready to rouse when it accepts connections; RUNNING to supervisord after startsecs.
    rig.wait_state("app0", "RUNNING", WAIT).await;

    rig.etcd.stop().await;
    for r in [&a, &b] {
        wait_until(&format!("{} to see etcd down", r.id), WAIT, || async {
            r.cluster()
                .await
                .is_some_and(|c| c["etcd"] == "unreachable")
        })
        .await;
    }
    let metrics = http_get(a.admin, "/metrics").await.unwrap().text();
    assert!(
        metrics.contains("rouse_cluster_etcd_up 0"),
        "metrics: {metrics}"
    );
    // Idle far past idle_timeout: nothing may be stopped without etcd.
    stays_running(&rig, "app0", 3 * IDLE).await;
    // A wake does not need etcd.
    assert_eq!(rig.state("app2").await, "STOPPED");
    assert_eq!(b.get_host("other.test", "/").await, 200);
    rig.wait_state("app2", "RUNNING", WAIT).await;

    rig.etcd.start_again().await;
    for r in [&a, &b] {
        wait_until(&format!("{} to rejoin", r.id), WAIT, || async {
            r.cluster()
                .await
                .is_some_and(|c| c["etcd"] == "ok" && !c["leader"].is_null())
        })
        .await;
    }
    // Decisions resume: both idle servers are stopped.
    rig.wait_state("app0", "STOPPED", WAIT).await;
    rig.wait_state("app2", "STOPPED", WAIT).await;
}
