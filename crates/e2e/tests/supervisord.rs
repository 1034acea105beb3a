//! rouse driving real supervisord instances: every server here is a `rouse-test-backend`
//! program of a supervisord of the test's own (on a free loopback port or a unix socket, see
//! `rouse_e2e::SupervisordProcess`), started and stopped by rouse over XML-RPC, and every request
//! goes through rouse over real HTTP.
//!
//! The tests look at rouse's shared table, at supervisord's own view (a bare XML-RPC exchange,
//! `supervisorctl`, its log), at the processes (through /proc) and at the HTTP answers. rouse
//! polls supervisord every 200 ms here (1 s by default), so that what happens behind its back
//! is seen quickly.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::log::logged;
use common::{
    Answer, Load, WAIT, backend_pids, by_body, client, held, refuses, start_rouse, state, states,
    url, wait_state,
};
use rouse::Rouse;
use rouse_e2e::{Program, SupervisordProcess, stats, unique_addr, wait_until};
use tokio::time::{Instant, sleep, timeout};

// === helpers ===

/// The `[supervisors.NAME]` keys every test uses but the url and credentials.
const POLL: &str = "poll_interval = \"200ms\"\ntimeout = \"2s\"";

/// `N` addresses for backends: distinct, and out of the kernel's ephemeral range, so that a
/// port whose backend was killed is not meanwhile someone else's (see `unique_port`).
fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    std::array::from_fn(|_| unique_addr())
}

/// Program `name`: the test backend on `addr`, answering `name` (its `--id`).
fn backend(name: &str, addr: SocketAddr, args: &[&str]) -> Program {
    Program::backend_with_bin(&rouse_e2e::backend_bin!(), name, addr, args)
}

/// An `[[upstream]]` run by supervisor `sup`, over `servers` (programs `<name><index>`).
fn upstream(name: &str, sup: &str, hosts: &[&str], extra: &str, servers: &[SocketAddr]) -> String {
    let hosts = hosts
        .iter()
        .map(|h| format!("{h:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = format!(
        "[[upstream]]\nname = {name:?}\nhosts = [{hosts}]\nsupervisor = {sup:?}\n{extra}\n"
    );
    for a in servers {
        s.push_str(&format!("[[upstream.server]]\naddress = \"{a}\"\n"));
    }
    s
}

/// Like `common::start_rouse`, with `proxy` as the `[proxy]` keys but `listen`.
async fn start_rouse_with(proxy: &str, toml: &str) -> Rouse {
    Rouse::start(common::config_with(proxy, toml))
        .await
        .expect("rouse starts")
}

async fn wait_sd_state(sd: &SupervisordProcess, program: &str, want: &str, within: Duration) {
    wait_until(
        &format!("supervisord to report {program} {want}"),
        within,
        || async { sd.statename(program).await.as_deref() == Some(want) },
    )
    .await;
}

/// How many times supervisord's log says it spawned `program`.
fn spawns(sd: &SupervisordProcess, program: &str) -> usize {
    sd.log()
        .matches(&format!("spawned: '{program}' with pid"))
        .count()
}

/// `program`'s line of `supervisorctl status`.
async fn ctl_status(sd: &SupervisordProcess, program: &str) -> String {
    let out = sd.supervisorctl(&["status", program]).await;
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(program))
        .unwrap_or_else(|| panic!("no status line for {program}: {out}"))
        .to_owned()
}

/// `GET u`, to `host` when given.
async fn get(c: &reqwest::Client, u: &str, host: Option<&str>) -> Answer {
    match host {
        Some(h) => common::get(c, u, &[("host", h)]).await,
        None => common::get(c, u, &[]).await,
    }
}

/// Records every state server `i` of upstream `u` goes through, from a thread of its own
/// polling every 100 µs, until `stop` (then once more: the state the caller saw last is in).
fn watch_states(
    r: &Rouse,
    u: usize,
    i: usize,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<&'static str>> {
    let table = r.table();
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let server = &table.upstreams[u].servers[i];
        let mut seen = vec![server.state().as_str()];
        loop {
            let done = stop.load(Ordering::Relaxed);
            let s = server.state().as_str();
            if seen.last() != Some(&s) {
                seen.push(s);
            }
            if done {
                return seen;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    })
}

/// rouse's log lines (every test's: they share the process), captured from the first call on.
fn log_lines() -> &'static Mutex<Vec<u8>> {
    common::log::capture(|| {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    })
}

/// The same request again (every 100 ms) until it answers 200, within `within`; every answer.
async fn until_ok(
    c: &reqwest::Client,
    u: &str,
    host: Option<&str>,
    within: Duration,
) -> Vec<Answer> {
    let deadline = Instant::now() + within;
    let mut answers = Vec::new();
    loop {
        let a = get(c, u, host).await;
        let ok = a.status == 200;
        answers.push(a);
        if ok {
            return answers;
        }
        assert!(
            Instant::now() < deadline,
            "no 200 within {within:?}: {:?}",
            by_body(&answers)
        );
        sleep(Duration::from_millis(100)).await;
    }
}

