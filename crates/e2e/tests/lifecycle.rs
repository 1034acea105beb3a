//! Backend lifecycle with real child processes: rouse's embedded supervisor starts the test
//! backend on the first request, starts more under load, drains and stops idle ones, recovers
//! crashes, and answers 503 (with `Retry-After` and a reason) when it cannot serve in time.
//!
//! Every server here is a `rouse-test-backend` process that rouse itself starts and stops; the
//! tests look at rouse's shared table, at the backends' own `/stats`, at the processes (through
//! /proc) and ports, and at the HTTP answers.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    Answer, Load, WAIT, backend_pids, backend_server, by_body, client, embedded_upstream,
    free_addrs, get, held, log_if_asked, refuses, spawn_gets, start_rouse, state, states, url,
    wait_state,
};
use futures_util::{SinkExt, StreamExt};
use rouse::Rouse;
use rouse_e2e::{stats, try_stats, wait_until};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

// === helpers ===

/// Watches server `i` of upstream `u` from a thread of its own, polling every 100 µs (a server
/// revived at once is `failed` for well under a millisecond), and records each state with the
/// moment it was first seen, until `stop`.
fn watch_states_timed(
    r: &Rouse,
    u: usize,
    i: usize,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(&'static str, Instant)>> {
    let table = r.table();
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let server = &table.upstreams[u].servers[i];
        let mut seen = vec![(server.state().as_str(), Instant::now())];
        while !stop.load(Ordering::Relaxed) {
            let s = server.state().as_str();
            if seen.last().map(|l| l.0) != Some(s) {
                seen.push((s, Instant::now()));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        seen
    })
}

// === 1. wake on the first request ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_request_starts_exactly_one_server_and_succeeds() {
    log_if_asked();
    let addrs: [SocketAddr; 3] = free_addrs();
    let servers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| backend_server(*a, &format!("s{i}"), &[], ""))
        .collect();
    let rouse = start_rouse(&embedded_upstream("app", &[], "", &servers)).await;
    assert_eq!(
        states(&rouse, 0),
        ["stopped"; 3],
        "nothing runs before demand"
    );
    for a in addrs {
        assert!(backend_pids(a).is_empty(), "no process for {a} yet");
    }

    let c = client();
    let a = get(&c, &url(rouse.addr(), "/"), &[]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "s0"), "{a:?}");
    assert_eq!(state(&rouse, 0, 0), "ready");

    // A few reconciler ticks later, still only the first server: one request is no load.
    sleep(Duration::from_millis(800)).await;
    assert_eq!(states(&rouse, 0), ["ready", "stopped", "stopped"]);
    assert_eq!(backend_pids(addrs[0]).len(), 1, "one process for s0");
    for a in &addrs[1..] {
        assert!(backend_pids(*a).is_empty(), "no process for {a}");
        assert!(refuses(*a).await, "{a} is not listening");
    }
    let s = stats(addrs[0]).await;
    assert_eq!(s.requests, 1, "{s:?}");
    assert_eq!(held(&rouse, 0), 0);
}

// === 2. a crowd of first requests: one start ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_first_requests_cause_one_start() {
    log_if_asked();
    let [a0, a1] = free_addrs();
    // target_in_flight is high so that 200 requests in flight are not load enough for a second
    // server: what is tested is that the wait itself starts exactly one.
    let rouse = start_rouse(&embedded_upstream(
        "app",
        &[],
        "target_in_flight = 1000",
        &[
            backend_server(a0, "s0", &["--delay-listen", "300"], ""),
            backend_server(a1, "s1", &[], ""),
        ],
    ))
    .await;
    let c = client();
    let u = url(rouse.addr(), "/");
    let tasks = spawn_gets(&c, &u, &[], 200);
    // While they wait: held, one server starting, the other untouched.
    wait_until("requests held", WAIT, || async { held(&rouse, 0) > 0 }).await;
    assert_eq!(state(&rouse, 0, 1), "stopped");
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(timeout(WAIT, t).await.unwrap().unwrap());
    }
    let ok = answers
        .iter()
        .filter(|a| a.status == 200 && a.body == "s0")
        .count();
    assert_eq!(
        ok,
        200,
        "every request served by s0: {:?}",
        by_body(&answers)
    );
    let s = stats(a0).await;
    assert_eq!(s.requests, 200, "{s:?}");
    assert_eq!(held(&rouse, 0), 0, "nothing left held");
    sleep(Duration::from_millis(600)).await;
    assert_eq!(states(&rouse, 0), ["ready", "stopped"]);
    assert_eq!(backend_pids(a0).len(), 1, "exactly one process for s0");
    assert!(backend_pids(a1).is_empty(), "no process for s1");
}

