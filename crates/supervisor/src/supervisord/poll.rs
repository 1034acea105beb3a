//! The poll task: supervisord pushes nothing to rouse (events need an `[eventlistener]` child
//! of supervisord), so its real state is polled with `getAllProcessInfo` and every change
//! broadcast.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::driver::{ProcessInfo, ProcessState};

/// A zero interval from a hand-built config must not make the task spin (or tokio panic).
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// What a program's change is judged on. The description is not part of it: a running
/// process's description has its uptime in it, which changes at every poll.
type Seen = (ProcessState, Option<u32>);

/// Polls until `cancel` (the driver was dropped).
pub(super) async fn run(inner: Arc<Inner>, cancel: CancellationToken) {
    let mut tick = interval(inner.poll_interval.max(MIN_INTERVAL));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // None before the first poll and after a failed one: the next success is then broadcast
    // in full, since subscribers cannot know what happened meanwhile.
    let mut previous: Option<HashMap<String, Seen>> = None;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let polled = tokio::select! {
            _ = cancel.cancelled() => return,
            r = inner.snapshot() => r,
        };
        match polled {
            Ok(infos) => {
                if failing {
                    tracing::info!(supervisor = %inner.name, "supervisord answers again");
                    failing = false;
                }
                inner.set_last_error(None);
                previous = Some(broadcast_changes(&inner, previous.as_ref(), infos));
            }
            Err(e) => {
                let e = e.to_string();
                if !failing {
                    tracing::warn!(supervisor = %inner.name, "polling supervisord failed: {e}");
                    failing = true;
                }
                inner.set_last_error(Some(e));
                previous = None;
            }
        }
    }
}

/// Sends every info that differs from `previous` (all of them without one); returns the new
/// `previous`.
fn broadcast_changes(
    inner: &Inner,
    previous: Option<&HashMap<String, Seen>>,
    infos: Vec<ProcessInfo>,
) -> HashMap<String, Seen> {
    let mut now = HashMap::with_capacity(infos.len());
    for info in infos {
        let seen = (info.state, info.pid);
        let changed = previous.is_none_or(|p| p.get(&info.program) != Some(&seen));
        now.insert(info.program.clone(), seen);
        if changed {
            // No receiver is fine: nobody subscribed yet.
            let _ = inner.events.send(info);
        }
    }
    now
}
