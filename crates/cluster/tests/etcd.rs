//! The etcd shell against a real etcd (rouse-e2e's harness): two `Cluster`s of one cluster,
//! as two rouse replicas would run them, and etcd stopped and started under them.
//!
//! Paused time cannot drive a real etcd: every wait polls the snapshots (every 50 ms) for a
//! condition, with a bound. A short `lease_ttl` (2 s, etcd's least) and `timeout` keep the
//! lease and failure cases fast.

use std::collections::BTreeSet;
use std::time::Duration;

mod common;

use common::{A, B, LEASE_TTL, SOON, TIMEOUT, config, until};

use rouse_cluster::{Cluster, ClusterHandle, EtcdState, Report, ServerLoad, UpstreamLoad};
use rouse_e2e::Etcd;
use tokio::time::Instant;

fn members(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

/// Both `Ok`, both members, and agreeing on a leader; returns (leader, follower).
async fn settled(a: &Cluster, b: &Cluster) -> (ClusterHandle, ClusterHandle) {
    let want = members(&[A, B]);
    let mut leaders = Vec::new();
    for c in [a, b] {
        let snap = until(
            &c.handle(),
            "Ok with both members and a leader",
            SOON,
            |s| s.etcd == EtcdState::Ok && s.members == want && s.leader.is_some(),
        )
        .await;
        leaders.push(snap.leader.clone());
    }
    let leader = until(&a.handle(), "agreeing with b on the leader", SOON, |s| {
        s.leader == leaders[1]
    })
    .await
    .leader
    .clone();
    if leader.as_deref() == Some(A) {
        (a.handle(), b.handle())
    } else {
        (b.handle(), a.handle())
    }
}

#[tokio::test]
async fn two_replicas_see_each_other_and_exactly_one_leads() {
    let etcd = Etcd::start().await;
    let a = Cluster::start(&config(&etcd), A.into());
    let b = Cluster::start(&config(&etcd), B.into());
    let (leader, follower) = settled(&a, &b).await;

    let now = Instant::now();
    let (l, f) = (leader.snapshot(), follower.snapshot());
    assert!(l.leading(now), "{l:#?}");
    assert!(!f.leading(now), "{f:#?}");
    assert!(l.lease_until.is_some_and(|until| until > now));
    assert!(f.lease_until.is_some_and(|until| until > now));
    assert_eq!((l.name.as_str(), f.name.as_str()), ("test", "test"));
    assert!(l.revision > 0 && f.revision > 0);
}

#[tokio::test]
async fn a_report_published_by_one_replica_shows_in_the_others_snapshot() {
    let etcd = Etcd::start().await;
    let a = Cluster::start(&config(&etcd), A.into());
    let b = Cluster::start(&config(&etcd), B.into());
    settled(&a, &b).await;

    let mut report = Report {
        seen: 12345,
        ..Report::default()
    };
    let mut up = UpstreamLoad {
        held: 2,
        rps: 7.5,
        ..UpstreamLoad::default()
    };
    up.servers.insert(
        1,
        ServerLoad {
            in_flight: 3,
            idle_ms: 0,
            draining: false,
        },
    );
    report.upstreams.insert("app".into(), up);
    let published = Instant::now();
    a.handle().publish(report.clone());

    // seen is the control plane's, put as it was: the shell does not touch it.
    let snap = until(&b.handle(), "holding a's report", SOON, |s| {
        s.reports.get(A).is_some_and(|r| r.report == report)
    })
    .await;
    assert!(snap.reports[A].at >= published);
    assert_eq!(snap.remote("app", 1).in_flight, 3);
    assert_eq!(snap.remote_upstream("app"), (2, 7.5));
    // A replica's own report is not remote load.
    assert!(!a.handle().snapshot().reports.contains_key(A));
}

#[tokio::test]
async fn the_leaders_drain_shows_everywhere_with_its_revision_and_a_followers_does_not() {
    let etcd = Etcd::start().await;
    let a = Cluster::start(&config(&etcd), A.into());
    let b = Cluster::start(&config(&etcd), B.into());
    let (leader, follower) = settled(&a, &b).await;

    let before = leader.snapshot().revision;
    leader.drain("app", 1, "idle");
    let key = ("app".to_owned(), 1);
    let mut revisions = Vec::new();
    for h in [&leader, &follower] {
        let snap = until(h, "holding the drain", SOON, |s| {
            s.drains.contains_key(&key)
        })
        .await;
        let drain = &snap.drains[&key];
        assert_eq!(drain.reason, "idle");
        assert!(drain.revision > before, "{drain:?} after revision {before}");
        assert!(snap.revision >= drain.revision);
        revisions.push(drain.revision);
    }
    assert_eq!(revisions[0], revisions[1]);

    // The follower's commands run in order: by the time its undrain of app/1 shows, its drain
    // of app/2 was carried out, and was not put since it does not lead.
    follower.drain("app", 2, "idle");
    follower.undrain("app", 1);
    for h in [&leader, &follower] {
        let snap = until(h, "without the drain", SOON, |s| s.drains.is_empty()).await;
        assert!(snap.drains.is_empty(), "{snap:#?}");
    }
}

#[tokio::test]
async fn when_the_leader_leaves_the_other_leads_at_once() {
    let etcd = Etcd::start().await;
    let a = Cluster::start(&config(&etcd), A.into());
    let b = Cluster::start(&config(&etcd), B.into());
    let (leader, follower) = settled(&a, &b).await;
    let (leaving, staying) = if leader.snapshot().id == A {
        (a, b)
    } else {
        (b, a)
    };

    let left = Instant::now();
    leaving.leave().await;
    let stay_id = follower.snapshot().id.clone();
    let snap = until(&follower, "leading alone", LEASE_TTL, |s| {
        s.leading(Instant::now()) && s.members == members(&[&stay_id])
    })
    .await;
    assert!(
        left.elapsed() < LEASE_TTL,
        "took {:?}: {snap:#?}",
        left.elapsed()
    );
    // The one that left is neither a member nor leading in its own view.
    let gone = leader.snapshot();
    assert!(!gone.leading(Instant::now()), "{gone:#?}");
    drop(staying);
}

#[tokio::test]
async fn a_replica_that_crashes_is_gone_after_its_lease_ttl() {
    let etcd = Etcd::start().await;
    let a = Cluster::start(&config(&etcd), A.into());
    let b = Cluster::start(&config(&etcd), B.into());
    let (leader, _) = settled(&a, &b).await;
    let (crashing, staying) = if leader.snapshot().id == A {
        (a, b)
    } else {
        (b, a)
    };
    let crashed_id = crashing.handle().snapshot().id.clone();
    let stay_id = staying.handle().snapshot().id.clone();

    // Dropped without leave: the task is aborted and etcd hears nothing.
    let crashed = Instant::now();
    drop(crashing);
    let snap = staying.handle().snapshot();
    assert!(snap.members.contains(&crashed_id), "{snap:#?}");

    let snap = until(&staying.handle(), "leading alone", LEASE_TTL + SOON, |s| {
        s.leading(Instant::now()) && s.members == members(&[&stay_id])
    })
    .await;
    // The lease runs out a TTL after its last keep-alive, at most a keep-alive period before
    // the crash.
    assert!(
        crashed.elapsed() >= LEASE_TTL - LEASE_TTL / 3 - Duration::from_millis(100),
        "gone after {:?}, before its lease could expire: {snap:#?}",
        crashed.elapsed()
    );
}

#[tokio::test]
async fn etcd_going_away_stops_the_lead_at_once_and_its_return_restores_it() {
    let mut etcd = Etcd::start().await;
    let a = Cluster::start(&config(&etcd), A.into());
    let b = Cluster::start(&config(&etcd), B.into());
    let (leader, follower) = settled(&a, &b).await;
    leader.drain("app", 1, "load");
    until(&follower, "holding the drain", SOON, |s| {
        !s.drains.is_empty()
    })
    .await;

    etcd.stop().await;
    let stopped = Instant::now();
    // The watch breaks with the connection; at worst the next keep-alive finds it gone.
    let promptly = TIMEOUT + LEASE_TTL / 3 + Duration::from_millis(500);
    for h in [&leader, &follower] {
        let snap = until(h, "Unreachable", promptly, |s| {
            s.etcd == EtcdState::Unreachable
        })
        .await;
        assert!(!snap.leading(Instant::now()), "{snap:#?}");
        assert_eq!(snap.lease_until, None);
        assert!(snap.drains.is_empty(), "drains stop applying: {snap:#?}");
    }
    assert!(stopped.elapsed() < promptly);

    etcd.start_again().await;
    let (leader, _) = settled(&a, &b).await;
    let snap = until(&leader, "leading", SOON, |s| s.leading(Instant::now())).await;
    assert!(
        snap.drains.is_empty(),
        "the old lease's drains are gone: {snap:#?}"
    );
}