// === 3. scale up under load ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_under_load_starts_a_second_server_and_requests_spread() {
    log_if_asked();
    let [a0, a1] = free_addrs();
    let rouse = start_rouse(&embedded_upstream(
        "app",
        &[],
        "target_in_flight = 2",
        &[
            backend_server(a0, "s0", &["--latency-ms", "200"], ""),
            backend_server(a1, "s1", &["--latency-ms", "200"], ""),
        ],
    ))
    .await;
    let load = Load::start(rouse.addr(), "/", None, 12);
    wait_state(&rouse, 0, 1, "ready", WAIT).await;
    let ready_at = Instant::now();
    // Load goes on for a while with both servers up.
    sleep(Duration::from_secs(3)).await;
    let answers = load.finish().await;
    assert!(
        answers.iter().all(|a| a.status == 200),
        "{:?}",
        by_body(&answers)
    );
    let after: Vec<&Answer> = answers.iter().filter(|a| a.sent >= ready_at).collect();
    let on_s1 = after.iter().filter(|a| a.body == "s1").count();
    let on_s0 = after.iter().filter(|a| a.body == "s0").count();
    let (st0, st1) = (stats(a0).await, stats(a1).await);
    assert!(
        st1.requests > 0 && on_s1 > 0,
        "s1 gets requests: {st0:?} {st1:?}"
    );
    // Once s1 is up (and past its slow start), the load is shared: s1 takes a fair part of
    // what was sent after it was ready.
    assert!(
        on_s1 * 4 >= on_s0,
        "requests spread: s0 {on_s0}, s1 {on_s1} after s1 was ready"
    );
    assert_eq!(states(&rouse, 0), ["ready", "ready"]);
}

/// ngx_supervisord's own signal: requests per second over `target_rps` start the next
/// server even when few are in flight at once (fast answers), and the load spreads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_second_over_target_rps_start_a_second_server() {
    log_if_asked();
    let [a0, a1] = free_addrs();
    let rouse = start_rouse(&embedded_upstream(
        "app",
        &[],
        "target_in_flight = 1000\ntarget_rps = 20",
        &[
            backend_server(a0, "s0", &[], ""),
            backend_server(a1, "s1", &[], ""),
        ],
    ))
    .await;
    // Two clients back to back: a few hundred requests/s, never more than two in flight, so
    // only the rate can ask for s1.
    let load = Load::start(rouse.addr(), "/", None, 2);
    wait_state(&rouse, 0, 1, "ready", WAIT).await;
    let ready_at = Instant::now();
    sleep(Duration::from_secs(1)).await;
    let answers = load.finish().await;
    assert!(
        answers.iter().all(|a| a.status == 200),
        "{:?}",
        by_body(&answers)
    );
    let on_s1 = answers
        .iter()
        .filter(|a| a.sent >= ready_at && a.body == "s1")
        .count();
    assert!(on_s1 > 0, "s1 takes requests: {:?}", by_body(&answers));
    let held_most = answers.iter().map(|a| a.took).max().unwrap_or_default();
    assert!(
        held_most < Duration::from_secs(2),
        "nothing waited long: {held_most:?}"
    );
}

