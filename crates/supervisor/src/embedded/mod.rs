//! The embedded supervisor: rouse runs the servers' `command`s itself, in supervisord's
//! vocabulary (see [`ProcessState`]) and much like supervisord's process.py, except that a
//! process that exits after Running is not restarted: rouse's reconciler decides that.
//!
//! Every child leads its own process group, and every signal goes to the group, so a server
//! started behind `sh -c` and whatever it forks are stopped together.
//!
//! Children never outlive a rouse that exits normally: [`Embedded::shutdown`] stops them
//! gracefully, and dropping the driver (or a run's task being aborted) SIGKILLs their groups.
//! A rouse that is SIGKILLed itself cannot do either; with a `state_file`, the next
//! [`Embedded::new`] kills the groups it left behind (only those whose leader is still the
//! process it started: [`stale`]). The file's directory must be writable by rouse's user
//! alone ([`state_file`]).
//!
//! `rouse upgrade` hands the running children to the next rouse process instead:
//! [`Embedded::hand_over`] lets go of them (still running, pipes and all), and the new
//! process's [`Embedded::adopting`] takes them on ([`adopt`]).

mod adopt;
mod output;
mod procfs;
mod run;
mod spawn;
mod spec;
mod stale;
mod state_file;
mod stop;
mod table;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

pub use spec::{EmbeddedOptions, ProgramSpec};
pub use state_file::{StateDirError, default_state_dir};

use crate::driver::{BoxFuture, ProcessInfo, ProcessState, Supervisor, SupervisorError};
use stale::Groups;
use table::{Run, Shared, Slot};

const EVENTS_CAPACITY: usize = 1024;
/// The first spawn is a fork and exec; its outcome comes back at once unless the runtime is
/// starved, and `start` must not hang even then.
const SPAWN_REPLY_BOUND: Duration = Duration::from_secs(10);

enum StartStep {
    Launched(oneshot::Receiver<Result<(), String>>),
    AlreadyUp,
    WaitForStop(CancellationToken, Duration),
}

pub struct Embedded {
    shared: Arc<Shared>,
}

/// A running child handed from one rouse process to the next (`rouse upgrade`): the leader
/// of its own process group, and the read ends of its stdout and stderr pipes.
#[derive(Debug)]
pub struct HandedChild {
    pub program: String,
    pub pid: u32,
    pub pgid: i32,
    /// The leader's start time (/proc), which tells it from a process that got its pid later.
    pub starttime: Option<u64>,
    pub stdout: Option<std::os::fd::OwnedFd>,
    pub stderr: Option<std::os::fd::OwnedFd>,
}

impl Embedded {
    /// A driver for `programs` (names are unique; a duplicate replaces the earlier one).
    ///
    /// With a `state_file` left by a rouse that crashed, kills the process groups recorded
    /// there that are still alive first: SIGTERM, then SIGKILL after 2 s. That can block the
    /// calling thread for those 2 s. A `state_file` whose directory others could write is
    /// neither read nor written (a WARN says why): rouse then runs without one.
    pub fn new(programs: Vec<ProgramSpec>, options: EmbeddedOptions) -> Arc<Embedded> {
        Embedded::build(programs, options, None)
    }

    /// A driver that takes on the children the previous rouse handed over (`rouse upgrade`),
    /// instead of killing what the state file lists: those are the very children. A child
    /// whose program the configuration no longer has is stopped.
    pub fn adopting(
        programs: Vec<ProgramSpec>,
        options: EmbeddedOptions,
        children: Vec<HandedChild>,
    ) -> Arc<Embedded> {
        Embedded::build(programs, options, Some(children))
    }

