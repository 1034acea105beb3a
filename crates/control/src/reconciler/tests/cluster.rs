//! The loop as one replica of a cluster, its snapshot set by hand (no etcd), on the paused
//! clock: who may drain and stop, and how the leader's drain keys apply.

use rouse_cluster::{
    Command, Drain, EtcdState, Received, Report, ServerLoad, Shell, Snapshot, UpstreamLoad,
};

use super::*;

const IDLE: &str = "min_servers = 0\nidle_timeout = \"2s\"\nstart_timeout = \"10s\"";

struct Replica {
    table: Arc<Table>,
    driver: Arc<Scripted>,
    shell: Shell,
    control: Control,
}

impl Replica {
    /// Replica "a" of one upstream of one server, started by hand and ready.
    async fn ready() -> Replica {
        let table = table_with(ADDR, IDLE);
        let driver = Scripted::new();
        let (handle, shell) = rouse_cluster::channels("shop", "a");
        let control = Control::spawn_with(
            Arc::clone(&table),
            drivers(&driver),
            Net::up() as Arc<dyn Probe>,
            Some(handle),
        );
        control
            .handle()
            .manual("app", Some(0), ManualOp::Start)
            .await
            .expect("started");
        let r = Replica {
            table,
            driver,
            shell,
            control,
        };
        wait_for(r.server(), ServerState::Ready).await;
        r
    }

    fn server(&self) -> &Server {
        &self.table.upstreams[0].servers[0]
    }

    /// Changes the snapshot as the etcd shell would.
    fn set(&self, change: impl FnOnce(&mut Snapshot)) {
        let mut s = Snapshot::clone(&self.shell.snapshot.borrow());
        change(&mut s);
        self.shell.snapshot.send_replace(Arc::new(s));
    }

    fn commands(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.shell.commands.try_recv().ok()).collect()
    }
}

fn lead(s: &mut Snapshot, members: &[&str]) {
    s.etcd = EtcdState::Ok;
    s.leader = Some(s.id.clone());
    // Kept alive by the (absent) shell for longer than any test runs.
    s.lease_until = Some(Instant::now() + Duration::from_secs(3600));
    s.members = members.iter().map(|m| m.to_string()).collect();
}

fn report(seen: i64, server: Option<ServerLoad>) -> Received {
    let mut up = UpstreamLoad::default();
    if let Some(s) = server {
        up.servers.insert(0, s);
    }
    let mut report = Report {
        seen,
        ..Report::default()
    };
    report.upstreams.insert("app".into(), up);
    Received {
        report,
        at: Instant::now(),
    }
}

/// Another replica's load on the server.
fn load(in_flight: u32, idle_ms: u64, draining: bool) -> Option<ServerLoad> {
    Some(ServerLoad {
        in_flight,
        idle_ms,
        draining,
    })
}

fn key(revision: i64) -> Drain {
    Drain {
        reason: "idle".into(),
        revision,
    }
}

#[tokio::test(start_paused = true)]
async fn a_follower_never_drains_or_stops_for_idleness() {
    let mut r = Replica::ready().await;
    // Not leading (etcd not even reached): idle far past idle_timeout.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(r.server().state(), ServerState::Ready);
    assert_eq!(r.driver.calls(), ["start"]);
    assert_eq!(r.commands(), []);
    // Another replica leads: still nothing.
    r.set(|s| {
        lead(s, &["a", "b"]);
        s.leader = Some("b".into());
    });
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(r.server().state(), ServerState::Ready);
    assert_eq!(r.commands(), []);
    drop(r.control);
}

