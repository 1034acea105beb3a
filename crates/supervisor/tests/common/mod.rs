//! What both driver test files ask of a driver: a program's current info, and waiting for a
//! state, bounded.
#![allow(dead_code)]

use std::time::Duration;

use rouse_supervisor::{ProcessInfo, ProcessState, Supervisor};
use tokio::time::{Instant, sleep};

pub async fn info(sup: &dyn Supervisor, program: &str) -> ProcessInfo {
    sup.observe()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.program == program)
        .unwrap_or_else(|| panic!("{program} not observed"))
}

/// Reads `program`'s state every `every` until it is `state`, for at most `within`.
pub async fn wait_state_every(
    sup: &dyn Supervisor,
    program: &str,
    state: ProcessState,
    within: Duration,
    every: Duration,
) -> ProcessInfo {
    let deadline = Instant::now() + within;
    loop {
        let i = info(sup, program).await;
        if i.state == state {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "{program} not {state} within {within:?}: {i:?}"
        );
        sleep(every).await;
    }
}
