//! Held requests released by capacity, on a paused clock: who goes when room appears, in what
//! order, and what a request held too long is told.

use std::sync::{Arc, Mutex};

use http::{HeaderMap, Method, StatusCode};
use rouse_state::{Admission, InFlightGuard, Table};

use super::*;

/// One static server, one request at a time, held requests wait 5 s at most.
fn table() -> Table {
    let text = "[[upstream]]\nname = \"s\"\nsupervisor = \"none\"\nstart_timeout = \"5s\"\n\
                [[upstream.server]]\naddress = \"127.0.0.1:9001\"\nmax_conns = 1\n";
    Table::new(&rouse_config::parse("t.toml", text).expect("valid"))
}

fn occupy(up: &Upstream) -> InFlightGuard {
    match up.admit(Instant::now(), &[]) {
        Admission::Admitted(_, guard) => guard,
        other => panic!("room expected: {other:?}"),
    }
}

/// Holds a request named `name`; once a server takes it, notes the name and ends the request
/// at once, which makes room for the next.
fn spawn_held(
    table: &Arc<Table>,
    name: &'static str,
    order: &Arc<Mutex<Vec<&'static str>>>,
) -> tokio::task::JoinHandle<()> {
    let (table, order) = (Arc::clone(table), Arc::clone(order));
    tokio::spawn(async move {
        let up = Arc::clone(&table.upstreams[0]);
        let w = Waiter::new(&Method::GET, "/", &HeaderMap::new(), Instant::now());
        match hold(&table, &up, &w).await {
            Ok(Held::Admitted(_, guard)) => {
                order.lock().unwrap().push(name);
                drop(guard);
            }
            Ok(Held::Replaced) => panic!("{name}: replaced"),
            Err(resp) => panic!("{name}: {}", resp.status()),
        }
    })
}

/// Lets the spawned tasks run until `n` requests are held (bounded: they are all ready to).
async fn until_held(up: &Upstream, n: usize) {
    for _ in 0..1000 {
        if up.held() == n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{} held, not {n}", up.held());
}

#[tokio::test(start_paused = true)]
async fn room_goes_to_held_requests_one_at_a_time_in_arrival_order() {
    let table = Arc::new(table());
    let up = Arc::clone(&table.upstreams[0]);
    let busy = occupy(&up);
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (n, name) in ["a", "b", "c"].into_iter().enumerate() {
        tasks.push(spawn_held(&table, name, &order));
        until_held(&up, n + 1).await;
    }
    assert!(order.lock().unwrap().is_empty(), "nobody goes while full");
    // Room: "a" is woken, but has not run yet when a newcomer asks. Arriving while requests
    // are held, the newcomer queues behind them rather than take the room "a" was woken for.
    drop(busy);
    let w = Waiter::new(&Method::GET, "/", &HeaderMap::new(), Instant::now());
    let late = hold(&table, &up, &w);
    tokio::pin!(late);
    assert!(
        tokio::time::timeout(Duration::ZERO, late.as_mut())
            .await
            .is_err(),
        "the newcomer took the room"
    );
    for t in tasks {
        t.await.expect("task");
    }
    let Ok(Held::Admitted(_, guard)) = late.await else {
        panic!("the newcomer got no room");
    };
    order.lock().unwrap().push("late");
    drop(guard);
    assert_eq!(*order.lock().unwrap(), ["a", "b", "c", "late"]);
    assert_eq!(up.held(), 0);
    assert_eq!(up.servers[0].in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn held_while_every_server_stays_full_is_503_at_capacity_after_start_timeout() {
    let table = table();
    let up = &table.upstreams[0];
    let _busy = occupy(up);
    let arrived = Instant::now();
    let w = Waiter::new(&Method::GET, "/", &HeaderMap::new(), arrived);
    let Err(resp) = hold(&table, up, &w).await else {
        panic!("no room was ever made");
    };
    assert_eq!(arrived.elapsed(), Duration::from_secs(5), "start_timeout");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[answer::X_ROUSE_ERROR], "at-capacity");
    assert!(resp.headers().contains_key(RETRY_AFTER));
    assert_eq!(up.held(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_request_ending_late_in_the_wait_still_lets_the_held_one_in() {
    let table = Arc::new(table());
    let up = Arc::clone(&table.upstreams[0]);
    let busy = occupy(&up);
    let order = Arc::new(Mutex::new(Vec::new()));
    let task = spawn_held(&table, "a", &order);
    until_held(&up, 1).await;
    tokio::time::sleep(Duration::from_millis(4900)).await;
    drop(busy);
    task.await.expect("task");
    assert_eq!(*order.lock().unwrap(), ["a"]);
}

/// A request woken for room that the one ahead of it took keeps its place: when room comes
/// again it goes before those that arrived after it. (Woken requests that found no room used
/// to join the line again at its end: under `max_conns`, some waited many times longer.)
#[tokio::test(start_paused = true)]
async fn a_wake_up_that_finds_no_room_keeps_the_requests_place_in_line() {
    let table = Arc::new(table());
    let up = Arc::clone(&table.upstreams[0]);
    let busy = occupy(&up);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for (n, name) in ["a", "b", "c"].into_iter().enumerate() {
        let (table, mine, tx) = (Arc::clone(&table), Arc::clone(&up), tx.clone());
        tasks.push(tokio::spawn(async move {
            let w = Waiter::new(&Method::GET, "/", &HeaderMap::new(), Instant::now());
            match hold(&table, &mine, &w).await {
                // The request stays in flight until the test ends it.
                Ok(Held::Admitted(_, guard)) => tx.send((name, guard)).expect("open"),
                Ok(Held::Replaced) => panic!("{name}: replaced"),
                Err(resp) => panic!("{name}: {}", resp.status()),
            }
        }));
        until_held(&up, n + 1).await;
    }
    let mut order = Vec::new();
    let mut in_flight = busy;
    for _ in 0..3 {
        // One slot made; whoever is served keeps it until the next round.
        drop(in_flight);
        let (name, guard) = tokio::time::timeout(Duration::from_secs(1), rx.recv())
            .await
            .expect("someone was served")
            .expect("open");
        order.push(name);
        in_flight = guard;
        // Let every woken request look (and find no room) before the next slot is made.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }
    drop(in_flight);
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(order, ["a", "b", "c"]);
    assert_eq!(up.held(), 0);
}

/// A `start_timeout` too large to add to an instant (`"400000000000y"`) used to panic on every
/// held request; it means a wait with no end in sight, which room still ends.
#[tokio::test(start_paused = true)]
async fn a_start_timeout_too_large_to_add_to_an_instant_waits_instead_of_panicking() {
    let text = "[[upstream]]\nname = \"s\"\nsupervisor = \"none\"\n\
                [[upstream.server]]\naddress = \"127.0.0.1:9001\"\nmax_conns = 1\n";
    let mut config = rouse_config::parse("t.toml", text).expect("valid");
    config.upstreams[0].start_timeout = Duration::MAX;
    let table = Arc::new(Table::new(&config));
    let up = Arc::clone(&table.upstreams[0]);
    let busy = occupy(&up);
    let order = Arc::new(Mutex::new(Vec::new()));
    let task = spawn_held(&table, "a", &order);
    until_held(&up, 1).await;
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert!(order.lock().unwrap().is_empty(), "still waiting a day on");
    drop(busy);
    task.await.expect("no panic");
    assert_eq!(*order.lock().unwrap(), ["a"]);
}