// === 1. wake from zero ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_requests_wake_one_program_through_supervisord() {
    log_lines();
    let [a0, a1] = free_addrs();
    // startsecs = 3: rouse's tcp probe makes the server ready long before supervisord says
    // RUNNING, and the requests do not wait for that.
    let mut sd = SupervisordProcess::builder()
        .program(backend("app0", a0, &["--delay-listen", "300"]).set("startsecs", "3"))
        .program(backend("app1", a1, &[]))
        .spawn()
        .await;
    let rouse = start_rouse(&format!(
        "{}{}",
        sd.rouse_section("sd", POLL),
        upstream("app", "sd", &[], "target_in_flight = 100", &[a0, a1])
    ))
    .await;
    assert_eq!(states(&rouse, 0), ["stopped", "stopped"]);
    assert_eq!(sd.statename("app0").await.as_deref(), Some("STOPPED"));

    let c = client();
    let tasks = common::spawn_gets(&c, &url(rouse.addr(), "/"), &[], 20);
    // A request is counted as held just before the control plane is woken for it: the two
    // are seen together a moment later, never one without the other for long.
    wait_until(
        "the first requests held while app0 starts",
        WAIT,
        || async { held(&rouse, 0) > 0 && state(&rouse, 0, 0) == "starting" },
    )
    .await;
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(timeout(WAIT, t).await.unwrap().unwrap());
    }
    assert!(
        answers.iter().all(|a| a.status == 200 && a.body == "app0"),
        "{:?}",
        by_body(&answers)
    );
    let slowest = answers.iter().map(|a| a.took).max().unwrap();
    let fastest = answers.iter().map(|a| a.took).min().unwrap();
    assert!(
        fastest >= Duration::from_millis(250),
        "held until the backend listened: {fastest:?}"
    );
    assert!(
        slowest < Duration::from_secs(3),
        "served on the tcp probe, before startsecs: {slowest:?}"
    );
    assert_eq!(state(&rouse, 0, 0), "ready");
    assert_eq!(held(&rouse, 0), 0);

    // supervisord's view: one spawn of app0, none of app1, and app0 RUNNING once startsecs
    // has passed, as the very process that answered.
    wait_sd_state(&sd, "app0", "RUNNING", Duration::from_secs(10)).await;
    assert_eq!(spawns(&sd, "app0"), 1, "one start: {}", sd.log());
    assert_eq!(spawns(&sd, "app1"), 0);
    let pid = sd.pid_of("app0").await;
    assert!(pid.is_some());
    assert_eq!(backend_pids(a0), [pid.unwrap()]);
    assert_eq!(stats(a0).await.requests, 20);
    assert_eq!(sd.statename("app1").await.as_deref(), Some("STOPPED"));
    assert_eq!(states(&rouse, 0), ["ready", "stopped"]);

    // supervisord stopped (SIGTERM) stops its programs with it.
    sd.stop().await;
    assert!(backend_pids(a0).is_empty() && refuses(a0).await);
}

// === 2. scale up and down ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_starts_a_second_program_and_its_end_stops_both_through_supervisord() {
    log_lines();
    let [a0, a1] = free_addrs();
    let sd = SupervisordProcess::builder()
        .program(backend("app0", a0, &["--latency-ms", "100"]))
        .program(backend("app1", a1, &["--latency-ms", "100"]))
        .spawn()
        .await;
    let rouse = start_rouse(&format!(
        "{}{}",
        sd.rouse_section("sd", POLL),
        upstream(
            "app",
            "sd",
            &[],
            "target_in_flight = 2\nidle_timeout = \"1s\"\nslow_start = \"0s\"",
            &[a0, a1]
        )
    ))
    .await;
    let c = client();

    // Up: 8 clients on a slow backend are 4 servers' worth at target 2.
    let heavy = Load::start(rouse.addr(), "/", None, 8);
    wait_state(&rouse, 0, 1, "ready", WAIT).await;
    sleep(Duration::from_millis(500)).await;
    let answers = heavy.finish().await;
    assert!(
        answers.iter().all(|a| a.status == 200),
        "{:?}",
        by_body(&answers)
    );
    assert!(answers.iter().any(|a| a.body == "app1"), "app1 served");
    assert_eq!(spawns(&sd, "app1"), 1);
    let running = sd.statename("app1").await;
    assert!(
        matches!(running.as_deref(), Some("STARTING" | "RUNNING")),
        "{running:?}"
    );

    // Light traffic (a request every 100 ms): the extra server is drained and stopped through
    // supervisord, the first keeps serving.
    let trickle_stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let c = c.clone();
        let u = url(rouse.addr(), "/");
        let stop = Arc::clone(&trickle_stop);
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                answers.push(get(&c, &u, None).await);
                sleep(Duration::from_millis(100)).await;
            }
            answers
        })
    };
    let watch_stop = Arc::new(AtomicBool::new(false));
    let s1_states = watch_states(&rouse, 0, 1, &watch_stop);
    wait_state(&rouse, 0, 1, "stopped", Duration::from_secs(10)).await;
    watch_stop.store(true, Ordering::Relaxed);
    let seen = s1_states.join().unwrap();
    let without_stopping: Vec<&str> = seen.iter().copied().filter(|s| *s != "stopping").collect();
    assert_eq!(
        without_stopping,
        ["ready", "draining", "stopped"],
        "drained, then stopped: {seen:?}"
    );
    assert!(ctl_status(&sd, "app1").await.contains("STOPPED"));
    assert!(
        refuses(a1).await && backend_pids(a1).is_empty(),
        "app1 gone"
    );
    assert_eq!(state(&rouse, 0, 0), "ready");
    sleep(Duration::from_millis(300)).await;
    trickle_stop.store(true, Ordering::Relaxed);
    let light = timeout(WAIT, trickle).await.unwrap().unwrap();
    assert!(
        light.iter().all(|a| a.status == 200),
        "{:?}",
        by_body(&light)
    );

    // No traffic: the last one stops after idle_timeout (1 s), not before.
    let last_end = light.iter().map(|a| a.sent + a.took).max().unwrap();
    wait_state(&rouse, 0, 0, "stopped", Duration::from_secs(10)).await;
    assert!(
        last_end.elapsed() >= Duration::from_millis(950),
        "stopped {:?} after the last request",
        last_end.elapsed()
    );
    let status = sd.supervisorctl(&["status"]).await;
    for program in ["app0", "app1"] {
        assert!(
            ctl_status(&sd, program).await.contains("STOPPED"),
            "{status}"
        );
    }
    assert!(backend_pids(a0).is_empty() && backend_pids(a1).is_empty());
    assert_eq!(states(&rouse, 0), ["stopped", "stopped"]);
}

// === 3. faults ===

