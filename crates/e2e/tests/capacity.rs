//! Held requests go out at the pace servers can take them (issue 8): a real supervisord runs
//! three programs of the test backend, each serving at most 2 requests at a time and queueing
//! the rest inside itself (`--concurrency 2`, like gunicorn with 2 sync workers), and 40
//! clients hit the cold upstream at once through rouse.
//!
//! Before release by capacity, rouse started all three programs but sent every held request
//! to the first one up the moment it was ready, where they queued for seconds. Now a cold
//! burst starts the servers it needs at once, and a held request goes only where there is
//! room: under `max_conns` always, and under `target_in_flight` while another server starts.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{WAIT, held, start_rouse};
use rouse::Rouse;
use rouse_e2e::{Program, SupervisordProcess, stats, unique_addr};
use tokio::time::{Instant, timeout};

/// rouse polls supervisord this often here (1 s by default).
const POLL: &str = "poll_interval = \"200ms\"\ntimeout = \"2s\"";
/// Concurrent clients, each sending one request.
const CLIENTS: usize = 40;
/// Each backend's sync workers.
const WORKERS: usize = 2;
const SERVERS: usize = 3;
/// What one request costs a worker.
const SERVICE: Duration = Duration::from_millis(300);
/// What rouse and the loopback may add to a request's time in the backend (scheduling on a
/// loaded two-core machine), far below one service time.
const BACKEND_SLACK: Duration = Duration::from_millis(60);
/// What a handover from one request to the next may add per round: the response reaching
/// rouse, the next held request being woken, connecting or reusing a pooled connection.
const ROUND_SLACK: Duration = Duration::from_millis(100);

/// One client's request as it saw it.
#[derive(Debug)]
struct Reply {
    status: u16,
    kind: String,
    backend: String,
    /// Waited inside the backend for a worker (`x-backend-queued-us`).
    queued: Duration,
    /// In the backend from its head arriving to its response head (`x-backend-time-us`).
    in_backend: Duration,
    /// From the burst's start to the whole answer.
    done: Duration,
}

async fn request(c: reqwest::Client, url: String, t0: Instant) -> Reply {
    let resp = c.get(&url).send().await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            return Reply {
                status: 0,
                kind: common::error_chain(&e),
                backend: String::new(),
                queued: Duration::ZERO,
                in_backend: Duration::ZERO,
                done: t0.elapsed(),
            };
        }
    };
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let us = |name: &str| Duration::from_micros(header(name).parse().unwrap_or(u64::MAX / 4));
    let status = resp.status().as_u16();
    let (kind, backend) = (header("x-rouse-error"), header("x-backend-id"));
    let (queued, in_backend) = (us("x-backend-queued-us"), us("x-backend-time-us"));
    let _ = resp.bytes().await;
    Reply {
        status,
        kind,
        backend,
        queued,
        in_backend,
        done: t0.elapsed(),
    }
}

/// The burst's outcome: every reply, sorted by completion, and when each server became ready
/// (from the burst's start), as rouse's table showed it.
struct Burst {
    replies: Vec<Reply>,
    ready_at: Vec<Duration>,
    addrs: [SocketAddr; SERVERS],
    _sd: SupervisordProcess,
    _rouse: Rouse,
}

