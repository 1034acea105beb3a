//! The poll task: supervisord pushes nothing to rouse (events need an `[eventlistener]` child
//! of supervisord), so its real state is polled with `getAllProcessInfo` and every change
//! broadcast.
//!
//! A change is judged against what subscribers were last *told*, not against the previous
//! poll: a start reports its new process at once (see `Inner::tell`), and a process that then
//! stops before the next poll looks, to two polls in a row, as STOPPED as before it started.
//! Judged against the previous poll, that stop was never broadcast, and rouse kept routing to
//! a server that was gone.

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
pub(super) type Seen = (ProcessState, Option<u32>);

/// What subscribers were last told about each program.
#[derive(Debug, Default)]
pub(super) struct Told {
    /// By program: the last state and pid sent. `None` before the first poll and after a
    /// failed one: the next success is then broadcast in full, since subscribers cannot know
    /// what happened meanwhile.
    last: Option<HashMap<String, Seen>>,
    /// By program: the last report sent outside the poll, and its stamp. A poll asked before
    /// that report was sent may have been answered before it happened: its state of that
    /// program is older news, even when the poll is the first one.
    reported: HashMap<String, (Seen, u64)>,
    /// Bumped by every report sent outside the poll.
    stamp: u64,
}

impl Told {
    /// The stamp to hand to [`Told::polled`] for a poll whose question is asked now.
    pub(super) fn stamp(&self) -> u64 {
        self.stamp
    }

    /// Sends `info` (a start's news of its process) and remembers it as told, so that the
    /// poll neither repeats it nor misses the next change.
    pub(super) fn tell(&mut self, inner: &Inner, info: ProcessInfo) {
        self.stamp += 1;
        let seen = (info.state, info.pid);
        self.reported
            .insert(info.program.clone(), (seen, self.stamp));
        if let Some(last) = &mut self.last {
            last.insert(info.program.clone(), seen);
        }
        // No receiver is fine: nobody subscribed yet.
        let _ = inner.events.send(info);
    }

    /// Sends every polled info that differs from what was told; `asked` is
    /// [`Told::stamp`] from before the poll's question. A report sent outside the poll after
    /// that is newer than this answer, and is kept as it is.
    pub(super) fn polled(&mut self, inner: &Inner, infos: Vec<ProcessInfo>, asked: u64) {
        let previous = self.last.take();
        let mut now = HashMap::with_capacity(infos.len());
        for info in infos {
            let seen = (info.state, info.pid);
            match self.reported.get(&info.program) {
                Some(&(reported, stamp)) if stamp > asked => {
                    now.insert(info.program, reported);
                    continue;
                }
                _ => {}
            }
            let told = previous.as_ref().and_then(|p| p.get(&info.program));
            now.insert(info.program.clone(), seen);
            if told != Some(&seen) {
                let _ = inner.events.send(info);
            }
        }
        self.last = Some(now);
    }

    /// Supervisord could not be polled: the next success is broadcast in full.
    pub(super) fn forget(&mut self) {
        self.last = None;
    }
}