    fn build(
        programs: Vec<ProgramSpec>,
        mut options: EmbeddedOptions,
        adopt: Option<Vec<HandedChild>>,
    ) -> Arc<Embedded> {
        options.state_file = options.state_file.take().filter(|path| usable(path));
        if let Some(path) = &options.state_file
            && adopt.is_none()
        {
            stale::kill_stale(path);
        }
        let groups = Groups::new(options.state_file.clone());
        let (events, _) = broadcast::channel(EVENTS_CAPACITY);
        let embedded = Embedded {
            shared: Arc::new(Shared {
                options,
                events,
                slots: Mutex::new(BTreeMap::new()),
                groups: Mutex::new(groups),
                root: CancellationToken::new(),
                closing: Default::default(),
                handed: Default::default(),
                reopen: watch::Sender::new(0),
            }),
        };
        embedded.set_programs(programs);
        for child in adopt.unwrap_or_default() {
            embedded.adopt(child);
        }
        Arc::new(embedded)
    }

    /// Takes on one handed-over child as the program's current run.
    fn adopt(&self, child: HandedChild) {
        let mut slots = self.shared.slots();
        let slot = match slots.get_mut(&child.program) {
            Some(slot) => slot,
            None => {
                // Not configured any more: adopted as removed, so its run stops it at once.
                tracing::info!(program = %child.program, pid = child.pid, "the configuration no longer has this program: stopping the child handed over");
                let spec = ProgramSpec {
                    program: child.program.clone(),
                    command: rouse_config::CommandLine::Argv(Arc::from([])),
                    env: Default::default(),
                    cwd: None,
                    startsecs: Duration::ZERO,
                    stop_signal: "TERM".to_owned(),
                    stop_timeout: Duration::from_secs(10),
                };
                let mut slot = Slot::new(spec);
                slot.removed = true;
                slots.entry(child.program.clone()).or_insert(slot)
            }
        };
        let (cancel, detach, done) = begin_run(slot, &self.shared.root);
        if slot.removed {
            cancel.cancel();
        }
        slot.state = ProcessState::Running;
        slot.pid = Some(child.pid);
        slot.description = format!("pid {}, adopted", child.pid);
        slot.since = Some(tokio::time::Instant::now());
        tokio::spawn(adopt::run(adopt::AdoptArgs {
            shared: self.shared.clone(),
            generation: slot.generation,
            spec: slot.spec.clone(),
            cancel,
            detach,
            done,
            child,
        }));
    }

    /// After a [`Embedded::hand_over`] that came to nothing (the new rouse failed): takes
    /// the children back, as adopted ones, and accepts starts again.
    pub fn take_back(&self, children: Vec<HandedChild>) {
        if let Some(path) = &self.shared.options.state_file {
            self.shared.groups().reclaim_file(path.clone());
        }
        self.shared.closing.store(false, Ordering::SeqCst);
        for child in children {
            self.adopt(child);
        }
    }

    /// Lets go of every running child, still running, for the next rouse process, and stops
    /// taking starts (`rouse upgrade`); after it, nothing this driver does touches them, not
    /// even its drop, and the state file is left to the next rouse.
    pub async fn hand_over(&self) -> Vec<HandedChild> {
        self.shared.closing.store(true, Ordering::SeqCst);
        let runs: Vec<(CancellationToken, Duration)> = self
            .shared
            .slots()
            .values()
            .filter_map(Slot::active_run)
            .map(|run| {
                run.detach.cancel();
                (run.done.clone(), run.stop_bound)
            })
            .collect();
        for (done, bound) in runs {
            // A run that was stopping finishes its stop first.
            let _ = timeout(bound, done.cancelled()).await;
        }
        self.shared.groups().release_file();
        std::mem::take(&mut *self.shared.handed())
    }