/// A supervisord that never answers (nothing listens on its port) for all of `start_timeout`:
/// the held request waits while rouse asks again, then gets a 503 that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisord_down_for_all_of_start_timeout_is_named_in_the_503() {
    log_lines();
    // Two free addresses: one where supervisord would listen, one for the program.
    let [nobody, app] = free_addrs();
    let rouse = start_rouse(&format!(
        "[supervisors.gone]\nurl = \"http://{nobody}/RPC2\"\n{POLL}\n{}",
        upstream("cold", "gone", &[], "start_timeout = \"1500ms\"", &[app]),
    ))
    .await;
    let a = get(&client(), &url(rouse.addr(), "/"), None).await;
    // Its own start_timeout and rouse giving up on the start end at the same moment: either
    // answer, as long as it says why.
    assert_eq!(a.status, 503, "{a:?}");
    assert!(
        ["start-timeout", "start-failed"].contains(&a.kind.as_str()),
        "{a:?}"
    );
    assert!(a.retry_after.is_some(), "{a:?}");
    assert!(
        a.body.contains("cannot connect to supervisord \"gone\""),
        "says the supervisor cannot be reached: {a:?}"
    );
    assert!(
        a.took >= Duration::from_millis(1400) && a.took < Duration::from_secs(5),
        "held for start_timeout while rouse asked again: {a:?}"
    );
    let retries = logged(&["cannot reach the supervisor, asking again", "gone"]);
    assert!(!retries.is_empty(), "a log line says it asks again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_supervisord_does_not_know_gives_a_clear_503_and_the_rest_serves() {
    log_lines();
    let [good, unknown] = free_addrs();
    // Only good0 is in supervisord's config; rouse also drives "ghost0".
    let sd = SupervisordProcess::builder()
        .program(backend("good0", good, &[]))
        .spawn()
        .await;
    let rouse = start_rouse(&format!(
        "{}{}{}",
        sd.rouse_section("sd", POLL),
        upstream("good", "sd", &[], "", &[good]),
        upstream(
            "ghost",
            "sd",
            &["ghost.test"],
            "start_timeout = \"10s\"",
            &[unknown]
        ),
    ))
    .await;
    let c = client();
    let g = get(&c, &url(rouse.addr(), "/"), None).await;
    assert_eq!((g.status, g.body.as_str()), (200, "good0"), "{g:?}");

    let good_load = Load::start(rouse.addr(), "/", None, 2);
    let mut ghost = Vec::new();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        ghost.push(get(&c, &url(rouse.addr(), "/"), Some("ghost.test")).await);
        sleep(Duration::from_millis(50)).await;
    }
    let good_answers = good_load.finish().await;
    assert!(good_answers.len() > 10);
    assert!(
        good_answers
            .iter()
            .all(|a| a.status == 200 && a.body == "good0"),
        "{:?}",
        by_body(&good_answers)
    );
    for a in &ghost {
        assert_eq!((a.status, a.kind.as_str()), (503, "start-failed"), "{a:?}");
        assert!(a.retry_after.is_some(), "{a:?}");
        assert!(
            a.body.contains("\"ghost\"")
                && a.body.contains("ghost0")
                && a.body.contains("not in the configuration of supervisord"),
            "names the upstream, the program and the problem: {a:?}"
        );
        assert!(a.took < Duration::from_secs(1), "quick: {a:?}");
    }
    assert_eq!(state(&rouse, 0, 0), "ready");
    assert!(
        !logged(&["ghost0", "not in the configuration of supervisord"]).is_empty(),
        "logged"
    );
    // No process was made, so none is stopped (which would only fail the same way).
    assert!(logged(&["stop failed", "ghost0"]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_cannot_be_spawned_gives_a_503_with_supervisords_reason() {
    log_lines();
    let [good, broken] = free_addrs();
    let sd = SupervisordProcess::builder()
        .program(backend("good0", good, &[]))
        .program(Program::new("broken0", "/nonexistent/binary --listen x"))
        .spawn()
        .await;
    let rouse = start_rouse(&format!(
        "{}{}{}",
        sd.rouse_section("sd", POLL),
        upstream("good", "sd", &[], "", &[good]),
        upstream(
            "broken",
            "sd",
            &["broken.test"],
            "start_timeout = \"10s\"",
            &[broken]
        ),
    ))
    .await;
    let c = client();
    for _ in 0..3 {
        let a = get(&c, &url(rouse.addr(), "/"), Some("broken.test")).await;
        assert_eq!((a.status, a.kind.as_str()), (503, "start-failed"), "{a:?}");
        assert!(a.retry_after.is_some(), "{a:?}");
        assert!(
            a.body.contains("\"broken\"")
                && a.body.contains("broken0")
                && a.body.contains("/nonexistent/binary"),
            "supervisord's reason: {a:?}"
        );
        assert!(a.took < Duration::from_secs(1), "quick: {a:?}");
        sleep(Duration::from_millis(200)).await;
    }
    let g = get(&c, &url(rouse.addr(), "/"), None).await;
    assert_eq!((g.status, g.body.as_str()), (200, "good0"), "{g:?}");
    assert_ne!(sd.statename("broken0").await.as_deref(), Some("RUNNING"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_started_by_hand_before_the_first_request_is_used_as_it_is() {
    log_lines();
    let [a0] = free_addrs();
    let sd = SupervisordProcess::builder()
        .program(backend("app0", a0, &[]))
        .spawn()
        .await;
    // Polled rarely: rouse only learns of the hand start when its own start is answered
    // ALREADY_STARTED.
    let rouse = start_rouse(&format!(
        "{}{}",
        sd.rouse_section("sd", "poll_interval = \"60s\"\ntimeout = \"2s\""),
        upstream("app", "sd", &[], "", &[a0])
    ))
    .await;
    // rouse's first look at supervisord (everything stopped) is over.
    sleep(Duration::from_millis(500)).await;
    let out = sd.supervisorctl(&["start", "app0"]).await;
    assert!(out.contains("started"), "{out}");
    let pid = sd.pid_of("app0").await.expect("running");
    assert_eq!(state(&rouse, 0, 0), "stopped", "not noticed yet");

    let c = client();
    let a = get(&c, &url(rouse.addr(), "/"), None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "app0"), "{a:?}");
    assert_eq!(state(&rouse, 0, 0), "ready");
    assert_eq!(sd.pid_of("app0").await, Some(pid), "the same process");
    assert_eq!(backend_pids(a0), [pid]);
    assert_eq!(spawns(&sd, "app0"), 1, "not started twice");
    assert!(logged(&["cannot start", "app0", &a0.to_string()]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_stopped_by_hand_while_draining_ends_stopped_without_error() {
    log_lines();
    let [a0, a1] = free_addrs();
    // stopwaitsecs = 10: the stop by hand waits for app1's request (up to the backend's 5 s
    // grace) instead of killing it after 3 s.
    let sd = SupervisordProcess::builder()
        .program(backend("app0", a0, &[]))
        .program(backend("app1", a1, &[]).set("stopwaitsecs", "10"))
        .spawn()
        .await;
    // Polled rarely: rouse does not see the hand stop, so its own stop of the drained server
    // is answered NOT_RUNNING. The long requests below need a read_timeout above 5 s.
    let rouse = start_rouse_with(
        "read_timeout = \"20s\"",
        &format!(
            "{}{}",
            sd.rouse_section("sd", "poll_interval = \"60s\"\ntimeout = \"2s\""),
            upstream(
                "app",
                "sd",
                &[],
                "target_in_flight = 3\nidle_timeout = \"2500ms\"\nslow_start = \"0s\"",
                &[a0, a1]
            )
        ),
    )
    .await;
    let c = client();
    let send = |path: &str| {
        let (c, u) = (c.clone(), url(rouse.addr(), path));
        tokio::spawn(async move { get(&c, &u, None).await })
    };
    // 5 slow requests need two servers at target 3.
    let burst: Vec<_> = (0..5).map(|_| send("/delay/1000")).collect();
    wait_state(&rouse, 0, 1, "ready", WAIT).await;
    for t in burst {
        let a = timeout(WAIT, t).await.unwrap().unwrap();
        assert_eq!(a.status, 200, "{a:?}");
    }
    // Then one long request on each (idle servers first): two in flight is low load for two
    // servers, so after 2.5 s (scale_down_after) app1 is drained with its request in flight.
    // One after the other: two admissions at the same instant may both see the same server
    // idle (`fair` reads a snapshot; it spreads load, it does not serialize admissions).
    let in_flight = || -> usize {
        rouse.table().upstreams[0]
            .servers
            .iter()
            .map(|s| s.in_flight() as usize)
            .sum()
    };
    let mut long = Vec::new();
    for n in 1..=2 {
        long.push(send("/delay/6000"));
        wait_until("the long request in flight", WAIT, || async {
            in_flight() == n
        })
        .await;
    }
    wait_until("a request in flight on each server", WAIT, || async {
        rouse.table().upstreams[0]
            .servers
            .iter()
            .all(|s| s.in_flight() == 1)
    })
    .await;
    wait_state(&rouse, 0, 1, "draining", Duration::from_secs(10)).await;
    assert_eq!(rouse.table().upstreams[0].servers[1].in_flight(), 1);

    // Stopped by hand meanwhile: the backend finishes its request, then exits.
    let out = sd.supervisorctl(&["stop", "app1"]).await;
    assert!(out.contains("stopped"), "{out}");
    assert_eq!(sd.statename("app1").await.as_deref(), Some("STOPPED"));
    for t in long {
        let a = timeout(WAIT, t).await.unwrap().unwrap();
        assert_eq!(a.status, 200, "{a:?}");
    }
    // rouse's own stop finds it not running: no error, and the server ends stopped.
    wait_state(&rouse, 0, 1, "stopped", Duration::from_secs(5)).await;
    assert_ne!(state(&rouse, 0, 0), "failed");
    assert_eq!(sd.statename("app1").await.as_deref(), Some("STOPPED"));
    assert_eq!(spawns(&sd, "app1"), 1, "not started again");
    assert!(
        logged(&["stop failed", &a1.to_string()]).is_empty(),
        "{:?}",
        logged(&[&a1.to_string()])
    );
    assert!(!logged(&["stopping server", &a1.to_string(), "reason=\"load\""]).is_empty());
}

// === 4. behind rouse's back ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_and_starts_by_hand_are_noticed() {
    log_lines();
    let [a0] = free_addrs();
    let sd = SupervisordProcess::builder()
        .program(backend("app0", a0, &[]))
        .spawn()
        .await;
    let rouse = start_rouse(&format!(
        "{}{}",
        sd.rouse_section("sd", POLL),
        upstream("app", "sd", &[], "idle_timeout = \"60s\"", &[a0])
    ))
    .await;
    let c = client();
    let a = get(&c, &url(rouse.addr(), "/"), None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "app0"), "{a:?}");
    let first = sd.pid_of("app0").await.expect("running");

    // Stopped with supervisorctl: noticed, `stopped` (not failed), and nothing restarts it
    // without demand.
    let watch_stop = Arc::new(AtomicBool::new(false));
    let watch = watch_states(&rouse, 0, 0, &watch_stop);
    let out = sd.supervisorctl(&["stop", "app0"]).await;
    assert!(out.contains("stopped"), "{out}");
    let stopped_at = Instant::now();
    wait_state(&rouse, 0, 0, "stopped", Duration::from_secs(5)).await;
    assert!(
        stopped_at.elapsed() < Duration::from_secs(2),
        "noticed within a few polls"
    );
    sleep(Duration::from_millis(500)).await;
    watch_stop.store(true, Ordering::Relaxed);
    assert_eq!(watch.join().unwrap(), ["ready", "stopped"]);
    assert_eq!(sd.statename("app0").await.as_deref(), Some("STOPPED"));

    // The next request wakes it again.
    let a = get(&c, &url(rouse.addr(), "/"), None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "app0"), "{a:?}");
    let second = sd.pid_of("app0").await.expect("running");
    assert_ne!(first, second);
    assert_eq!(spawns(&sd, "app0"), 2);

    // Stopped, then started by hand: adopted, ready without a request, the same process.
    sd.supervisorctl(&["stop", "app0"]).await;
    wait_state(&rouse, 0, 0, "stopped", Duration::from_secs(5)).await;
    let out = sd.supervisorctl(&["start", "app0"]).await;
    assert!(out.contains("started"), "{out}");
    let third = sd.pid_of("app0").await.expect("running");
    wait_state(&rouse, 0, 0, "ready", Duration::from_secs(5)).await;
    assert_eq!(stats(a0).await.requests, 0, "ready without a request");
    let a = get(&c, &url(rouse.addr(), "/"), None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "app0"), "{a:?}");
    assert_eq!(sd.pid_of("app0").await, Some(third));
    assert_eq!(backend_pids(a0), [third]);
    assert_eq!(spawns(&sd, "app0"), 3);
}

/// Stopped with supervisorctl while requests flow, with polls too rare to notice first: the
/// proxy's refused connects reach the control plane before any poll, and it asks supervisord,
/// which says STOPPED: `stopped: outside rouse`, not a failure, and no failure stop counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_stopped_by_hand_under_traffic_is_stopped_outside_rouse_not_failed() {
    log_lines();
    let [a0] = free_addrs();
    let sd = SupervisordProcess::builder()
        .program(backend("app0", a0, &[]))
        .spawn()
        .await;
    let rouse = start_rouse(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n{}{}",
        sd.rouse_section("sd", "poll_interval = \"30s\"\ntimeout = \"2s\""),
        upstream("app", "sd", &[], "idle_timeout = \"60s\"", &[a0])
    ))
    .await;
    let c = client();
    let a = get(&c, &url(rouse.addr(), "/"), None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "app0"), "{a:?}");

    let load = Load::start(rouse.addr(), "/", None, 4);
    sleep(Duration::from_millis(200)).await;
    let out = sd.supervisorctl(&["stop", "app0"]).await;
    assert!(out.contains("stopped"), "{out}");
    // The requests still coming may wake it again at once: the journal says what happened.
    let outside = |events: &[(String, String)]| {
        events
            .iter()
            .any(|(what, detail)| what == "stopped" && detail == "outside rouse")
    };
    wait_until("the stop outside rouse", Duration::from_secs(5), || async {
        outside(&journal(&c, &rouse, "app", 0).await)
    })
    .await;
    let events = journal(&c, &rouse, "app", 0).await;
    assert!(
        !events.iter().any(|(what, _)| what == "failed"),
        "not a failure: {events:?}"
    );
    let failure = rouse_state::metrics::StopLabels {
        upstream: "app".to_owned(),
        server: a0.to_string(),
        reason: "failure".to_owned(),
    };
    assert_eq!(rouse.table().metrics.stops.get_or_create(&failure).get(), 0);
    // The requests still coming wake it again, through supervisord.
    let answers = load.finish().await;
    assert!(answers.iter().any(|a| a.status == 200), "{}", answers.len());
    wait_state(&rouse, 0, 0, "ready", Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_noticed_as_failed_and_the_program_comes_back_on_demand() {
    log_lines();
    let [a0] = free_addrs();
    let sd = SupervisordProcess::builder()
        .program(backend("app0", a0, &[]))
        .spawn()
        .await;
    let rouse = start_rouse(&format!(
        "{}{}",
        sd.rouse_section("sd", POLL),
        upstream("app", "sd", &[], "idle_timeout = \"60s\"", &[a0])
    ))
    .await;
    let c = client();
    let a = get(&c, &url(rouse.addr(), "/"), None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "app0"), "{a:?}");
    wait_sd_state(&sd, "app0", "RUNNING", Duration::from_secs(5)).await;
    let pid = sd.pid_of("app0").await.expect("running");

    // kill -9, and no request: supervisord's report alone makes it failed.
    let watch_stop = Arc::new(AtomicBool::new(false));
    let watch = watch_states(&rouse, 0, 0, &watch_stop);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed_at = Instant::now();
    wait_until(
        "the crash to be noticed",
        Duration::from_secs(5),
        || async { state(&rouse, 0, 0) != "ready" },
    )
    .await;
    assert!(killed_at.elapsed() < Duration::from_secs(2));
    assert_eq!(sd.statename("app0").await.as_deref(), Some("EXITED"));
    sleep(Duration::from_millis(300)).await;
    assert!(
        matches!(state(&rouse, 0, 0), "failed" | "stopping" | "stopped"),
        "{}",
        state(&rouse, 0, 0)
    );

    // A request brings it back.
    let a = get(&c, &url(rouse.addr(), "/"), None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "app0"), "{a:?}");
    watch_stop.store(true, Ordering::Relaxed);
    let seen = watch.join().unwrap();
    // A crash is stopped through supervisord (`stopping`, often too brief to be seen), then
    // cools down as `failed`.
    let phases: Vec<&str> = seen.iter().copied().filter(|s| *s != "stopping").collect();
    assert_eq!(phases[..2], ["ready", "failed"], "{seen:?}");
    assert_eq!(seen.last(), Some(&"ready"), "{seen:?}");
    let new = sd.pid_of("app0").await.expect("running");
    assert_ne!(new, pid);
    assert_eq!(backend_pids(a0), [new]);
    assert!(!logged(&["server failed", "EXITED", &a0.to_string()]).is_empty());
}