// === 4. scale down, then idle stop ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_load_the_extra_server_is_drained_then_the_last_stops_when_idle() {
    log_if_asked();
    let [a0, a1] = free_addrs();
    let rouse = start_rouse(&embedded_upstream(
        "app",
        &[],
        "target_in_flight = 2\nidle_timeout = \"1s\"\nslow_start = \"0s\"",
        &[
            backend_server(a0, "s0", &["--latency-ms", "100"], ""),
            backend_server(a1, "s1", &["--latency-ms", "100"], ""),
        ],
    ))
    .await;
    let c = client();
    let heavy = Load::start(rouse.addr(), "/", None, 8);
    wait_state(&rouse, 0, 1, "ready", WAIT).await;
    sleep(Duration::from_millis(500)).await;
    let answers = heavy.finish().await;
    assert!(
        answers.iter().all(|a| a.status == 200),
        "{:?}",
        by_body(&answers)
    );
    assert!(stats(a1).await.requests > 0, "s1 took part");

    // Light traffic now (one client, a request every 100 ms: well under 40% of the target):
    // the extra server goes, and the first keeps serving without a single error.
    let trickle_stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let c = c.clone();
        let u = url(rouse.addr(), "/");
        let stop = Arc::clone(&trickle_stop);
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                answers.push(get(&c, &u, &[]).await);
                sleep(Duration::from_millis(100)).await;
            }
            answers
        })
    };
    let watch_stop = Arc::new(AtomicBool::new(false));
    let s1_states = watch_states_timed(&rouse, 0, 1, &watch_stop);
    wait_state(&rouse, 0, 1, "stopped", Duration::from_secs(10)).await;
    assert_eq!(
        state(&rouse, 0, 0),
        "ready",
        "the first server stays while in use"
    );
    assert!(refuses(a1).await, "s1's port is closed");
    assert!(backend_pids(a1).is_empty(), "s1's process is gone");
    // Some more light traffic with s1 gone, then none.
    sleep(Duration::from_millis(500)).await;
    trickle_stop.store(true, Ordering::Relaxed);
    let light = timeout(WAIT, trickle).await.unwrap().unwrap();
    assert!(
        light.iter().all(|a| a.status == 200),
        "no error while s1 drained: {:?}",
        by_body(&light)
    );
    assert!(light.last().is_some_and(|a| a.body == "s0"));
    watch_stop.store(true, Ordering::Relaxed);
    let seen: Vec<&str> = s1_states.join().unwrap().iter().map(|s| s.0).collect();
    // `stopping` lasts as long as the backend takes to exit on SIGTERM: it may go unseen.
    let without_stopping: Vec<&str> = seen.iter().copied().filter(|s| *s != "stopping").collect();
    assert_eq!(
        without_stopping,
        ["ready", "draining", "stopped"],
        "s1 was drained before it was stopped: {seen:?}"
    );

    // No traffic at all: the last server stops after idle_timeout (1 s), not before.
    let last_end = light
        .iter()
        .map(|a| a.sent + a.took)
        .max()
        .expect("some light traffic");
    sleep(Duration::from_millis(600)).await;
    assert_eq!(state(&rouse, 0, 0), "ready", "not before idle_timeout");
    wait_state(&rouse, 0, 0, "stopped", Duration::from_secs(10)).await;
    assert!(
        last_end.elapsed() >= Duration::from_millis(950),
        "stopped {:?} after the last request",
        last_end.elapsed()
    );
    assert_eq!(states(&rouse, 0), ["stopped", "stopped"]);
    assert!(refuses(a0).await && refuses(a1).await, "ports closed");
    assert!(
        backend_pids(a0).is_empty() && backend_pids(a1).is_empty(),
        "processes gone"
    );
}

// === 5. crashes ===

