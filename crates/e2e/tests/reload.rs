//! Reload while serving: upstreams and servers are added, changed and removed by diff, under
//! load, with no failed request. Servers that stay keep their processes; removed ones are
//! drained, then stopped; requests held for an upstream that a reload replaces are served by
//! its successor.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::net::SocketAddr;

use common::{
    Load, WAIT, assert_all_ok_from, backend_pids, backend_server, client, config, config_with,
    embedded_upstream, free_addrs, get, log_if_asked, refuses, static_upstream, url,
};
use rouse_core::state::ServerState;
use rouse_e2e::{spawn_in_process, wait_until};
use rouse_state::metrics::StopLabels;
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request_and_keeps_supervised_servers() {
    let a = spawn_in_process("a").await;
    let b = spawn_in_process("b").await;
    let [e_addr] = free_addrs::<1>();
    let embedded = embedded_upstream(
        "e",
        &["e.example"],
        "min_servers = 1",
        &[backend_server(e_addr, "e0", &[], "")],
    );
    let before = format!("{}\n{embedded}", static_upstream("s", &[], "", &[a.addr()]));
    let rouse = rouse::Rouse::start(config(&before))
        .await
        .expect("rouse starts");
    let e_server = rouse.table().upstreams[1].servers[0].clone();
    wait_until("the embedded server is ready", WAIT, || async {
        e_server.state() == ServerState::Ready
    })
    .await;

    // Clients on both upstreams, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for n in 0..6 {
        let c = client();
        let u = url(rouse.addr(), "/");
        let host = (n % 2 == 1).then_some("e.example");
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let mut req = c.get(&u);
                if let Some(h) = host {
                    req = req.header("host", h);
                }
                let r = req.send().await.expect("an answer");
                let status = r.status().as_u16();
                answers.push((status, r.text().await.unwrap_or_default()));
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. The static upstream moves from a to b under load.
    let after = format!("{}\n{embedded}", static_upstream("s", &[], "", &[b.addr()]));
    let not_applied = rouse.reload(&config(&after)).await;
    assert!(not_applied.is_empty(), "{not_applied:?}");
    let a_at_reload = a.stats().requests;
    wait_until("b takes the static traffic", WAIT, || async {
        b.stats().requests > 20
    })
    .await;

    // 2. A supervised upstream's own settings change: applied, its server and process kept.
    let changed = after.replace("min_servers = 1", "min_servers = 1\nidle_timeout = \"9s\"");
    assert!(rouse.reload(&config(&changed)).await.is_empty());
    assert_eq!(
        rouse.table().upstreams[1].config.idle_timeout,
        Duration::from_secs(9)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(timeout(WAIT, t).await.unwrap().unwrap());
    }
    assert!(all.len() > 100, "load ran: {} answers", all.len());
    let failed: Vec<_> = all.iter().filter(|(s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "no failed request: {failed:?}");
    assert!(all.iter().any(|(_, body)| body == "e0"));
    // a is no longer chosen once the reload is in: at most what was in flight then.
    assert!(
        a.stats().requests <= a_at_reload + 6,
        "{} vs {a_at_reload}",
        a.stats().requests
    );

    // The embedded server was kept through both reloads, with its process: same object,
    // never restarted.
    assert!(Arc::ptr_eq(
        &rouse.table().upstreams[1].servers[0],
        &e_server
    ));
    assert_eq!(e_server.state(), ServerState::Ready);
    let starts = rouse
        .table()
        .journal
        .recent(usize::MAX)
        .iter()
        .filter(|e| e.upstream == "e" && e.what == "start")
        .count();
    assert_eq!(starts, 1, "the embedded server started once, at start-up");
    rouse.shutdown().await;
}

/// Waits until every server of upstream `u` of the current table is `state`.
async fn all_servers(rouse: &rouse::Rouse, u: usize, state: ServerState) {
    wait_until("the servers' state", WAIT, || async {
        rouse.table().upstreams[u]
            .servers
            .iter()
            .all(|s| s.state() == state)
    })
    .await;
}

fn stops_for_reload(rouse: &rouse::Rouse, upstream: &str, server: SocketAddr) -> u64 {
    rouse
        .table()
        .metrics
        .stops
        .get_or_create(&StopLabels {
            upstream: upstream.to_owned(),
            server: server.to_string(),
            reason: "reload".to_owned(),
        })
        .get()
}

/// The Must-show case: one server removed and one added to a supervised upstream under load.
/// Nothing fails; the server that stays keeps its process; the removed one is drained (its
/// requests finish), then stopped; the new one starts and takes its share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_supervised_servers_under_load_with_no_failed_request() {
    log_if_asked();
    let [a, b, c] = free_addrs::<3>();
    // Slow answers, so that the removed server has requests in flight when it is drained.
    let server = |addr, id| backend_server(addr, id, &["--latency-ms", "20"], "");
    let upstream = |servers: &[String]| {
        embedded_upstream("e", &[], "min_servers = 2\nmax_servers = 2", servers)
    };
    let rouse = rouse::Rouse::start(config(&upstream(&[server(a, "a"), server(b, "b")])))
        .await
        .expect("rouse starts");
    all_servers(&rouse, 0, ServerState::Ready).await;
    let removed = Arc::clone(&rouse.table().upstreams[0].servers[0]);
    let kept = Arc::clone(&rouse.table().upstreams[0].servers[1]);
    let b_pids = backend_pids(b);
    assert_eq!(b_pids.len(), 1, "{b_pids:?}");

    let load = Load::start(rouse.addr(), "/", None, 8);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let not_applied = rouse
        .reload(&config(&upstream(&[server(b, "b"), server(c, "c")])))
        .await;
    assert!(not_applied.is_empty(), "{not_applied:?}");
    wait_until("c is ready and a is gone", WAIT, || async {
        rouse.table().upstreams[0].servers[1].state() == ServerState::Ready
            && removed.state() == ServerState::Stopped
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let answers = load.finish().await;

    assert_all_ok_from(&answers, &["a", "b", "c"]);
    // b: the same server object at its new position, the same process.
    assert!(Arc::ptr_eq(&rouse.table().upstreams[0].servers[0], &kept));
    assert_eq!(kept.index(), 0);
    assert_eq!(backend_pids(b), b_pids);
    // a: drained (nothing in flight any more), stopped, its process gone.
    assert_eq!(removed.in_flight(), 0);
    assert!(backend_pids(a).is_empty());
    assert!(refuses(a).await);
    assert_eq!(stops_for_reload(&rouse, "e", a), 1);
    let journal = rouse.table().journal.recent(usize::MAX);
    let what: Vec<&str> = journal
        .iter()
        .filter(|e| e.address == a.to_string())
        .map(|e| e.what)
        .collect();
    // Newest first.
    assert!(what.starts_with(&["stopped", "stop", "drain"]), "{what:?}");
    rouse.shutdown().await;
    assert!(backend_pids(b).is_empty() && backend_pids(c).is_empty());
}

/// A server whose command changed is a new server on the same address: the old process is
/// drained and stopped first, and the requests that come meanwhile wait for the new one
/// instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_command_replaces_the_process_without_failing_a_request() {
    log_if_asked();
    let [a] = free_addrs::<1>();
    let upstream = |id| {
        embedded_upstream(
            "e",
            &[],
            "min_servers = 1",
            &[backend_server(a, id, &["--latency-ms", "20"], "")],
        )
    };
    let rouse = rouse::Rouse::start(config(&upstream("v1")))
        .await
        .expect("rouse starts");
    all_servers(&rouse, 0, ServerState::Ready).await;
    let v1_pids = backend_pids(a);

    let load = Load::start(rouse.addr(), "/", None, 6);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rouse.reload(&config(&upstream("v2"))).await.is_empty());
    let c = client();
    let u = url(rouse.addr(), "/");
    wait_until("v2 answers", WAIT, || async {
        get(&c, &u, &[]).await.body == "v2"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answers = load.finish().await;

    assert_all_ok_from(&answers, &["v1", "v2"]);
    // Answers switch once: no v1 after the first v2.
    let mut by_time: Vec<&common::Answer> = answers.iter().collect();
    by_time.sort_by_key(|x| x.sent + x.took);
    let first_v2 = by_time.iter().position(|x| x.body == "v2").expect("a v2");
    assert!(
        by_time[first_v2..].iter().all(|x| x.body == "v2"),
        "one process at a time"
    );
    let v2_pids = backend_pids(a);
    assert_eq!(v2_pids.len(), 1);
    assert_ne!(v2_pids, v1_pids);
    rouse.shutdown().await;
}

/// A request held for an upstream whose config a reload changes is served by the new
/// upstream, by the same server that was starting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_is_served_across_a_reload_of_its_upstream() {
    log_if_asked();
    let [a] = free_addrs::<1>();
    let upstream = |extra| {
        embedded_upstream(
            "e",
            &[],
            extra,
            &[backend_server(a, "e0", &["--delay-listen", "800"], "")],
        )
    };
    let rouse = rouse::Rouse::start(config(&upstream("")))
        .await
        .expect("rouse starts");
    let server = Arc::clone(&rouse.table().upstreams[0].servers[0]);
    let c = client();
    let u = url(rouse.addr(), "/");
    let held = tokio::spawn(async move { get(&c, &u, &[]).await });
    wait_until("the server starts for the request", WAIT, || async {
        server.state() == ServerState::Starting
    })
    .await;
    let before = Arc::clone(&rouse.table().upstreams[0]);
    assert_eq!(before.held(), 1);
    assert!(
        rouse
            .reload(&config(&upstream("idle_timeout = \"9s\"")))
            .await
            .is_empty()
    );
    let after = Arc::clone(&rouse.table().upstreams[0]);
    assert!(!Arc::ptr_eq(&before, &after), "a new upstream");
    assert!(Arc::ptr_eq(&after.servers[0], &server), "the same server");
    let answer = timeout(WAIT, held).await.unwrap().unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "e0"));
    assert_eq!(before.held() + after.held(), 0);
    let starts = rouse
        .table()
        .journal
        .recent(usize::MAX)
        .iter()
        .filter(|e| e.what == "start")
        .count();
    assert_eq!(starts, 1, "one start, not one per generation");
    rouse.shutdown().await;
}