// === 5. adoption after a rouse restart ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rouse_adopts_the_running_program_with_the_same_pid() {
    log_lines();
    let [a0] = free_addrs();
    let sd = SupervisordProcess::builder()
        .program(backend("app0", a0, &[]))
        .spawn()
        .await;
    let config = format!(
        "{}{}",
        sd.rouse_section("sd", POLL),
        upstream("app", "sd", &[], "", &[a0])
    );
    let c = client();
    let first = start_rouse(&config).await;
    let a = get(&c, &url(first.addr(), "/"), None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "app0"), "{a:?}");
    let pid = sd.pid_of("app0").await.expect("running");
    timeout(WAIT, first.shutdown()).await.expect("shuts down");

    // supervisord's program outlives the rouse that started it.
    sleep(Duration::from_millis(500)).await;
    wait_sd_state(&sd, "app0", "RUNNING", Duration::from_secs(5)).await;
    assert_eq!(sd.pid_of("app0").await, Some(pid));

    let second = start_rouse(&config).await;
    wait_state(&second, 0, 0, "ready", Duration::from_secs(5)).await;
    assert_eq!(stats(a0).await.requests, 1, "adopted without a request");
    let a = get(&c, &url(second.addr(), "/"), None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "app0"), "{a:?}");
    assert_eq!(sd.pid_of("app0").await, Some(pid), "the same process");
    assert_eq!(backend_pids(a0), [pid]);
    assert_eq!(stats(a0).await.requests, 2, "both served by it");
    assert_eq!(spawns(&sd, "app0"), 1);
}