    /// Applies a reloaded configuration: new programs are added (Stopped), programs no longer
    /// listed are stopped in the background and then forgotten, and a changed spec takes
    /// effect at the program's next start.
    /// Each running child's log file (`log_dir`) is opened again by its name (SIGUSR1, after
    /// logrotate renamed it): what the child writes next goes to the new file.
    pub fn reopen_logs(&self) {
        self.shared.reopen.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn set_programs(&self, programs: Vec<ProgramSpec>) {
        let mut wanted: BTreeMap<String, ProgramSpec> = BTreeMap::new();
        for spec in programs {
            if wanted.contains_key(&spec.program) {
                tracing::warn!(program = %spec.program, "program listed twice; the last one is used");
            }
            wanted.insert(spec.program.clone(), spec);
        }
        let mut slots = self.shared.slots();
        slots.retain(|name, slot| {
            if wanted.contains_key(name) {
                return true;
            }
            let Some(run) = slot.active_run() else {
                return false;
            };
            // The run's task forgets the slot once it has stopped the process.
            run.cancel.cancel();
            slot.removed = true;
            true
        });
        for (name, spec) in wanted {
            match slots.get_mut(&name) {
                Some(slot) => {
                    slot.spec = spec;
                    slot.removed = false;
                }
                None => {
                    slots.insert(name, Slot::new(spec));
                }
            }
        }
    }

    /// Stops every child, in parallel, each bounded by its own `stop_timeout` (plus the
    /// SIGKILL grace); no start is accepted from then on.
    pub async fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        let names: Vec<String> = self.shared.slots().keys().cloned().collect();
        let results = join_all(names.iter().map(|n| self.stop_program(n))).await;
        for (name, result) in names.iter().zip(results) {
            if let Err(e) = result {
                tracing::error!(program = %name, %e, "could not stop at shutdown");
            }
        }
    }

    async fn start_program(&self, program: &str) -> Result<(), SupervisorError> {
        // A start racing a stop waits for the stop to finish, then starts afresh; the loop
        // only turns again if yet another stop slipped in between.
        for _ in 0..3 {
            let (done, bound) = match self.start_step(program)? {
                StartStep::Launched(first) => return self.first_spawn(program, first).await,
                StartStep::AlreadyUp => return Ok(()),
                StartStep::WaitForStop(done, bound) => (done, bound),
            };
            if timeout(bound, done.cancelled()).await.is_err() {
                return Err(SupervisorError::Other(format!(
                    "{program:?} is still stopping after {bound:?}"
                )));
            }
        }
        Err(SupervisorError::Other(format!(
            "{program:?} keeps being stopped while starting"
        )))
    }

    /// What `start` does next, decided under the lock (and never across an await).
    fn start_step(&self, program: &str) -> Result<StartStep, SupervisorError> {
        let mut slots = self.shared.slots();
        if self.shared.closing.load(Ordering::SeqCst) {
            return Err(SupervisorError::Other(
                "the embedded supervisor is shutting down".to_owned(),
            ));
        }
        let Some(slot) = slots.get_mut(program).filter(|s| !s.removed) else {
            return Err(SupervisorError::BadName {
                program: program.to_owned(),
                why: "not in the configuration".to_owned(),
            });
        };
        Ok(match slot.active_run() {
            Some(run) if run.cancel.is_cancelled() => {
                StartStep::WaitForStop(run.done.clone(), run.stop_bound)
            }
            Some(_)
                if matches!(
                    slot.state,
                    ProcessState::Starting | ProcessState::Running | ProcessState::Backoff
                ) =>
            {
                StartStep::AlreadyUp
            }
            // Stopped, Exited, Fatal, Unknown: a new run (and a fresh retry count).
            _ => StartStep::Launched(self.launch(program, slot)),
        })
    }

    /// Starts a new run in `slot` (locked by the caller); the receiver gets the first
    /// spawn's outcome.
    fn launch(&self, program: &str, slot: &mut Slot) -> oneshot::Receiver<Result<(), String>> {
        let (cancel, detach, done) = begin_run(slot, &self.shared.root);
        // Not broadcast: the run reports Starting with the pid a moment later. Setting it
        // here makes a second start a no-op right away.
        slot.state = ProcessState::Starting;
        slot.pid = None;
        slot.description = "spawning".to_owned();
        slot.since = None;
        let (first, first_rx) = oneshot::channel();
        tokio::spawn(run::run(run::RunArgs {
            shared: self.shared.clone(),
            program: program.to_owned(),
            generation: slot.generation,
            spec: slot.spec.clone(),
            cancel,
            detach,
            done,
            first,
        }));
        first_rx
    }