#[tokio::test(start_paused = true)]
async fn the_leader_drains_everywhere_and_stops_once_every_replica_has() {
    let mut r = Replica::ready().await;
    r.set(|s| lead(s, &["a", "b"]));
    wait_for(r.server(), ServerState::Draining).await;
    assert_eq!(
        r.commands(),
        [Command::Drain {
            upstream: "app".into(),
            index: 0,
            reason: "idle"
        }]
    );
    // The key is there, b has not acknowledged it: no stop, however long.
    r.set(|s| {
        s.drains.insert(("app".into(), 0), key(7));
        s.revision = 7;
        s.reports
            .insert("b".into(), report(6, load(0, 60_000, false)));
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(r.server().state(), ServerState::Draining);
    assert_eq!(r.driver.calls(), ["start"]);
    // b drained it too, with nothing in flight: the stop goes out.
    r.set(|s| {
        s.reports
            .insert("b".into(), report(7, load(0, 60_000, true)));
    });
    wait_for(r.server(), ServerState::Stopping).await;
    assert_eq!(r.driver.calls(), ["start", "stop"]);
    r.driver.stops.add_permits(1);
    wait_for(r.server(), ServerState::Stopped).await;
    // The key stays until b's reports leave the server out (stopped in its view too): b
    // would otherwise route to it again in between.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(r.commands(), []);
    r.set(|s| {
        s.reports.insert("b".into(), report(7, None));
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        r.commands(),
        [Command::Undrain {
            upstream: "app".into(),
            index: 0
        }]
    );
    drop(r.control);
}

#[tokio::test(start_paused = true)]
async fn load_on_another_replica_keeps_the_server_up() {
    let mut r = Replica::ready().await;
    r.set(|s| {
        lead(s, &["a", "b"]);
        s.reports.insert("b".into(), report(0, load(1, 0, false)));
    });
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(r.server().state(), ServerState::Ready);
    assert_eq!(r.commands(), []);
    // b's request ends and b reports it idle from then on: idle_timeout later, drained.
    r.set(|s| {
        s.reports.insert("b".into(), report(0, load(0, 0, false)));
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        r.server().state(),
        ServerState::Ready,
        "b was active 1.5 s ago"
    );
    wait_for(r.server(), ServerState::Draining).await;
    drop(r.control);
}

#[tokio::test(start_paused = true)]
async fn a_follower_applies_the_leaders_drain_and_takes_it_back_when_the_key_goes() {
    let mut r = Replica::ready().await;
    r.set(|s| {
        lead(s, &["a", "b"]);
        s.leader = Some("b".into());
        s.drains.insert(("app".into(), 0), key(3));
        s.revision = 3;
    });
    wait_for(r.server(), ServerState::Draining).await;
    // The leader's drain is not the follower's to stop.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(r.server().state(), ServerState::Draining);
    assert_eq!(r.driver.calls(), ["start"]);
    r.set(|s| {
        s.drains.clear();
        s.revision = 4;
    });
    wait_for(r.server(), ServerState::Ready).await;
    assert_eq!(r.commands(), [], "a follower writes no keys");
    drop(r.control);
}

#[tokio::test(start_paused = true)]
async fn etcd_lost_while_draining_stops_nothing_and_routes_again() {
    let mut r = Replica::ready().await;
    r.set(|s| lead(s, &["a", "b"]));
    wait_for(r.server(), ServerState::Draining).await;
    r.set(|s| {
        s.drains.insert(("app".into(), 0), key(7));
        s.revision = 7;
    });
    // etcd stops answering before b acknowledges: the shell forgets the drains and the lease.
    r.set(|s| {
        s.etcd = EtcdState::Unreachable;
        s.lease_until = None;
        s.drains.clear();
    });
    wait_for(r.server(), ServerState::Ready).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(r.server().state(), ServerState::Ready);
    assert_eq!(r.driver.calls(), ["start"]);
    let _ = r.commands();
    drop(r.control);
}

#[tokio::test(start_paused = true)]
async fn a_server_another_replica_took_back_is_taken_back_by_the_leader_too() {
    let mut r = Replica::ready().await;
    r.set(|s| lead(s, &["a", "b"]));
    wait_for(r.server(), ServerState::Draining).await;
    let _ = r.commands();
    // b saw the drain, then took the server back for requests it held.
    r.set(|s| {
        s.drains.insert(("app".into(), 0), key(7));
        s.revision = 7;
        s.reports.insert("b".into(), report(7, load(0, 0, false)));
    });
    wait_for(r.server(), ServerState::Ready).await;
    assert_eq!(
        r.commands(),
        [Command::Undrain {
            upstream: "app".into(),
            index: 0
        }]
    );
    assert_eq!(r.driver.calls(), ["start"], "never stopped");
    drop(r.control);
}

#[tokio::test(start_paused = true)]
async fn nothing_is_drained_while_a_replica_has_other_servers() {
    let mut r = Replica::ready().await;
    // What this replica publishes names its servers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mine = r.shell.report.borrow().servers;
    assert_ne!(mine, 0);
    r.set(|s| {
        lead(s, &["a", "b"]);
        let mut other = report(0, None);
        other.report.servers = mine ^ 1;
        s.reports.insert("b".into(), other);
    });
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(r.server().state(), ServerState::Ready);
    assert_eq!(r.commands(), []);
    // b reloads to the same servers: the leader decides again.
    r.set(|s| {
        let mut same = report(0, None);
        same.report.servers = mine;
        s.reports.insert("b".into(), same);
    });
    wait_for(r.server(), ServerState::Draining).await;
    drop(r.control);
}