/// 40 clients at once on a cold upstream of three supervisord programs; `upstream_keys` and
/// `server_keys` go in the `[[upstream]]` and each `[[upstream.server]]`.
async fn cold_burst(upstream_keys: &str, server_keys: &str) -> Burst {
    let addrs: [SocketAddr; SERVERS] = std::array::from_fn(|_| unique_addr());
    let workers = WORKERS.to_string();
    let mut sd = SupervisordProcess::builder();
    for (i, a) in addrs.iter().enumerate() {
        sd = sd.program(Program::backend_with_bin(
            &rouse_e2e::backend_bin!(),
            &format!("app{i}"),
            *a,
            &["--concurrency", &workers],
        ));
    }
    let sd = sd.spawn().await;
    let mut toml = format!(
        "{}[[upstream]]\nname = \"app\"\nsupervisor = \"sd\"\nmax_servers = {SERVERS}\n\
         {upstream_keys}\n",
        sd.rouse_section("sd", POLL)
    );
    for a in &addrs {
        toml.push_str(&format!(
            "[[upstream.server]]\naddress = \"{a}\"\n{server_keys}\n"
        ));
    }
    let rouse = start_rouse(&toml).await;
    assert_eq!(common::states(&rouse, 0), ["stopped"; SERVERS]);

    let c = common::client();
    let url = common::url(rouse.addr(), &format!("/delay/{}", SERVICE.as_millis()));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(request(c.clone(), url.clone(), t0)))
        .collect();
    // When each server becomes ready, watched while the burst runs: a condition polled every
    // millisecond, bounded by WAIT. Polling can only see it late, which loosens the bound below.
    let table = rouse.table();
    let watch = tokio::spawn(async move {
        let servers = &table.upstreams[0].servers;
        let mut ready_at: Vec<Option<Duration>> = vec![None; servers.len()];
        while ready_at.iter().any(Option::is_none) {
            assert!(t0.elapsed() < WAIT, "servers ready: {ready_at:?}");
            for (at, s) in servers.iter().enumerate() {
                if ready_at[at].is_none() && s.state().as_str() == "ready" {
                    ready_at[at] = Some(t0.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        ready_at.into_iter().flatten().collect::<Vec<_>>()
    });
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(timeout(WAIT, t).await.expect("answered").expect("task"));
    }
    let ready_at = timeout(WAIT, watch)
        .await
        .expect("all ready")
        .expect("task");
    replies.sort_by_key(|r| r.done);
    assert_eq!(held(&rouse, 0), 0);
    Burst {
        replies,
        ready_at,
        addrs,
        _sd: sd,
        _rouse: rouse,
    }
}

fn summary(b: &Burst) -> String {
    let mut s = format!("ready at {:?}\n", b.ready_at);
    for (k, r) in b.replies.iter().enumerate() {
        s.push_str(&format!(
            "#{:>2} {} {:<14} {:<5} queued {:>6.1} ms, in backend {:>6.1} ms, done at {:>7.1} ms\n",
            k + 1,
            r.status,
            r.kind,
            r.backend,
            r.queued.as_secs_f64() * 1e3,
            r.in_backend.as_secs_f64() * 1e3,
            r.done.as_secs_f64() * 1e3,
        ));
    }
    s
}

fn assert_all_answered_200(b: &Burst) {
    for r in &b.replies {
        assert_eq!(r.status, 200, "{}", summary(b));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_burst_goes_out_at_the_pace_of_max_conns() {
    let b = cold_burst("", &format!("max_conns = {WORKERS}")).await;
    let why = summary(&b);
    eprintln!("{why}");
    assert_all_answered_200(&b);

    // No backend ever had more requests than workers, so none queued one: each request's
    // time in its backend is its service time.
    for a in &b.addrs {
        let s = stats(*a).await;
        assert!(s.max_in_flight <= WORKERS as u64, "{a}: {s:?}\n{why}");
        assert_eq!(s.queued, 0, "{a}: {s:?}\n{why}");
    }
    for r in &b.replies {
        assert_eq!(r.queued, Duration::ZERO, "{why}");
        assert!(r.in_backend <= SERVICE + BACKEND_SLACK, "{why}");
    }
    // All three servers were started for the burst, at once (rule 2), and served it.
    let mut backends: Vec<&str> = b.replies.iter().map(|r| r.backend.as_str()).collect();
    backends.sort_unstable();
    backends.dedup();
    assert_eq!(backends, ["app0", "app1", "app2"], "{why}");

    // The pace. Once every server is ready (at `all_ready`), there are SERVERS × WORKERS
    // slots, and rouse keeps each one busy while requests wait: a slot that frees is handed
    // to a held request within ROUND_SLACK. So each slot completes a request at least every
    // SERVICE + ROUND_SLACK from `all_ready` on (one in service at `all_ready` needs at most
    // SERVICE), and by `all_ready + m × (SERVICE + ROUND_SLACK)` at least min(CLIENTS, 6m)
    // requests are done, those done before `all_ready` included. Hence the k-th completion
    // (1-based) comes by `all_ready + ceil(k / 6) × (SERVICE + ROUND_SLACK)`. Sending every
    // held request to the first server up, as before, finishes the last one near
    // `first_ready + 19 × SERVICE`, about twice this bound for k = 40.
    let all_ready = *b.ready_at.iter().max().expect("three servers");
    let slots = (SERVERS * WORKERS) as u32;
    for (k, r) in b.replies.iter().enumerate() {
        let rounds = (k as u32 + 1).div_ceil(slots);
        let bound = all_ready + (SERVICE + ROUND_SLACK) * rounds;
        assert!(
            r.done <= bound,
            "#{} done at {:?}, bound {bound:?}\n{why}",
            k + 1,
            r.done
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_burst_at_target_waits_for_the_servers_starting_instead_of_piling_on_the_first() {
    // No max_conns: the target caps a ready server only while another one starts. All three
    // start at once (40 held at target 2 need 20), so the first one up takes 2 and the rest
    // wait for the others; once all are up and nothing starts, the requests still waiting
    // are spread fairly, above target (no hard cap), as ever.
    let b = cold_burst("target_in_flight = 2", "").await;
    let why = summary(&b);
    eprintln!("{why}");
    assert_all_answered_200(&b);
    let mut backends: Vec<&str> = b.replies.iter().map(|r| r.backend.as_str()).collect();
    backends.sort_unstable();
    backends.dedup();
    assert_eq!(backends, ["app0", "app1", "app2"], "{why}");
    // The 38-on-one: with the load spread over three servers, none gets more than
    // its fair share of the burst plus the two it had before the others were up.
    let fair = (CLIENTS as u64).div_ceil(SERVERS as u64) + WORKERS as u64;
    for a in &b.addrs {
        let s = stats(*a).await;
        assert!(s.max_in_flight <= fair, "{a}: {s:?}\n{why}");
    }
}

/// A static upstream over one in-process backend with `max_conns`, and `upstream_keys`.
async fn static_capped(
    max_conns: u32,
    upstream_keys: &str,
) -> (rouse_e2e::InProcessBackend, Rouse) {
    let backend = rouse_e2e::spawn_in_process("s").await;
    let rouse = start_rouse(&format!(
        "[[upstream]]\nname = \"s\"\nsupervisor = \"none\"\n{upstream_keys}\n\
         [[upstream.server]]\naddress = \"{}\"\nmax_conns = {max_conns}\n",
        backend.addr()
    ))
    .await;
    (backend, rouse)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_servers_at_max_conns_make_requests_wait_for_room() {
    let (backend, rouse) = static_capped(1, "").await;
    let c = common::client();
    let url = common::url(rouse.addr(), "/delay/200");
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| tokio::spawn(request(c.clone(), url.clone(), t0)))
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(timeout(WAIT, t).await.expect("answered").expect("task"));
    }
    for r in &replies {
        assert_eq!(r.status, 200, "{replies:?}");
    }
    // One at a time, so the four took four service times, none of them inside the backend.
    assert_eq!(backend.stats().max_in_flight, 1);
    let last = replies.iter().map(|r| r.done).max().expect("four");
    assert!(last >= Duration::from_millis(4 * 200), "{replies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_while_every_server_stays_full_gets_503_at_capacity() {
    let (backend, rouse) = static_capped(1, "start_timeout = \"300ms\"").await;
    let c = common::client();
    let t0 = Instant::now();
    let long = tokio::spawn(request(
        c.clone(),
        common::url(rouse.addr(), "/delay/3000"),
        t0,
    ));
    rouse_e2e::wait_until("the long request to be in flight", WAIT, || async {
        backend.stats().in_flight == 1
    })
    .await;
    let a = common::get(&c, &common::url(rouse.addr(), "/"), &[]).await;
    assert_eq!((a.status, a.kind.as_str()), (503, "at-capacity"), "{a:?}");
    assert!(a.retry_after.is_some(), "{a:?}");
    assert!(
        a.took >= Duration::from_millis(250),
        "held until start_timeout: {a:?}"
    );
    assert!(a.body.contains("max_conns"), "{a:?}");
    let long = timeout(WAIT, long).await.expect("answered").expect("task");
    assert_eq!(long.status, 200);
    assert_eq!(backend.stats().max_in_flight, 1);
}