/// Polls until `cancel` (the driver was dropped).
pub(super) async fn run(inner: Arc<Inner>, cancel: CancellationToken) {
    let mut tick = interval(inner.poll_interval.max(MIN_INTERVAL));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let asked = inner.told().stamp();
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
                inner.told().polled(&inner, infos, asked);
            }
            Err(e) => {
                let e = e.to_string();
                if !failing {
                    tracing::warn!(supervisor = %inner.name, "polling supervisord failed: {e}");
                    failing = true;
                }
                inner.set_last_error(Some(e));
                inner.told().forget();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rouse_config::{SupervisordConfig, SupervisordUrl};
    use tokio::sync::broadcast::Receiver;
    use tokio::sync::broadcast::error::TryRecvError;

    use super::*;
    use crate::Supervisord;

    /// A driver outside any runtime: no poll task runs, the test plays the polls.
    fn driver() -> Arc<Supervisord> {
        let config = SupervisordConfig {
            name: "main".to_owned(),
            url: SupervisordUrl::Http {
                host: "127.0.0.1".to_owned(),
                port: 9,
                path: "/RPC2".to_owned(),
            },
            username: None,
            password: None,
            tls: None,
            poll_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        Supervisord::new(&config, vec!["app0".to_owned()])
    }

    fn info(state: ProcessState, pid: Option<u32>) -> ProcessInfo {
        ProcessInfo {
            program: "app0".to_owned(),
            state,
            pid,
            description: String::new(),
        }
    }

    fn sent(rx: &mut Receiver<ProcessInfo>) -> Vec<Seen> {
        let mut all = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(i) => all.push((i.state, i.pid)),
                Err(TryRecvError::Empty) => return all,
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn poll(d: &Supervisord, asked: u64, state: ProcessState, pid: Option<u32>) {
        let inner = &d.inner;
        inner.told().polled(inner, vec![info(state, pid)], asked);
    }

    #[test]
    fn a_stop_between_two_polls_after_a_start_is_sent() {
        use ProcessState::*;
        let d = driver();
        let mut rx = d.inner.events.subscribe();
        poll(&d, 0, Stopped, None);
        assert_eq!(sent(&mut rx), [(Stopped, None)]);
        d.inner.told().tell(&d.inner, info(Starting, Some(7)));
        assert_eq!(sent(&mut rx), [(Starting, Some(7))]);
        // Stopped by hand before the next poll: that poll sees STOPPED, as the one before the
        // start did, and it is news all the same.
        let asked = d.inner.told().stamp();
        poll(&d, asked, Stopped, None);
        assert_eq!(sent(&mut rx), [(Stopped, None)]);
        poll(&d, asked, Stopped, None);
        assert_eq!(sent(&mut rx), []);
    }

    #[test]
    fn what_a_start_sent_is_not_sent_again_nor_undone_by_an_older_poll() {
        use ProcessState::*;
        let d = driver();
        let mut rx = d.inner.events.subscribe();
        poll(&d, 0, Stopped, None);
        sent(&mut rx);
        // A poll asked before the start, answered after it: its STOPPED is older news.
        let asked = d.inner.told().stamp();
        d.inner.told().tell(&d.inner, info(Starting, Some(7)));
        poll(&d, asked, Stopped, None);
        assert_eq!(sent(&mut rx), [(Starting, Some(7))]);
        let asked = d.inner.told().stamp();
        poll(&d, asked, Starting, Some(7));
        assert_eq!(sent(&mut rx), [], "already told");
        poll(&d, asked, Running, Some(7));
        assert_eq!(sent(&mut rx), [(Running, Some(7))]);
    }

    #[test]
    fn the_first_poll_does_not_undo_a_start_either() {
        use ProcessState::*;
        let d = driver();
        let mut rx = d.inner.events.subscribe();
        // The first poll is asked, then a start reports its process, then the poll's answer
        // (from before the start) comes in.
        let asked = d.inner.told().stamp();
        d.inner.told().tell(&d.inner, info(Starting, Some(7)));
        poll(&d, asked, Stopped, None);
        assert_eq!(sent(&mut rx), [(Starting, Some(7))]);
        let asked = d.inner.told().stamp();
        poll(&d, asked, Starting, Some(7));
        assert_eq!(sent(&mut rx), []);
        poll(&d, asked, Stopped, None);
        assert_eq!(sent(&mut rx), [(Stopped, None)]);
    }

    #[test]
    fn after_a_failed_poll_everything_is_sent_again() {
        use ProcessState::*;
        let d = driver();
        let mut rx = d.inner.events.subscribe();
        poll(&d, 0, Running, Some(7));
        poll(&d, 0, Running, Some(7));
        assert_eq!(sent(&mut rx), [(Running, Some(7))]);
        d.inner.told().forget();
        // A start while supervisord could not be polled is sent; the next poll sends all.
        d.inner.told().tell(&d.inner, info(Running, Some(7)));
        let asked = d.inner.told().stamp();
        poll(&d, asked, Running, Some(7));
        assert_eq!(sent(&mut rx), [(Running, Some(7)), (Running, Some(7))]);
    }
}