/// A server whose first run crashes (exits 1) after `n` requests, and whose later runs do not:
/// the first run leaves a marker file behind.
fn crash_once_server(addr: SocketAddr, id: &str, n: u32, marker: &std::path::Path) -> String {
    let bin = env!("CARGO_BIN_EXE_rouse-test-backend");
    let m = marker.display();
    let cmd = format!(
        "if [ -e '{m}' ]; then exec '{bin}' --listen {addr} --id {id}; \
         else : > '{m}'; exec '{bin}' --listen {addr} --id {id} --exit-after-requests {n}; fi"
    );
    format!("[[upstream.server]]\naddress = \"{addr}\"\ncommand = {cmd:?}\nstartsecs = \"200ms\"\n")
}

/// What a crash test saw: the states of the crashed server, and every answer.
struct CrashRun {
    states: Vec<(&'static str, Instant)>,
    answers: Vec<Answer>,
}

impl CrashRun {
    fn names(&self) -> Vec<&'static str> {
        self.states.iter().map(|s| s.0).collect()
    }

    /// When the crashed server was first seen out of `ready`: rouse knew of the crash by then.
    fn left_ready_at(&self) -> Instant {
        self.states
            .iter()
            .find(|s| s.0 != "ready")
            .map(|s| s.1)
            .unwrap_or_else(|| panic!("the server never left ready: {:?}", self.names()))
    }

    fn bad(&self) -> Vec<&Answer> {
        self.answers.iter().filter(|a| a.status != 200).collect()
    }

    fn describe(&self) -> String {
        let t = self.left_ready_at();
        let bad: Vec<String> = self
            .bad()
            .iter()
            .map(|a| {
                format!(
                    "{} {} sent {:?} before the crash was seen: {}",
                    a.status,
                    a.kind,
                    t.saturating_duration_since(a.sent),
                    a.body.trim()
                )
            })
            .collect();
        format!(
            "states {:?}, answers {:?}, non-200: {bad:#?}",
            self.names(),
            by_body(&self.answers)
        )
    }
}

