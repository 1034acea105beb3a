//! Admission against `max_conns`: a compare-and-swap on each server's in-flight counter, so no
//! number of racing requests ever puts more than the cap in flight on one server, and a request
//! ending wakes the requests held for room.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rouse_core::state::ServerState;
use rouse_state::{Admission, Table};
use tokio::time::Instant;

fn table(text: &str) -> Table {
    Table::new(&rouse_config::parse("t.toml", text).expect("valid"))
}

/// Three static servers, two requests each at most.
const CAPPED: &str = "[[upstream]]\nname = \"s\"\nsupervisor = \"none\"\n\
    [[upstream.server]]\naddress = \"127.0.0.1:9001\"\nmax_conns = 2\n\
    [[upstream.server]]\naddress = \"127.0.0.1:9002\"\nmax_conns = 2\n\
    [[upstream.server]]\naddress = \"127.0.0.1:9003\"\nmax_conns = 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_admissions_never_exceed_the_cap_on_one_server() {
    let t = table(CAPPED);
    let server = Arc::clone(&t.upstreams[0].servers[0]);
    assert_eq!(server.max_conns(), 2);
    // What the tasks themselves see: how many hold a guard at once.
    let holding = Arc::new(AtomicU32::new(0));
    let most = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (server, holding, most) =
                (Arc::clone(&server), Arc::clone(&holding), Arc::clone(&most));
            tokio::spawn(async move {
                let mut admitted = 0u32;
                for _ in 0..500 {
                    if let Some(guard) =
                        server.try_begin_request(Some(2), tokio::time::Instant::now())
                    {
                        let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        most.fetch_max(server.in_flight(), Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        holding.fetch_sub(1, Ordering::SeqCst);
                        drop(guard);
                        admitted += 1;
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.expect("task");
    }
    assert!(most.load(Ordering::SeqCst) <= 2, "{most:?} in flight");
    assert!(admitted > 0, "the cap let nobody in");
    assert_eq!(server.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_upstream_admissions_fill_every_server_to_its_cap_and_no_further() {
    let t = table(CAPPED);
    let up = Arc::clone(&t.upstreams[0]);
    let most: Arc<Vec<AtomicU32>> = Arc::new((0..3).map(|_| AtomicU32::new(0)).collect());
    let tasks: Vec<_> = (0..48)
        .map(|_| {
            let (up, most) = (Arc::clone(&up), Arc::clone(&most));
            tokio::spawn(async move {
                let mut full = 0u32;
                for _ in 0..300 {
                    match up.admit(Instant::now(), &[]) {
                        Admission::Admitted(at, guard) => {
                            most[at].fetch_max(up.servers[at].in_flight(), Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            drop(guard);
                        }
                        Admission::Full => {
                            full += 1;
                            tokio::task::yield_now().await;
                        }
                        Admission::NoServer => panic!("static servers are ready"),
                    }
                }
                full
            })
        })
        .collect();
    let mut full = 0;
    for task in tasks {
        full += task.await.expect("task");
    }
    for (at, m) in most.iter().enumerate() {
        let m = m.load(Ordering::SeqCst);
        assert!((1..=2).contains(&m), "server {at} had {m} in flight");
    }
    // 48 tasks for 6 places: some must have found everything full.
    assert!(full > 0);
}

#[tokio::test]
async fn full_servers_say_full_and_a_request_ending_makes_room() {
    let t = table(CAPPED);
    let up = &t.upstreams[0];
    let now = Instant::now();
    let guards: Vec<_> = (0..6)
        .map(|_| match up.admit(now, &[]) {
            Admission::Admitted(_, g) => g,
            other => panic!("room expected, got {other:?}"),
        })
        .collect();
    assert!(matches!(up.admit(now, &[]), Admission::Full));
    // Tried servers are not "full": they are out of the question.
    assert!(matches!(up.admit(now, &[0, 1, 2]), Admission::NoServer));
    drop(guards);
    assert!(matches!(up.admit(now, &[]), Admission::Admitted(..)));
}

#[tokio::test]
async fn a_server_starting_caps_ready_ones_at_target() {
    let text = "[[upstream]]\nname = \"e\"\ntarget_in_flight = 2\n\
        [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"x\"\n\
        [[upstream.server]]\naddress = \"127.0.0.1:9102\"\ncommand = \"x\"\n";
    let t = table(text);
    let up = &t.upstreams[0];
    let now = Instant::now();
    up.servers[0].set_state(ServerState::Ready, now);
    up.servers[1].set_state(ServerState::Starting, now);
    let mut guards: Vec<_> = (0..2)
        .map(|_| match up.admit(now, &[]) {
            Admission::Admitted(0, g) => g,
            other => panic!("server 0 expected, got {other:?}"),
        })
        .collect();
    // At target while capacity is on its way: the next request waits for it.
    assert!(matches!(up.admit(now, &[]), Admission::Full));
    // The new server is up: it takes the next ones, then, nothing starting any more, the
    // servers take everything as before.
    up.servers[1].set_state(ServerState::Ready, now);
    for _ in 0..6 {
        match up.admit(now, &[]) {
            Admission::Admitted(_, g) => guards.push(g),
            other => panic!("no cap without a start, got {other:?}"),
        }
    }
    assert_eq!(up.servers[0].in_flight() + up.servers[1].in_flight(), 8);
}

#[tokio::test(start_paused = true)]
async fn a_request_ending_wakes_a_held_one_only_while_requests_are_held() {
    let t = table(CAPPED);
    let up = &t.upstreams[0];
    let guard = match up.admit(Instant::now(), &[]) {
        Admission::Admitted(_, g) => g,
        other => panic!("{other:?}"),
    };
    // Nothing held: ending a request leaves no wake-up behind for a later waiter.
    drop(guard);
    let held = up.hold().expect("under queue_limit");
    assert!(held.is_first());
    assert!(
        tokio::time::timeout(Duration::from_secs(1), held.rung())
            .await
            .is_err(),
        "woken with nothing ended"
    );
    let guard = match up.admit(Instant::now(), &[]) {
        Admission::Admitted(_, g) => g,
        other => panic!("{other:?}"),
    };
    drop(guard);
    tokio::time::timeout(Duration::from_secs(1), held.rung())
        .await
        .expect("a request ending wakes the held one");
    drop(held);
}

/// A request held when a start failed hears of it even if the revival that followed has
/// already withdrawn the standing error (it may run before the held request looks again).
#[tokio::test]
async fn a_failed_start_reaches_the_requests_held_for_it_even_after_a_revival() {
    let table = table(
        "[[upstream]]\nname = \"e\"\n[[upstream.server]]\n\
         address = \"127.0.0.1:9101\"\ncommand = \"x\"\n",
    );
    let up = &table.upstreams[0];
    let before = up.start_failures();
    assert_eq!(up.failed_since(before), None);
    up.fail_held("spawn error: no such file".to_owned());
    // The revival begins before the held request looked.
    up.set_start_error(None);
    assert_eq!(up.start_error(), None, "new requests wait for the revival");
    assert_eq!(
        up.failed_since(before).as_deref(),
        Some("spawn error: no such file"),
        "the one held through the failure is told"
    );
    assert_eq!(
        up.failed_since(up.start_failures()),
        None,
        "later ones are not"
    );
}

/// A request's start and its end both mark the server active (what its idle timeout counts
/// from): at the instants given, the end's included when the caller has one at hand, and at
/// the clock's when the guard is simply dropped.
#[tokio::test(start_paused = true)]
async fn a_request_s_start_and_end_mark_its_server_active() {
    let t = table(CAPPED);
    let server = Arc::clone(&t.upstreams[0].servers[0]);
    let start = Instant::now() + Duration::from_secs(10);
    let guard = server.try_begin_request(None, start).expect("room");
    assert_eq!(server.last_active(), start);
    let end = start + Duration::from_secs(3);
    guard.end_at(end);
    assert_eq!(server.in_flight(), 0);
    assert_eq!(server.last_active(), end);
    let guard = server.try_begin_request(None, end).expect("room");
    tokio::time::advance(Duration::from_secs(20)).await;
    drop(guard);
    assert_eq!(server.in_flight(), 0);
    assert_eq!(server.last_active(), Instant::now());
}