/// Whole supervised upstreams come and go: a new one wakes on its first request, a removed
/// one's servers are stopped and its host no longer routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_supervised_upstreams() {
    log_if_asked();
    let [x, y] = free_addrs::<2>();
    let ux = embedded_upstream(
        "x",
        &["x.example"],
        "min_servers = 1",
        &[backend_server(x, "x0", &[], "")],
    );
    let uy = embedded_upstream("y", &["y.example"], "", &[backend_server(y, "y0", &[], "")]);
    let rouse = rouse::Rouse::start(config(&ux))
        .await
        .expect("rouse starts");
    all_servers(&rouse, 0, ServerState::Ready).await;
    let x_server = Arc::clone(&rouse.table().upstreams[0].servers[0]);
    let c = client();
    let u = url(rouse.addr(), "/");
    assert_eq!(get(&c, &u, &[("host", "x.example")]).await.body, "x0");

    assert!(rouse.reload(&config(&uy)).await.is_empty());
    let y_answer = get(&c, &u, &[("host", "y.example")]).await;
    assert_eq!((y_answer.status, y_answer.body.as_str()), (200, "y0"));
    wait_until("x is stopped", WAIT, || async {
        x_server.state() == ServerState::Stopped && backend_pids(x).is_empty()
    })
    .await;
    assert_eq!(get(&c, &u, &[("host", "x.example")]).await.status, 404);
    assert_eq!(stops_for_reload(&rouse, "x", x), 1);
    rouse.shutdown().await;
}

