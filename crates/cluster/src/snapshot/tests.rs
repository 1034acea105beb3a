use std::time::Duration;

use super::*;
use crate::report::{ServerLoad, UpstreamLoad};

fn snapshot(now: Instant) -> Snapshot {
    let mut s = Snapshot::new("shop", "a");
    s.etcd = EtcdState::Ok;
    s.leader = Some("a".into());
    s.lease_until = Some(now + Duration::from_secs(3));
    s.members = ["a", "b", "c"].iter().map(|m| m.to_string()).collect();
    s
}

fn report(seen: i64, server: Option<ServerLoad>, held: u64, rps: f64) -> Report {
    let mut up = UpstreamLoad {
        held,
        rps,
        ..UpstreamLoad::default()
    };
    if let Some(s) = server {
        up.servers.insert(0, s);
    }
    let mut r = Report {
        seen,
        ..Report::default()
    };
    r.upstreams.insert("app".into(), up);
    r
}

fn busy(in_flight: u32, idle_ms: u64, draining: bool) -> Option<ServerLoad> {
    Some(ServerLoad {
        in_flight,
        idle_ms,
        draining,
    })
}

#[test]
fn leading_needs_etcd_the_key_and_a_lease_that_still_holds() {
    let now = Instant::now();
    let mut s = snapshot(now);
    assert!(s.leading(now));
    assert!(!s.leading(now + Duration::from_secs(3)), "lease ran out");
    s.etcd = EtcdState::Unreachable;
    assert!(!s.leading(now));
    s.etcd = EtcdState::Ok;
    s.leader = Some("b".into());
    assert!(!s.leading(now));
    s.leader = Some("a".into());
    s.lease_until = None;
    assert!(!s.leading(now));
}

#[test]
fn remote_load_sums_the_other_live_members_only() {
    let now = Instant::now();
    let mut s = snapshot(now);
    let at = now;
    for (id, r) in [
        ("a", report(1, busy(100, 0, false), 100, 100.0)),
        ("b", report(1, busy(2, 5_000, false), 1, 3.0)),
        ("c", report(1, busy(3, 1_000, false), 2, 4.0)),
        ("gone", report(1, busy(50, 0, false), 50, 50.0)),
    ] {
        s.reports.insert(id.into(), Received { report: r, at });
    }
    let remote = s.remote("app", 0);
    assert_eq!(remote.in_flight, 5, "own and dead members' load left out");
    assert_eq!(remote.last_active, Some(at - Duration::from_secs(1)));
    assert_eq!(s.remote_upstream("app"), (3, 7.0));
    assert_eq!(s.remote("app", 1), Remote::default());
    assert_eq!(s.remote_upstream("other"), (0, 0.0));
}

#[test]
fn members_with_other_servers_are_named() {
    let now = Instant::now();
    let mut s = snapshot(now);
    let with = |servers: u64| Received {
        report: Report {
            servers,
            ..Report::default()
        },
        at: now,
    };
    s.reports.insert("b".into(), with(7));
    s.reports.insert("c".into(), with(0));
    assert!(s.disagreeing(7).is_empty(), "c says nothing");
    assert_eq!(s.disagreeing(8), ["b"]);
    assert!(s.disagreeing(0).is_empty(), "nothing to compare with yet");
}

#[test]
fn a_stop_waits_for_every_member_to_report_the_drain() {
    let now = Instant::now();
    let mut s = snapshot(now);
    assert!(!s.drained_everywhere("app", 0), "no drain key");
    s.drains.insert(
        ("app".into(), 0),
        Drain {
            reason: "idle".into(),
            revision: 10,
        },
    );
    let put = |s: &mut Snapshot, id: &str, r: Report| {
        s.reports.insert(id.into(), Received { report: r, at: now });
    };
    put(&mut s, "b", report(10, busy(0, 9_000, true), 0, 0.0));
    assert!(!s.drained_everywhere("app", 0), "c has not reported");
    put(&mut s, "c", report(9, busy(0, 9_000, true), 0, 0.0));
    assert!(
        !s.drained_everywhere("app", 0),
        "c's report predates the drain"
    );
    put(&mut s, "c", report(11, busy(1, 0, true), 0, 0.0));
    assert!(
        !s.drained_everywhere("app", 0),
        "c still has a request on it"
    );
    assert!(!s.reclaimed("app", 0), "draining everywhere it is seen");
    put(&mut s, "c", report(11, busy(0, 0, false), 0, 0.0));
    assert!(!s.drained_everywhere("app", 0), "c still routes to it");
    assert!(s.reclaimed("app", 0), "c took it back after the drain");
    put(&mut s, "c", report(11, None, 0, 0.0));
    assert!(s.drained_everywhere("app", 0), "stopped in c's view");
    s.members.remove("b");
    s.reports.remove("b");
    assert!(
        s.drained_everywhere("app", 0),
        "a dead member is not waited for"
    );
}
