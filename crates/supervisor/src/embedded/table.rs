//! The state every task of the driver shares: one slot per program, the live process
//! groups, and the event channel.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::HandedChild;
use super::spec::{EmbeddedOptions, ProgramSpec};
use super::stale::Groups;
use crate::driver::{ProcessInfo, ProcessState};

/// The run in charge of a program: the task that spawned it and is the only one to touch
/// its `Child`.
pub(super) struct Run {
    /// Asks the task to stop the process (or to drop a pending retry).
    pub cancel: CancellationToken,
    /// Asks the task to let go of the process without stopping it (`rouse upgrade`): it
    /// records it in `Shared::handed` and ends.
    pub detach: CancellationToken,
    /// Cancelled when the task is over, whatever way it ended.
    pub done: CancellationToken,
    /// How long a stop of this run can take at most, to bound the waits for `done`.
    pub stop_bound: Duration,
}

impl Run {
    pub fn active(&self) -> bool {
        !self.done.is_cancelled()
    }
}

pub(super) struct Slot {
    /// The spec the next start uses (a running process keeps the one it was started with).
    pub spec: ProgramSpec,
    pub state: ProcessState,
    pub pid: Option<u32>,
    pub description: String,
    /// When the current process was spawned, for its uptime.
    pub since: Option<Instant>,
    /// Bumped at every start so that a late report of a previous run cannot overwrite the
    /// state of the current one.
    pub generation: u64,
    pub run: Option<Run>,
    /// Dropped from the configuration; the slot goes once its run is over.
    pub removed: bool,
}

impl Slot {
    pub fn new(spec: ProgramSpec) -> Slot {
        Slot {
            spec,
            state: ProcessState::Stopped,
            pid: None,
            description: "not started".to_owned(),
            since: None,
            generation: 0,
            run: None,
            removed: false,
        }
    }

    pub fn active_run(&self) -> Option<&Run> {
        self.run.as_ref().filter(|r| r.active())
    }

    pub fn info(&self, program: &str) -> ProcessInfo {
        let description = match (self.state, self.pid, self.since) {
            (ProcessState::Running, Some(pid), Some(since)) => {
                running_description(pid, since.elapsed())
            }
            _ => self.description.clone(),
        };
        ProcessInfo {
            program: program.to_owned(),
            state: self.state,
            pid: self.pid,
            description,
        }
    }
}

/// supervisord's wording: "pid 123, uptime 0:01:02".
pub(super) fn running_description(pid: u32, uptime: Duration) -> String {
    let s = uptime.as_secs();
    format!(
        "pid {pid}, uptime {}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

pub(super) struct Shared {
    pub options: EmbeddedOptions,
    pub events: broadcast::Sender<ProcessInfo>,
    pub slots: Mutex<BTreeMap<String, Slot>>,
    pub groups: Mutex<Groups>,
    /// Parent of every run's `cancel`: the driver being dropped stops everything.
    pub root: CancellationToken,
    /// Set by `shutdown` and `hand_over`: no new starts from then on.
    pub closing: AtomicBool,
    /// The processes runs let go of, for the next rouse.
    pub handed: Mutex<Vec<HandedChild>>,
    /// Bumped by [`super::Embedded::reopen_logs`]: each child's output task reopens its file.
    pub reopen: watch::Sender<u64>,
}

/// A panic elsewhere while holding a lock must not take the supervisor down with it: the
/// data behind these locks stays consistent at every await-free step.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A transition as a run reports it; it replaces the whole state of the slot.
pub(super) struct Report {
    pub state: ProcessState,
    pub pid: Option<u32>,
    pub description: String,
    pub since: Option<Instant>,
}

impl Shared {
    pub fn slots(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        lock(&self.slots)
    }

    pub fn groups(&self) -> MutexGuard<'_, Groups> {
        lock(&self.groups)
    }

    pub fn handed(&self) -> MutexGuard<'_, Vec<HandedChild>> {
        lock(&self.handed)
    }

    /// Records a transition of run `generation` of `program` and broadcasts it, unless a
    /// newer run has taken over the slot.
    pub fn report(&self, program: &str, generation: u64, report: Report) {
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(program) else {
            return;
        };
        if slot.generation != generation {
            return;
        }
        slot.state = report.state;
        slot.pid = report.pid;
        slot.description = report.description;
        slot.since = report.since;
        let info = slot.info(program);
        tracing::info!(program, state = %info.state, pid = ?info.pid, "{}", info.description);
        // Sent under the lock so that subscribers see each program's transitions in order.
        let _ = self.events.send(info);
    }

    /// The end of run `generation`: a program removed from the configuration goes now.
    pub fn finish(&self, program: &str, generation: u64) {
        let mut slots = self.slots();
        if slots
            .get(program)
            .is_some_and(|s| s.generation == generation && s.removed)
        {
            slots.remove(program);
        }
    }
}