/// Runs `clients` load clients against `rouse` until server 0 (at `addr`, whose first run
/// crashes after its 20th request) runs as a new process that has served 20 requests itself.
async fn crash_under_load(rouse: &Rouse, addr: SocketAddr, clients: usize) -> CrashRun {
    let first_pid = backend_pids(addr);
    assert_eq!(first_pid.len(), 1, "one process before the crash");
    let watch_stop = Arc::new(AtomicBool::new(false));
    let watch = watch_states_timed(rouse, 0, 0, &watch_stop);
    let load = Load::start(rouse.addr(), "/", None, clients);
    wait_until("s0 restarted as a new process, serving", WAIT, || async {
        let pids = backend_pids(addr);
        pids.len() == 1
            && pids != first_pid
            && try_stats(addr).await.is_ok_and(|s| s.requests >= 20)
    })
    .await;
    watch_stop.store(true, Ordering::Relaxed);
    let answers = load.finish().await;
    let states = watch.join().expect("the watcher does not panic");
    CrashRun { states, answers }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_load_fails_over_and_the_server_is_started_again() {
    log_if_asked();
    let dir = tempfile::tempdir().unwrap();
    let [a0, a1] = free_addrs();
    let rouse = start_rouse(&embedded_upstream(
        "app",
        &[],
        "min_servers = 2\nfail_timeout = \"500ms\"",
        &[
            crash_once_server(a0, "s0", 20, &dir.path().join("s0.crashed")),
            backend_server(a1, "s1", &[], "startsecs = \"200ms\""),
        ],
    ))
    .await;
    wait_state(&rouse, 0, 0, "ready", WAIT).await;
    wait_state(&rouse, 0, 1, "ready", WAIT).await;
    // Past startsecs, so the crash is an exit after RUNNING, not a failed start.
    sleep(Duration::from_millis(300)).await;
    let clients = 4;
    let run = crash_under_load(&rouse, a0, clients).await;
    let why = run.describe();
    eprintln!("{why}");

    // rouse marked s0 failed, stopped it, and after its cool-down (fail_timeout) started it
    // again, since the floor (min_servers = 2) wants it back.
    // Failed once only: the new process is not failed again (a failure would keep it `failed`
    // for its cool-down, long enough to be seen).
    let names = run.names();
    let failed = names.iter().position(|s| *s == "failed").expect(&why);
    assert!(names[failed..].contains(&"ready"), "{why}");
    assert_eq!(
        names.iter().filter(|s| **s == "failed").count(),
        1,
        "started again once, and it stayed up: {why}"
    );
    assert_eq!(states(&rouse, 0), ["ready", "ready"]);

    // What may fail, and only that: a request written to s0 after its 20th, which the dying
    // server drops unanswered. Having been sent, it cannot be retried: 502 server-error. Such a
    // request was in flight at the crash, on a connection opened before it; a connect refused
    // by the dying server is retried on s1 (so never `unreachable`), and once rouse knows of
    // the crash nothing goes to s0 at all. Each client has one request in flight at a time;
    // after a 502 its next one may still find an idle pooled connection to s0 that the dying
    // server has not closed yet, hence at most two per client.
    let crash_seen = run.left_ready_at();
    for a in run.bad() {
        assert_eq!((a.status, a.kind.as_str()), (502, "server-error"), "{why}");
        assert!(a.sent < crash_seen, "sent after the crash was known: {why}");
    }
    assert!(run.bad().len() <= 2 * clients, "{why}");
    // Everything else was served, by s1 meanwhile and by the new s0 after.
    let ok = run.answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(ok + run.bad().len(), run.answers.len());
    assert!(
        run.answers
            .iter()
            .any(|a| a.sent > crash_seen && a.body == "s1"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_of_the_only_server_is_recovered_while_requests_wait() {
    log_if_asked();
    let dir = tempfile::tempdir().unwrap();
    let [a0] = free_addrs();
    let rouse = start_rouse(&embedded_upstream(
        "app",
        &[],
        "",
        &[crash_once_server(
            a0,
            "s0",
            20,
            &dir.path().join("s0.crashed"),
        )],
    ))
    .await;
    let first = get(&client(), &url(rouse.addr(), "/"), &[]).await;
    assert_eq!(first.status, 200);
    sleep(Duration::from_millis(300)).await;
    let clients = 4;
    let run = crash_under_load(&rouse, a0, clients).await;
    let why = run.describe();
    eprintln!("{why}");

    // Every server failed: rouse brings back the first one at once (a revival needs no
    // cool-down the first time), while the requests that arrive meanwhile are held.
    // Once, and at once: the new process is not failed again for the refusals its predecessor
    // caused (which would cost a revival backoff of seconds).
    // A crashed server is stopped through its supervisor first (`stopping`, then `failed`
    // once that stop is through, too briefly to be seen every time), then revived.
    let names = run.names();
    let left = names.iter().position(|s| *s != "ready").expect(&why);
    assert!(
        matches!(names[left], "stopping" | "failed" | "starting"),
        "left ready for stopping (then failed, starting): {why}"
    );
    let back = left
        + names[left..]
            .iter()
            .position(|s| *s == "ready")
            .unwrap_or_else(|| panic!("never ready again: {why}"));
    assert_eq!(back, names.len() - 1, "and stayed ready: {why}");
    assert!(
        run.states[back].1 - run.states[left].1 < Duration::from_secs(1),
        "back within a second: {why}"
    );
    assert!(
        names.iter().filter(|s| **s == "failed").count() <= 1,
        "{why}"
    );
    assert_eq!(state(&rouse, 0, 0), "ready");

    // What may fail: requests that met s0 during its crash, all sent before rouse knew of it:
    // 502 server-error, written to s0 after its 20th request and dropped unanswered. A request
    // whose connect was refused (the dying s0 closes its listener at its 20th request) had
    // nothing sent, so it is held until the restart and served, never answered `unreachable`.
    // The first refusal wakes the control plane, which marks s0 failed at once, so from then
    // on requests are held and served by the new process.
    // Each client has one request in flight at a time: the one under way at the crash, plus at
    // most one sent right after it failed, before rouse heard of the refusal.
    let crash_seen = run.left_ready_at();
    for a in run.bad() {
        assert_eq!(a.status, 502, "{why}");
        assert_eq!(a.kind, "server-error", "{why}");
        assert!(a.sent < crash_seen, "sent after the crash was known: {why}");
    }
    assert!(run.bad().len() <= 2 * clients, "{why}");
    assert!(
        run.answers
            .iter()
            .filter(|a| a.sent > crash_seen)
            .all(|a| a.status == 200 && a.body == "s0"),
        "{why}"
    );
    assert_eq!(held(&rouse, 0), 0);
}

// === 6, 7. the bounds on waiting ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_timeout_answers_503_with_retry_after_once_it_has_passed() {
    log_if_asked();
    let [a0] = free_addrs();
    let rouse = start_rouse(&embedded_upstream(
        "app",
        &[],
        "start_timeout = \"1s\"",
        &[backend_server(a0, "s0", &["--delay-listen", "5000"], "")],
    ))
    .await;
    let a = get(&client(), &url(rouse.addr(), "/"), &[]).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.kind, "start-timeout", "{a:?}");
    assert!(a.retry_after.is_some(), "Retry-After: {a:?}");
    assert!(a.body.contains("start_timeout"), "{a:?}");
    assert!(
        a.took >= Duration::from_secs(1) && a.took < Duration::from_millis(1800),
        "answered after {:?}",
        a.took
    );
    assert_eq!(held(&rouse, 0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_limit_answers_the_excess_at_once() {
    log_if_asked();
    let [a0, a1] = free_addrs();
    let rouse = start_rouse(&embedded_upstream(
        "app",
        &[],
        "queue_limit = 5",
        &[
            backend_server(a0, "s0", &["--delay-listen", "2000"], ""),
            backend_server(a1, "s1", &[], ""),
        ],
    ))
    .await;
    let c = client();
    let u = url(rouse.addr(), "/");
    let tasks = spawn_gets(&c, &u, &[], 20);
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(timeout(WAIT, t).await.unwrap().unwrap());
    }
    let full: Vec<&Answer> = answers.iter().filter(|a| a.kind == "queue-full").collect();
    let ok: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == 200 && a.body == "s0")
        .collect();
    assert_eq!((full.len(), ok.len()), (15, 5), "{:?}", by_body(&answers));
    for a in &full {
        assert_eq!(a.status, 503);
        assert!(a.retry_after.is_some(), "{a:?}");
        assert!(a.body.contains("queue_limit"), "{a:?}");
        assert!(a.took < Duration::from_millis(700), "at once: {:?}", a.took);
    }
    for a in &ok {
        assert!(
            a.took >= Duration::from_secs(2),
            "waited for s0: {:?}",
            a.took
        );
    }
    assert_eq!(held(&rouse, 0), 0);
    assert_eq!(stats(a0).await.requests, 5);
    assert_eq!(state(&rouse, 0, 1), "stopped");
}

// === 8. a command that cannot start ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_cannot_start_gives_a_clear_503_and_other_upstreams_keep_serving() {
    log_if_asked();
    let [good, broken] = free_addrs();
    let cfg = [
        embedded_upstream("good", &[], "", &[backend_server(good, "g0", &[], "")]),
        embedded_upstream(
            "broken",
            &["broken.test"],
            "start_timeout = \"10s\"",
            &[format!(
                "[[upstream.server]]\naddress = \"{broken}\"\ncommand = [\"/nonexistent/binary\"]\n"
            )],
        ),
    ]
    .join("\n");
    let rouse = start_rouse(&cfg).await;
    let c = client();
    let g = get(&c, &url(rouse.addr(), "/"), &[]).await;
    assert_eq!((g.status, g.body.as_str()), (200, "g0"));

    // The good upstream serves continuously while the broken one is tried again and again.
    let good_load = Load::start(rouse.addr(), "/", None, 2);
    let mut broken_answers = Vec::new();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        broken_answers.push(get(&c, &url(rouse.addr(), "/"), &[("host", "broken.test")]).await);
        sleep(Duration::from_millis(50)).await;
    }
    let good_answers = good_load.finish().await;
    assert!(good_answers.len() > 10);
    assert!(
        good_answers
            .iter()
            .all(|a| a.status == 200 && a.body == "g0"),
        "{:?}",
        by_body(&good_answers)
    );
    for a in &broken_answers {
        assert_eq!((a.status, a.kind.as_str()), (503, "start-failed"), "{a:?}");
        assert!(a.retry_after.is_some(), "{a:?}");
        assert!(
            a.body.contains("\"broken\"") && a.body.contains("/nonexistent/binary"),
            "names the upstream and the reason: {a:?}"
        );
        assert!(
            a.took < Duration::from_secs(1),
            "quick, not after start_timeout: {a:?}"
        );
    }
    let states = states(&rouse, 1);
    assert!(
        // `stopping`: a failed start is stopped through the supervisor before it cools down.
        ["failed", "starting", "stopped", "stopping"].contains(&states[0]) && states.len() == 1,
        "{states:?}"
    );
    assert_eq!(state(&rouse, 0, 0), "ready");
}

// === 9. never_wake ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_wake_paths_get_503_cold_and_start_nothing() {
    log_if_asked();
    let [a0] = free_addrs();
    let rouse = start_rouse(&embedded_upstream(
        "app",
        &[],
        "never_wake = [\"/healthz\"]",
        &[backend_server(a0, "s0", &[], "")],
    ))
    .await;
    let c = client();
    for _ in 0..3 {
        let a = get(&c, &url(rouse.addr(), "/healthz"), &[]).await;
        assert_eq!((a.status, a.kind.as_str()), (503, "cold"), "{a:?}");
        assert!(a.retry_after.is_some(), "{a:?}");
        assert!(a.took < Duration::from_millis(500), "{a:?}");
    }
    sleep(Duration::from_millis(600)).await;
    assert_eq!(state(&rouse, 0, 0), "stopped");
    assert!(refuses(a0).await);
    assert!(backend_pids(a0).is_empty());
    assert_eq!(held(&rouse, 0), 0);
}