// === 6. supervisord killed and restarted ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisord_killed_and_restarted_under_load() {
    log_lines();
    let [hot, cold] = free_addrs();
    let mut sd = SupervisordProcess::builder()
        .program(backend("hot0", hot, &[]))
        .program(backend("cold0", cold, &[]))
        .spawn()
        .await;
    let rouse = start_rouse(&format!(
        "{}{}{}",
        sd.rouse_section("sd", "poll_interval = \"200ms\"\ntimeout = \"1s\""),
        upstream("hot", "sd", &[], "idle_timeout = \"60s\"", &[hot]),
        upstream(
            "cold",
            "sd",
            &["cold.test"],
            "start_timeout = \"10s\"",
            &[cold]
        ),
    ))
    .await;
    let c = client();
    let a = get(&c, &url(rouse.addr(), "/"), None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "hot0"), "{a:?}");
    let hot_pid = sd.pid_of("hot0").await.expect("running");

    let hot_load = Load::start(rouse.addr(), "/", None, 2);
    sleep(Duration::from_millis(300)).await;
    sd.kill9().await;
    let killed_at = Instant::now();
    // Several failed polls later, the ready server still serves, and a request for the cold
    // upstream is held while rouse asks the dead supervisord again (it comes back below,
    // within the request's start_timeout).
    sleep(Duration::from_millis(1000)).await;
    let held_cold = {
        let c = c.clone();
        let u = url(rouse.addr(), "/");
        tokio::spawn(async move { get(&c, &u, Some("cold.test")).await })
    };
    sleep(Duration::from_millis(500)).await;
    assert_eq!(state(&rouse, 0, 0), "ready");
    let down = hot_load.finish().await;
    let while_down: Vec<&Answer> = down.iter().filter(|a| a.sent >= killed_at).collect();
    assert!(while_down.len() > 10, "{}", while_down.len());
    assert!(
        down.iter().all(|a| a.status == 200 && a.body == "hot0"),
        "served while supervisord is down: {:?}",
        by_body(&down)
    );
    assert_eq!(backend_pids(hot), [hot_pid]);

    // supervisord comes back (its programs went with the old one, as under systemd).
    sd.kill_orphans();
    sd.restart().await;
    let back_at = Instant::now();
    // rouse notices by itself: hot0 is gone (stopped), and both upstreams start again
    // through the new supervisord.
    let hot_answers = until_ok(&c, &url(rouse.addr(), "/"), None, Duration::from_secs(10)).await;
    assert_eq!(hot_answers.last().unwrap().body, "hot0");
    let cold_answers = until_ok(
        &c,
        &url(rouse.addr(), "/"),
        Some("cold.test"),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(cold_answers.last().unwrap().body, "cold0");
    let held = timeout(Duration::from_secs(15), held_cold)
        .await
        .expect("answered within start_timeout")
        .expect("no panic");
    assert_eq!(
        (held.status, held.body.as_str()),
        (200, "cold0"),
        "held while supervisord was down, served once it was back: {held:?}"
    );
    let recovered = back_at.elapsed();
    for a in hot_answers.iter().chain(&cold_answers) {
        assert!(
            a.status == 200 || (a.status == 503 && a.retry_after.is_some()),
            "{a:?}"
        );
    }
    assert!(
        recovered < Duration::from_secs(5),
        "recovered {recovered:?} after supervisord came back: hot {:?} cold {:?}",
        by_body(&hot_answers),
        by_body(&cold_answers)
    );
    let new_hot = sd.pid_of("hot0").await.expect("running");
    assert_ne!(new_hot, hot_pid);
    assert!(sd.pid_of("cold0").await.is_some());
    assert_eq!(states(&rouse, 0), ["ready"]);
    assert_eq!(states(&rouse, 1), ["ready"]);
}

