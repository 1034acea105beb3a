use std::collections::HashMap;

use super::*;
use crate::report::{Report, ServerLoad, UpstreamLoad};
use crate::snapshot::{Drain, EtcdState, Received};

const ASK: Duration = Duration::from_secs(5);

fn key(index: usize) -> Key {
    ("app".to_owned(), index)
}

fn snapshot(members: &[&str]) -> Snapshot {
    let mut s = Snapshot::new("shop", "a");
    s.etcd = EtcdState::Ok;
    s.members = members.iter().map(|m| m.to_string()).collect();
    s
}

fn drain(s: &mut Snapshot, index: usize, revision: i64) {
    s.drains.insert(
        key(index),
        Drain {
            reason: "idle".into(),
            revision,
        },
    );
}

fn states(pairs: &[(usize, ServerState)]) -> impl Fn(&str, usize) -> Option<ServerState> {
    let map: HashMap<usize, ServerState> = pairs.iter().copied().collect();
    move |up, i| (up == "app").then(|| map.get(&i).copied()).flatten()
}

#[test]
fn a_key_drains_a_ready_server_once_and_its_removal_takes_it_back() {
    let now = Instant::now();
    let mut book = DrainBook::new(ASK);
    let mut s = snapshot(&["a", "b"]);
    drain(&mut s, 0, 7);
    let ready = states(&[(0, ServerState::Ready)]);
    assert_eq!(
        book.follow(&s, false, &ready, now),
        vec![(key(0), Follow::Drain(StopReason::Idle))]
    );
    let draining = states(&[(0, ServerState::Draining)]);
    assert_eq!(book.follow(&s, false, &draining, now), vec![]);
    s.drains.clear();
    assert_eq!(
        book.follow(&s, false, &draining, now),
        vec![(key(0), Follow::Undrain)]
    );
    assert!(book.is_empty());
}

#[test]
fn a_server_taken_back_for_demand_is_not_drained_again_by_the_same_key() {
    let now = Instant::now();
    let mut book = DrainBook::new(ASK);
    let mut s = snapshot(&["a", "b"]);
    drain(&mut s, 0, 7);
    let ready = states(&[(0, ServerState::Ready)]);
    assert_eq!(book.follow(&s, false, &ready, now).len(), 1);
    // The replica undrained it for its held requests: the key still stands.
    assert_eq!(book.follow(&s, false, &ready, now), vec![]);
    // A new drain (a new revision) applies again.
    drain(&mut s, 0, 9);
    assert_eq!(
        book.follow(&s, false, &ready, now),
        vec![(key(0), Follow::Drain(StopReason::Idle))]
    );
}

#[test]
fn the_leaders_own_drain_waits_for_its_key_then_gives_up() {
    let now = Instant::now();
    let mut book = DrainBook::new(ASK);
    let mut s = snapshot(&["a"]);
    let draining = states(&[(0, ServerState::Draining), (1, ServerState::Draining)]);
    book.asked(key(0), now);
    book.asked(key(1), now);
    assert_eq!(book.follow(&s, true, &draining, now + ASK / 2), vec![]);
    drain(&mut s, 0, 3);
    // Key 0 arrived: kept, and not drained a second time; key 1 never did.
    assert_eq!(
        book.follow(&s, true, &draining, now + ASK),
        vec![(key(1), Follow::Undrain)]
    );
    assert_eq!(book.len(), 1);
}

#[test]
fn etcd_lost_undrains_everything() {
    let now = Instant::now();
    let mut book = DrainBook::new(ASK);
    let mut s = snapshot(&["a", "b"]);
    drain(&mut s, 0, 3);
    drain(&mut s, 1, 4);
    let ready = states(&[(0, ServerState::Ready), (1, ServerState::Ready)]);
    assert_eq!(book.follow(&s, true, &ready, now).len(), 2);
    // The shell forgets every drain when etcd stops answering.
    s.etcd = EtcdState::Unreachable;
    s.drains.clear();
    let draining = states(&[(0, ServerState::Draining), (1, ServerState::Draining)]);
    let mut out = book.follow(&s, false, &draining, now);
    out.sort_by_key(|(k, _)| k.1);
    assert_eq!(
        out,
        vec![(key(0), Follow::Undrain), (key(1), Follow::Undrain)]
    );
}

#[test]
fn the_leader_forgets_a_key_once_the_server_is_down_everywhere() {
    let now = Instant::now();
    let mut book = DrainBook::new(ASK);
    let mut s = snapshot(&["a", "b"]);
    drain(&mut s, 0, 5);
    book.asked(key(0), now);
    let stopped = states(&[(0, ServerState::Stopped)]);
    let report = |seen: i64, listed: bool| {
        let mut up = UpstreamLoad::default();
        if listed {
            up.servers.insert(
                0,
                ServerLoad {
                    draining: true,
                    ..ServerLoad::default()
                },
            );
        }
        let mut r = Report {
            seen,
            ..Report::default()
        };
        r.upstreams.insert("app".into(), up);
        Received { report: r, at: now }
    };
    s.reports.insert("b".into(), report(5, true));
    assert_eq!(
        book.follow(&s, true, &stopped, now),
        vec![],
        "b still has it"
    );
    s.reports.insert("b".into(), report(5, false));
    assert_eq!(book.follow(&s, false, &stopped, now), vec![], "not leading");
    assert_eq!(
        book.follow(&s, true, &stopped, now),
        vec![(key(0), Follow::Forget)]
    );
    assert_eq!(book.follow(&s, true, &stopped, now), vec![], "asked once");
    s.drains.clear();
    assert_eq!(book.follow(&s, true, &stopped, now), vec![]);
    assert!(book.is_empty());
}