// === 10. the waiting page ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_gets_a_waiting_page_while_a_slow_server_starts() {
    log_if_asked();
    let [a0] = free_addrs();
    let rouse = start_rouse(&embedded_upstream(
        "app",
        &[],
        "waiting_page = true",
        &[backend_server(a0, "s0", &["--delay-listen", "3000"], "")],
    ))
    .await;
    let c = client();
    let a = get(
        &c,
        &url(rouse.addr(), "/"),
        &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
    )
    .await;
    assert_eq!(a.status, 503, "{a:?}");
    assert!(a.content_type.starts_with("text/html"), "{a:?}");
    assert!(
        a.body.contains("<meta http-equiv=\"refresh\""),
        "refreshes itself: {a:?}"
    );
    assert!(a.retry_after.is_some(), "{a:?}");
    assert!(
        a.took >= Duration::from_millis(950) && a.took < Duration::from_millis(2000),
        "after about a second: {:?}",
        a.took
    );
    // The start goes on without anyone waiting, and the next visit is served.
    assert_eq!(state(&rouse, 0, 0), "starting");
    wait_state(&rouse, 0, 0, "ready", WAIT).await;
    let b = get(&c, &url(rouse.addr(), "/"), &[("accept", "text/html")]).await;
    assert_eq!((b.status, b.body.as_str()), (200, "s0"));
}