/// The `what` of every journal entry of server `i` of upstream `name`, from rouse's admin API
/// (`GET /status`), newest first.
async fn journal(c: &reqwest::Client, r: &Rouse, name: &str, i: u64) -> Vec<(String, String)> {
    let admin = r.admin_addr().expect("rouse has an admin listener");
    let reply = c
        .get(format!("http://{admin}/status"))
        .send()
        .await
        .expect("the admin API answers");
    assert_eq!(reply.status().as_u16(), 200, "{reply:?}");
    let status: serde_json::Value = reply.json().await.expect("/status is JSON");
    status["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {status}"))
        .iter()
        .filter(|e| e["upstream"] == name && e["server"] == i)
        .map(|e| {
            let field = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (field("what"), field("detail"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisord_stopped_and_restarted_within_a_second_holds_the_requests_and_serves_them() {
    log_lines();
    let [cold] = free_addrs();
    let mut sd = SupervisordProcess::builder()
        .program(backend("cold0", cold, &[]))
        .spawn()
        .await;
    // A supervisor name of this test's own: the log lines waited on below are its alone.
    let name = "sd_stopped_restarted";
    let rouse = start_rouse(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n{}{}",
        sd.rouse_section(name, "poll_interval = \"200ms\"\ntimeout = \"1s\""),
        upstream("cold", name, &[], "start_timeout = \"10s\"", &[cold]),
    ))
    .await;
    let c = client();
    assert_eq!(states(&rouse, 0), ["stopped"]);
    assert_eq!(sd.statename("cold0").await.as_deref(), Some("STOPPED"));

    // supervisord stopped gracefully (SIGTERM: nothing of it left running, and cold0 never
    // ran), and rouse has seen a poll fail: it knows supervisord is down.
    sd.stop().await;
    let stopped_at = Instant::now();
    assert!(!sd.answers().await, "supervisord is down");
    let failed = format!("supervisor={name}");
    wait_until("rouse to see a poll fail", WAIT, || async {
        !logged(&["polling supervisord failed", &failed]).is_empty()
    })
    .await;

    // The requests arrive while it is down: held, the start asked again and again.
    const N: usize = 8;
    let tasks = common::spawn_gets(&c, &url(rouse.addr(), "/"), &[], N);
    wait_until("every request to be held", WAIT, || async {
        held(&rouse, 0) == N
    })
    .await;
    wait_until("a start-retry in the journal", WAIT, || async {
        journal(&c, &rouse, "cold", 0)
            .await
            .iter()
            .any(|(w, _)| w == "start-retry")
    })
    .await;
    let retries = journal(&c, &rouse, "cold", 0).await;
    let (_, why) = retries.iter().find(|(w, _)| w == "start-retry").unwrap();
    assert!(
        why.contains(&format!("cannot connect to supervisord {name:?}")),
        "says supervisord cannot be reached: {retries:?}"
    );

    // supervisord stays down a deliberate while (the point of the test), less than 1 s in all;
    // the requests wait through it, none answered.
    let down_for = Duration::from_millis(800);
    assert!(
        stopped_at.elapsed() < down_for,
        "the requests were held only {:?} after supervisord stopped",
        stopped_at.elapsed()
    );
    sleep(down_for.saturating_sub(stopped_at.elapsed())).await;
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "a request was answered while supervisord was down"
    );
    assert_eq!(held(&rouse, 0), N);
    assert_eq!(state(&rouse, 0, 0), "starting");

    // supervisord comes back on the same address and config; rouse asks for the start at once
    // and the held requests are served by the program.
    sd.restart().await;
    let back_at = Instant::now();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(timeout(WAIT, t).await.expect("answered").unwrap());
    }
    let served_after = back_at.elapsed();
    assert!(
        answers.iter().all(|a| a.status == 200 && a.body == "cold0"),
        "every held request served by cold0, none a 503: {:?}",
        by_body(&answers)
    );
    let slowest = answers.iter().map(|a| a.took).max().unwrap();
    assert!(
        slowest < Duration::from_secs(10),
        "within start_timeout: {slowest:?}"
    );
    assert!(
        served_after < Duration::from_secs(3),
        "served {served_after:?} after supervisord answered again"
    );
    assert_eq!(states(&rouse, 0), ["ready"]);
    assert_eq!(held(&rouse, 0), 0);
    let pid = sd.pid_of("cold0").await.expect("cold0 runs");
    assert_eq!(backend_pids(cold), [pid]);
    assert_eq!(stats(cold).await.requests, N as u64);
    assert_eq!(spawns(&sd, "cold0"), 1, "one start: {}", sd.log());
    let events = journal(&c, &rouse, "cold", 0).await;
    assert!(
        events.iter().any(|(w, _)| w == "ready"),
        "ready in the journal: {events:?}"
    );
    assert!(
        !events.iter().any(|(w, _)| w == "start-failed"),
        "no start failed: {events:?}"
    );
}

// === 7. unix socket, credentials ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_with_credentials_and_a_wrong_password() {
    log_lines();
    let [a0, locked] = free_addrs();
    let sd = SupervisordProcess::builder()
        .unix_socket()
        .auth("admin", "s3cret")
        .program(backend("app0", a0, &[]))
        .program(backend("locked0", locked, &[]))
        .spawn()
        .await;
    assert!(sd.url().starts_with("unix:///"), "{}", sd.url());
    // The same supervisord twice: once with the right password, once with a wrong one.
    let wrong = format!(
        "[supervisors.wrong]\nurl = {:?}\nusername = \"admin\"\npassword = \"guess\"\n{POLL}\n",
        sd.url()
    );
    let rouse = start_rouse(&format!(
        "{}{wrong}{}{}",
        sd.rouse_section("sd", POLL),
        upstream("app", "sd", &[], "", &[a0]),
        upstream(
            "locked",
            "wrong",
            &["locked.test"],
            "start_timeout = \"10s\"",
            &[locked]
        ),
    ))
    .await;
    let c = client();
    let a = get(&c, &url(rouse.addr(), "/"), None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "app0"), "{a:?}");
    assert_eq!(sd.pid_of("app0").await, backend_pids(a0).first().copied());

    let a = get(&c, &url(rouse.addr(), "/"), Some("locked.test")).await;
    assert_eq!((a.status, a.kind.as_str()), (503, "start-failed"), "{a:?}");
    assert!(a.retry_after.is_some(), "{a:?}");
    assert!(
        a.body.contains("\"locked\"")
            && a.body.contains("401")
            && a.body.contains("username and password"),
        "names the authentication failure: {a:?}"
    );
    assert!(a.took < Duration::from_secs(1), "{a:?}");
    assert_eq!(sd.statename("locked0").await.as_deref(), Some("STOPPED"));
    let sock = sd.url().trim_start_matches("unix://").to_owned();
    let lines = logged(&[&sock, "401", "username and password", "wrong"]);
    assert!(!lines.is_empty(), "a log line says why");
}