/// A removed server whose WebSocket stays open does not hold the reload up for ever: it is
/// stopped once `shutdown_timeout` has passed, as a SIGTERM would, and the socket closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_server_kept_busy_by_a_websocket_is_stopped_after_shutdown_timeout() {
    use futures_util::StreamExt;
    log_if_asked();
    let [a, b] = free_addrs::<2>();
    let proxy = "connect_timeout = \"1s\"\nshutdown_timeout = \"1s\"";
    let upstream = |addr, id| {
        config_with(
            proxy,
            &embedded_upstream(
                "e",
                &[],
                "min_servers = 1",
                // The test backend waits for its WebSockets on SIGTERM: SIGKILL comes sooner.
                &[backend_server(addr, id, &[], "stop_timeout = \"500ms\"")],
            ),
        )
    };
    let rouse = rouse::Rouse::start(upstream(a, "a"))
        .await
        .expect("rouse starts");
    all_servers(&rouse, 0, ServerState::Ready).await;
    let removed = Arc::clone(&rouse.table().upstreams[0].servers[0]);
    let (mut ws, _) = common::websocket(rouse.addr()).await;
    assert_eq!(removed.in_flight(), 1);

    let reloaded = tokio::time::Instant::now();
    assert!(rouse.reload(&upstream(b, "b")).await.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        removed.state(),
        ServerState::Draining,
        "its WebSocket is open"
    );
    assert_eq!(backend_pids(a).len(), 1);
    wait_until("the removed server is stopped", WAIT, || async {
        removed.state() == ServerState::Stopped
    })
    .await;
    assert!(reloaded.elapsed() >= Duration::from_millis(900));
    assert!(backend_pids(a).is_empty());
    // The WebSocket ends with its server.
    let end = timeout(WAIT, ws.next()).await.expect("the socket ends");
    assert!(
        !matches!(
            end,
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_)))
        ),
        "{end:?}"
    );
    let c = client();
    assert_eq!(get(&c, &url(rouse.addr(), "/"), &[]).await.body, "b");
    rouse.shutdown().await;
}

/// `[cluster]` is the process's etcd session (its lease, membership and leadership): a change
/// is left to a new process, as one of `[admin]` or `[log]` is, and the running one keeps its
/// value until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_change_is_left_to_a_new_process() {
    let a = spawn_in_process("a").await;
    let body = static_upstream("s", &[], "", &[a.addr()]);
    let rouse = rouse::Rouse::start(config(&body))
        .await
        .expect("rouse starts");
    let cluster = |name: &str| {
        format!("{body}\n[cluster]\netcd = [\"http://127.0.0.1:2379\"]\nname = \"{name}\"\n")
    };
    assert_eq!(rouse.reload(&config(&cluster("edge"))).await, ["[cluster]"]);
    // Not applied: the same file again is still a change from what runs.
    assert_eq!(rouse.reload(&config(&cluster("edge"))).await, ["[cluster]"]);
    assert_eq!(rouse.reload(&config(&body)).await, Vec::<String>::new());
    // The rest of a reload still applies alongside.
    let b = spawn_in_process("b").await;
    let moved = static_upstream("s", &[], "", &[b.addr()]);
    let with_cluster =
        format!("{moved}\n[cluster]\netcd = [\"http://127.0.0.1:2379\"]\nname = \"edge\"\n");
    assert_eq!(rouse.reload(&config(&with_cluster)).await, ["[cluster]"]);
    let r = client()
        .get(url(rouse.addr(), "/"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "b");
}