// === 11. WebSocket keeps a server busy ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_keeps_its_server_up_past_idle_timeout() {
    log_if_asked();
    let [a0] = free_addrs();
    let rouse = start_rouse(&embedded_upstream(
        "app",
        &[],
        "idle_timeout = \"1s\"",
        &[backend_server(a0, "s0", &[], "")],
    ))
    .await;
    // The upgrade request itself wakes the server.
    let (mut ws, resp) = common::websocket(rouse.addr()).await;
    assert_eq!(resp.status(), 101);
    ws.send(Message::Text("one".into())).await.unwrap();
    let got = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::Text("one".into()));

    sleep(Duration::from_secs(3)).await;
    assert_eq!(state(&rouse, 0, 0), "ready", "busy with an open WebSocket");
    assert_eq!(rouse.table().upstreams[0].servers[0].in_flight(), 1);
    ws.send(Message::Text("two".into())).await.unwrap();
    let got = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(got, Message::Text("two".into()));

    ws.close(None).await.unwrap();
    drop(ws);
    let closed = Instant::now();
    wait_state(&rouse, 0, 0, "stopped", Duration::from_secs(10)).await;
    assert!(
        closed.elapsed() >= Duration::from_millis(900),
        "{:?}",
        closed.elapsed()
    );
    assert!(refuses(a0).await);
    assert!(backend_pids(a0).is_empty());
}