// === 8. two supervisords, two hosts ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_supervisord_leaves_the_servers_of_the_other_serving() {
    log_lines();
    let [a0, b1] = free_addrs();
    // One upstream across two hosts: server 0 (program app0) under supervisord A on a port,
    // server 1 (program app1) under supervisord B on a unix socket.
    let mut sd_a = SupervisordProcess::builder()
        .program(backend("app0", a0, &[]))
        .spawn()
        .await;
    let sd_b = SupervisordProcess::builder()
        .unix_socket()
        .program(backend("app1", b1, &[]))
        .spawn()
        .await;
    let rouse = start_rouse(&format!(
        "{}{}[[upstream]]\nname = \"app\"\nsupervisor = \"host_a\"\nmin_servers = 2\n\
         slow_start = \"0s\"\n\
         [[upstream.server]]\naddress = \"{a0}\"\n\
         [[upstream.server]]\naddress = \"{b1}\"\nsupervisor = \"host_b\"\n",
        sd_a.rouse_section("host_a", "poll_interval = \"200ms\"\ntimeout = \"1s\""),
        sd_b.rouse_section("host_b", POLL),
    ))
    .await;
    // min_servers = 2: both started, each through its own supervisord.
    wait_state(&rouse, 0, 0, "ready", WAIT).await;
    wait_state(&rouse, 0, 1, "ready", WAIT).await;
    assert!(sd_a.pid_of("app0").await.is_some());
    assert!(sd_b.pid_of("app1").await.is_some());
    assert_eq!(sd_a.statename("app1").await, None, "app1 is not A's");
    let load = Load::start(rouse.addr(), "/", None, 4);
    wait_until("both servers to serve", WAIT, || async {
        rouse.table().upstreams[0]
            .servers
            .iter()
            .all(|s| s.requests() > 0)
    })
    .await;

    // Host A goes away with everything on it.
    sd_a.kill9().await;
    sd_a.kill_orphans();
    wait_until("app0 to be gone", WAIT, || async {
        backend_pids(a0).is_empty()
    })
    .await;
    let lost_at = Instant::now();
    wait_until(
        "server 0 to be out of service",
        Duration::from_secs(5),
        || async { state(&rouse, 0, 0) != "ready" },
    )
    .await;
    sleep(Duration::from_millis(1500)).await;
    let answers = load.finish().await;
    let after: Vec<&Answer> = answers.iter().filter(|a| a.sent >= lost_at).collect();
    assert!(after.len() > 10, "{}", after.len());
    // Only requests in flight on app0 while it was being killed may fail; all the others are
    // served (a refused connect is retried on app1).
    let a0_name = format!("server {a0} ");
    for a in &answers {
        assert!(
            a.status == 200 || (a.status == 502 && a.body.contains(&a0_name) && a.sent < lost_at),
            "{a:?}: {:?}",
            by_body(&answers)
        );
    }
    let late: Vec<&&Answer> = after
        .iter()
        .filter(|a| a.sent >= lost_at + Duration::from_millis(500))
        .collect();
    assert!(
        !late.is_empty() && late.iter().all(|a| a.body == "app1"),
        "by B's server: {:?}",
        by_body(&answers)
    );
    assert_eq!(state(&rouse, 0, 1), "ready");
    assert_ne!(state(&rouse, 0, 0), "ready");
    assert_eq!(sd_b.statename("app1").await.as_deref(), Some("RUNNING"));
}