    async fn first_spawn(
        &self,
        program: &str,
        first: oneshot::Receiver<Result<(), String>>,
    ) -> Result<(), SupervisorError> {
        match timeout(SPAWN_REPLY_BOUND, first).await {
            Ok(Ok(Ok(()))) => Ok(()),
            // As supervisord's SPAWN_ERROR: reported, while the retries go on.
            Ok(Ok(Err(reason))) => Err(SupervisorError::Spawn {
                program: program.to_owned(),
                reason,
            }),
            // Stopped before it even spawned.
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(SupervisorError::Other(format!(
                "no word from the spawn of {program:?} after {SPAWN_REPLY_BOUND:?}"
            ))),
        }
    }

    async fn stop_program(&self, program: &str) -> Result<(), SupervisorError> {
        let (done, bound) = {
            let slots = self.shared.slots();
            let slot = slots.get(program).ok_or_else(|| SupervisorError::BadName {
                program: program.to_owned(),
                why: "not in the configuration".to_owned(),
            })?;
            let Some(run) = slot.active_run() else {
                return Ok(());
            };
            run.cancel.cancel();
            (run.done.clone(), run.stop_bound)
        };
        if timeout(bound, done.cancelled()).await.is_err() {
            return Err(SupervisorError::Other(format!(
                "{program:?} still not stopped after {bound:?}"
            )));
        }
        match self.shared.slots().get(program) {
            Some(slot) if slot.state == ProcessState::Unknown => Err(SupervisorError::Other(
                format!("cannot stop {program:?}: {}", slot.description),
            )),
            _ => Ok(()),
        }
    }
}

/// Whether `path`'s directory can hold the state file (created if need be).
fn usable(path: &std::path::Path) -> bool {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    match state_file::prepare_dir(dir) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(path = %path.display(), "{e}: running without a state file, so children left by a rouse that gets killed will not be cleaned up by the next one");
            false
        }
    }
}

impl Supervisor for Embedded {
    fn name(&self) -> &str {
        "embedded"
    }

    fn manage(&self, servers: &[&rouse_config::ServerConfig]) {
        self.set_programs(
            servers
                .iter()
                .filter_map(|s| ProgramSpec::from_server(s))
                .collect(),
        );
    }

    fn start<'a>(&'a self, program: &'a str) -> BoxFuture<'a, Result<(), SupervisorError>> {
        Box::pin(self.start_program(program))
    }

    fn stop<'a>(&'a self, program: &'a str) -> BoxFuture<'a, Result<(), SupervisorError>> {
        Box::pin(self.stop_program(program))
    }

    fn observe(&self) -> BoxFuture<'_, Result<Vec<ProcessInfo>, SupervisorError>> {
        let infos = self
            .shared
            .slots()
            .iter()
            .map(|(name, slot)| slot.info(name))
            .collect();
        Box::pin(std::future::ready(Ok(infos)))
    }

    fn subscribe(&self) -> broadcast::Receiver<ProcessInfo> {
        self.shared.events.subscribe()
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // No await possible here, so no grace: `shutdown` is the graceful way.
        self.shared.root.cancel();
        self.shared.groups().kill_all();
    }
}

/// A new run of `slot`'s program (spawned or adopted): a new generation and the run's tokens
/// (cancel, detach, done), with its stop bounded by `stop_timeout` and the SIGKILL grace.
fn begin_run(
    slot: &mut Slot,
    root: &CancellationToken,
) -> (CancellationToken, CancellationToken, CancellationToken) {
    slot.generation += 1;
    let (cancel, detach, done) = (
        root.child_token(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    slot.run = Some(Run {
        cancel: cancel.clone(),
        detach: detach.clone(),
        done: done.clone(),
        stop_bound: slot
            .spec
            .stop_timeout
            .saturating_add(stop::KILL_GRACE)
            .saturating_add(Duration::from_secs(1)),
    });
    (cancel, detach, done)
}