// === 12. min_servers ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_servers_starts_one_without_demand_and_keeps_it_past_idle_timeout() {
    log_if_asked();
    let [a0, a1] = free_addrs();
    let rouse = start_rouse(&embedded_upstream(
        "app",
        &[],
        "min_servers = 1\nidle_timeout = \"1s\"",
        &[
            backend_server(a0, "s0", &[], ""),
            backend_server(a1, "s1", &[], ""),
        ],
    ))
    .await;
    wait_state(&rouse, 0, 0, "ready", WAIT).await;
    assert_eq!(stats(a0).await.requests, 0, "started without a request");
    sleep(Duration::from_millis(2500)).await;
    assert_eq!(states(&rouse, 0), ["ready", "stopped"]);
    assert_eq!(backend_pids(a0).len(), 1);
    assert!(backend_pids(a1).is_empty());
    let a = get(&client(), &url(rouse.addr(), "/"), &[]).await;
    assert_eq!((a.status, a.body.as_str()), (200, "s0"));
}

// === 13. shutdown ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_embedded_children() {
    log_if_asked();
    let [a0, a1] = free_addrs();
    let rouse = start_rouse(&embedded_upstream(
        "app",
        &[],
        "min_servers = 2",
        &[
            backend_server(a0, "s0", &[], ""),
            backend_server(a1, "s1", &[], ""),
        ],
    ))
    .await;
    wait_state(&rouse, 0, 0, "ready", WAIT).await;
    wait_state(&rouse, 0, 1, "ready", WAIT).await;
    let a = get(&client(), &url(rouse.addr(), "/"), &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(backend_pids(a0).len() + backend_pids(a1).len(), 2);
    let proxy = rouse.addr();
    let table = rouse.table();
    timeout(WAIT, rouse.shutdown())
        .await
        .expect("shutdown in time");
    assert!(
        refuses(a0).await && refuses(a1).await,
        "children's ports closed"
    );
    // Each stop is counted, for its reason.
    for a in [a0, a1] {
        let labels = rouse_state::metrics::StopLabels {
            upstream: "app".to_owned(),
            server: a.to_string(),
            reason: "shutdown".to_owned(),
        };
        assert_eq!(table.metrics.stops.get_or_create(&labels).get(), 1, "{a}");
    }
    assert!(
        backend_pids(a0).is_empty() && backend_pids(a1).is_empty(),
        "children gone"
    );
    assert!(refuses(proxy).await, "rouse no longer listens");
}