// === 8. reload ===

/// `[[upstream.server]]` sections naming their programs, so that a server keeps its program
/// whatever its position.
fn named_servers(servers: &[(&str, SocketAddr)]) -> String {
    servers
        .iter()
        .map(|(p, a)| format!("[[upstream.server]]\naddress = \"{a}\"\nprogram = {p:?}\n"))
        .collect()
}

/// Reloads under load against a real supervisord: a server added whose program already runs is
/// adopted (same pid, not spawned again); a removed one is drained and stopped through
/// supervisord; the one that stays keeps its process; no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adopts_added_programs_and_stops_removed_ones_through_supervisord() {
    log_lines();
    let [a0, a1] = free_addrs();
    let sd = SupervisordProcess::builder()
        .program(backend("app0", a0, &["--latency-ms", "10"]))
        .program(backend("app1", a1, &["--latency-ms", "10"]))
        .spawn()
        .await;
    let section = sd.rouse_section("sd", POLL);
    let up = |servers: &[(&str, SocketAddr)]| {
        format!(
            "{section}[[upstream]]\nname = \"app\"\nsupervisor = \"sd\"\nmin_servers = 1\n{}",
            named_servers(servers)
        )
    };
    let rouse = start_rouse(&up(&[("app0", a0)])).await;
    wait_state(&rouse, 0, 0, "ready", WAIT).await;
    let app0 = sd.pid_of("app0").await.expect("app0 runs");
    // app1 is started by hand before rouse knows it.
    let out = sd.supervisorctl(&["start", "app1"]).await;
    assert!(out.contains("started"), "{out}");
    let app1 = sd.pid_of("app1").await.expect("app1 runs");

    let load = Load::start(rouse.addr(), "/", None, 6);
    sleep(Duration::from_millis(300)).await;
    assert!(
        rouse
            .reload(&common::config(&up(&[("app0", a0), ("app1", a1)])))
            .await
            .is_empty()
    );
    wait_state(&rouse, 0, 1, "ready", WAIT).await;
    assert_eq!(
        sd.pid_of("app1").await,
        Some(app1),
        "adopted, not restarted"
    );
    sleep(Duration::from_millis(300)).await;

    // app0 goes; app1 moves to position 0.
    let kept = Arc::clone(&rouse.table().upstreams[0].servers[1]);
    assert!(
        rouse
            .reload(&common::config(&up(&[("app1", a1)])))
            .await
            .is_empty()
    );
    wait_sd_state(&sd, "app0", "STOPPED", WAIT).await;
    sleep(Duration::from_millis(300)).await;
    let answers = load.finish().await;

    common::assert_all_ok_from(&answers, &["app0", "app1"]);
    assert!(Arc::ptr_eq(&rouse.table().upstreams[0].servers[0], &kept));
    assert_eq!(state(&rouse, 0, 0), "ready");
    assert_eq!(sd.pid_of("app1").await, Some(app1));
    assert_eq!((spawns(&sd, "app0"), spawns(&sd, "app1")), (1, 1));
    assert!(backend_pids(a0).is_empty(), "app0 ({app0}) is gone");
    assert!(refuses(a0).await);
    // supervisord stopped it because rouse asked, after its requests were done.
    assert!(
        !logged(&["stopping server", "app0", "reload"]).is_empty(),
        "{:?}",
        logged(&["app0"])
    );
}

// === the admin API's view of the supervisors (the dashboard's) ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_supervisors_says_which_supervisord_answers_and_each_programs_pid() {
    let [a0, b0, gone] = free_addrs();
    let sd = SupervisordProcess::builder()
        .program(backend("app0", a0, &[]))
        .spawn()
        .await;
    let r = start_rouse(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n{}[supervisors.gone]\nurl = \"http://{gone}/RPC2\"\n{POLL}\n{}{}",
        sd.rouse_section("sd", POLL),
        upstream("app", "sd", &[], "", &[a0]),
        upstream("old", "gone", &["old.example"], "", &[b0]),
    ))
    .await;
    let c = client();
    let a = get(&c, &url(r.addr(), "/"), None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "app0"), "{a:?}");
    // RUNNING once up for supervisord's startsecs (1 s), while rouse serves on the open port.
    wait_sd_state(&sd, "app0", "RUNNING", Duration::from_secs(5)).await;
    let pid = sd.pid_of("app0").await.expect("running");

    let admin = r.admin_addr().expect("an admin listener");
    let v: serde_json::Value = c
        .get(format!("http://{admin}/supervisors"))
        .send()
        .await
        .expect("the admin API answers")
        .json()
        .await
        .expect("JSON");
    let by_name = |n: &str| {
        v["supervisors"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == n))
            .cloned()
            .unwrap_or_else(|| panic!("no supervisor {n} in {v}"))
    };
    let sd_json = by_name("sd");
    assert_eq!(sd_json["reachable"], true, "{sd_json}");
    assert_eq!(sd_json["kind"], "supervisord");
    let app0 = sd_json["programs"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["program"] == "app0"))
        .cloned()
        .unwrap_or_else(|| panic!("no app0 in {sd_json}"));
    assert_eq!(app0["state"], "RUNNING");
    assert_eq!(app0["pid"], pid);
    let description = app0["description"].as_str().unwrap_or_default();
    assert!(description.contains("uptime"), "{description}");

    let gone_json = by_name("gone");
    assert_eq!(gone_json["reachable"], false, "{gone_json}");
    assert!(
        gone_json["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{gone_json}"
    );
    assert_eq!(gone_json["programs"], serde_json::json!([]));
    r.shutdown().await;
}
