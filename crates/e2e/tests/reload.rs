//! Reload while serving: static upstreams change under load with no failed request; supervised
//! upstreams keep their processes; a change rouse cannot apply yet is refused and the running
//! configuration keeps serving.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{WAIT, backend_server, client, embedded_upstream, free_addrs, static_upstream, url};
use rouse_config::Config;
use rouse_core::state::ServerState;
use rouse_e2e::{spawn_in_process, wait_until};
use tokio::time::timeout;

fn config(toml: &str) -> Config {
    let text = format!(
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\nconnect_timeout = \"1s\"\nread_timeout = \"5s\"\n{toml}"
    );
    rouse_config::parse("test.toml", &text)
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n---\n{text}"))
}

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
    rouse
        .reload(&config(&after))
        .expect("a static change applies");
    let a_at_reload = a.stats().requests;
    wait_until("b takes the static traffic", WAIT, || async {
        b.stats().requests > 20
    })
    .await;

    // 2. Changing a supervised upstream is refused; the running configuration keeps serving.
    let changed = after.replace("min_servers = 1", "min_servers = 1\nidle_timeout = \"9s\"");
    let refused = rouse.reload(&config(&changed)).expect_err("not applied");
    assert!(refused.to_string().contains("\"e\""), "{refused}");
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

    // The embedded server was kept, with its process: same object, never restarted.
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
