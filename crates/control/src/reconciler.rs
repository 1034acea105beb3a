//! The reconciler loop: observe, decide, act.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rouse_config::{Readiness, SupervisorRef, UpstreamConfig};
use rouse_core::policy::{
    Action, ScalePolicy, ScaleSettings, ServerView, StopReason, UpstreamView,
};
use rouse_core::state::ServerState;
use rouse_core::transition::{self, Event};
use std::time::SystemTime;

use rouse_state::metrics::{StartLabels, StopLabels};
use rouse_state::{Entry, Metrics, Server, Table, Upstream};
use rouse_supervisor::{Embedded, ProcessInfo, ProcessState, Supervisor, SupervisorError};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, DropGuard};

mod actions;
mod events;
mod manual;
mod record;
mod reload;

use manual::Names;
pub use manual::{ControlHandle, Manual, ManualError, ManualOp};
use reload::Busy;

use crate::probe;
use crate::rate::RateMeter;

#[cfg(test)]
mod tests;

/// How often the loop decides even when nothing happened (idle and hysteresis timers are this
/// precise).
const TICK: Duration = Duration::from_millis(250);
/// Requests/s are measured over this window.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// How long the first read of a supervisor's process states may take.
const INITIAL_OBSERVE: Duration = Duration::from_secs(10);
/// "supervisor" readiness polls the supervisor this often while a server starts.
const OBSERVE_INTERVAL: Duration = Duration::from_millis(20);

/// The supervisors an upstream can name.
#[derive(Default, Clone)]
pub struct Drivers {
    pub embedded: Option<Arc<Embedded>>,
    pub supervisord: HashMap<String, Arc<dyn Supervisor>>,
}

impl Drivers {
    fn for_server(&self, r: &SupervisorRef) -> Option<Arc<dyn Supervisor>> {
        match r {
            SupervisorRef::Static => None,
            SupervisorRef::Embedded => self
                .embedded
                .as_ref()
                .map(|e| Arc::clone(e) as Arc<dyn Supervisor>),
            SupervisorRef::Supervisord(name) => self.supervisord.get(name).cloned(),
        }
    }
}

/// The running control plane.
pub struct Control {
    handle: ControlHandle,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    drivers: Drivers,
}

impl Control {
    /// Starts the reconciler for every supervised upstream of `table`.
    pub fn spawn(table: Arc<Table>, drivers: Drivers) -> Control {
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = ControlHandle {
            tx: tx.clone(),
            names: Arc::new(RwLock::new(Names::of(&table))),
        };
        let mut r = Reconciler {
            table: Arc::clone(&table),
            ups: Vec::new(),
            programs: HashMap::new(),
            ids: HashMap::new(),
            next_id: 0,
            forwarders: Vec::new(),
            tx,
            stop: stop.clone(),
        };
        r.set_table(table, &drivers);
        let task = tokio::spawn(r.run(rx, stop.clone()));
        Control {
            handle,
            stop,
            task: Some(task),
            drivers,
        }
    }

    /// For manual start/stop commands.
    pub fn handle(&self) -> ControlHandle {
        self.handle.clone()
    }

    /// Switches to a reloaded table (see `Table::reloaded`): servers it kept go on as they
    /// are, new ones start stopped (or are adopted when already running), and those it dropped
    /// are drained, stopped and forgotten. `drivers` must keep the embedded supervisor of
    /// `spawn`. Returns once the loop has the new table, before any server has changed.
    pub async fn reload(&self, table: Arc<Table>, drivers: Drivers) {
        self.handle.reload(table, drivers).await
    }

    /// Stops deciding, then stops every embedded child (supervisord's programs are left as they
    /// are: supervisord owns them, and the next rouse adopts them).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        if let Some(e) = &self.drivers.embedded {
            e.shutdown().await;
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn forward_process_events(
    supervisor: Arc<dyn Supervisor>,
    tx: mpsc::UnboundedSender<Msg>,
    stop: CancellationToken,
) {
    let driver = supervisor.name().to_owned();
    // Subscribe first, then read the current state: a change in between is seen twice rather
    // than missed. This is how programs already running at start-up are adopted.
    let mut rx = supervisor.subscribe();
    match tokio::time::timeout(INITIAL_OBSERVE, supervisor.observe()).await {
        Ok(Ok(infos)) => {
            for info in infos {
                let _ = tx.send(Msg::Process(driver.clone(), info));
            }
        }
        // Unreachable now: its driver reports the whole state once it answers again.
        Ok(Err(e)) => tracing::warn!(supervisor = driver, "cannot read process states: {e}"),
        Err(_) => tracing::warn!(supervisor = driver, "reading process states timed out"),
    }
    loop {
        let info = tokio::select! {
            _ = stop.cancelled() => return,
            r = rx.recv() => r,
        };
        match info {
            Ok(info) => {
                if tx.send(Msg::Process(driver.clone(), info)).is_err() {
                    return;
                }
            }
            // Missed transitions: the loop re-reads states from probes and stops anyway, and
            // the next events are current.
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(driver, missed = n, "process events lagged");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Wakes the loop when the data plane could not connect to `server`, so that `reconcile` marks
/// it failed (and starts bringing it back) now rather than at the next tick.
async fn forward_failures(
    server: Arc<Server>,
    tx: mpsc::UnboundedSender<Msg>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = server.failure_noticed() => {}
        }
        if tx.send(Msg::PassiveFailure).is_err() {
            return;
        }
    }
}

/// What tasks report back to the loop. `generation` ties a report to the start it belongs to,
/// so a late answer about an earlier attempt is ignored.
enum Msg {
    Reload {
        table: Arc<Table>,
        drivers: Drivers,
        reply: tokio::sync::oneshot::Sender<()>,
    },
    Manual {
        upstream: String,
        index: Option<usize>,
        op: ManualOp,
        reply: tokio::sync::oneshot::Sender<Result<Manual, ManualError>>,
    },
    Started {
        /// The server's `ServerCtl::id`.
        id: usize,
        generation: u64,
        result: Result<(), StartFailure>,
    },
    Probed {
        /// The server's `ServerCtl::id`.
        id: usize,
        generation: u64,
        result: Result<(), NotReady>,
    },
    StopDone {
        /// The server's `ServerCtl::id`.
        id: usize,
        generation: u64,
        result: Result<(), String>,
    },
    /// Whether a ready server the data plane could not connect to accepts connections.
    Checked {
        id: usize,
        generation: u64,
        result: Result<(), String>,
    },
    Process(String, ProcessInfo),
    /// The data plane saw a connect fail; `reconcile` (run after every message) acts on it.
    PassiveFailure,
}

/// Why the supervisor did not start a server.
struct StartFailure {
    why: String,
    /// The supervisor does not know the program.
    bad_name: bool,
    /// The supervisor could not be reached (or refused rouse's credentials): the server itself
    /// is not to blame.
    unreachable: bool,
}

/// Why a started server did not become ready.
enum NotReady {
    /// Still not ready when `start_timeout` ran out (the last probe's error).
    TimedOut(String),
    /// The supervisor reported the process dead (FATAL, EXITED) while it started.
    Died(String),
}

struct UpCtl {
    upstream: Arc<Upstream>,
    /// The servers this entry controls: its upstream's, in their order; in a retiring entry,
    /// the servers a reload dropped from it.
    servers: Vec<Arc<Server>>,
    /// Per server: who runs it.
    drivers: Vec<Arc<dyn Supervisor>>,
    /// Per server: the loop's own memory of it.
    ctls: Vec<ServerCtl>,
    policy: ScalePolicy,
    meter: RateMeter,
    /// Requests/s at the last tick.
    rps: f64,
    /// The servers were dropped by a reload: they are drained and stopped, not scaled, and the
    /// entry goes once all are down.
    retiring: bool,
}

struct ServerCtl {
    /// Unique for the life of the loop: what the policy and the task reports name the server
    /// by, since a reload moves servers around.
    id: usize,
    /// Stops relaying the server's passive failures once the loop forgets it.
    _failures: DropGuard,
    generation: u64,
    start_at: Option<Instant>,
    /// Consecutive failed starts or crashes, for the cool-down before it may start again.
    failures: u32,
    /// A failed server's process is being stopped.
    stopping_failed: bool,
    /// Cancelled once the last stop issued for this server has finished. A start waits for it:
    /// issued while the stop of a failed process is still under way, the start would otherwise
    /// race it, and a stop that lands second kills the new process (or a start that lands
    /// first finds the old run still up and does nothing), leaving the server `starting` with
    /// nothing to become ready until `start_timeout`.
    stop_done: Option<CancellationToken>,
    /// Set when a start is issued, until the supervisor reports the new process (STARTING,
    /// RUNNING or BACKOFF). Until then a report of an exit or a stop is about the previous
    /// process: its last events can still be on their way (the driver's broadcast, then the
    /// relay into this loop) when the next start is issued or even when the new process passes
    /// its readiness probe, and acting on them failed a perfectly good new process.
    previous_run: bool,
    /// Set by the start task once the start has gone to the supervisor (after waiting for the
    /// previous stop). Before that, no report can be about the new process: a BACKOFF or
    /// RUNNING then is the previous run's, and must not end `previous_run` (it did: a failed
    /// start's own BACKOFF, relayed after the revival was issued, passed for the new attempt's,
    /// and the failure stop's STOPPED that followed then "stopped the server outside rouse",
    /// which started it a third time and kept the requests waiting for that one).
    start_sent: Arc<AtomicBool>,
    /// A connect check of this ready server is under way (see `Reconciler::check`).
    checking: bool,
    /// Drained by hand or removed by a reload: stopped at this instant even if something is
    /// still in flight (such a stop must end, as a shutdown does: `shutdown_timeout`).
    drain_by: Option<Instant>,
    /// The current `starting` is an adoption of a process found running, not a start of ours:
    /// its probe time is not a start time.
    adopted: bool,
    /// The start being failed never made a process (the supervisor does not know the
    /// program): there is nothing for the failure's stop to stop, and asking would only fail
    /// the same way again.
    nothing_to_stop: bool,
    /// It is `failed` because its supervisor could not be reached when it was to start. The
    /// supervisor's next report (it answers again) ends the cool-down at once: the failure was
    /// the supervisor's absence, not the server's, and requests must not keep getting that
    /// error once it is back.
    failed_unreachable: bool,
}

fn settings(c: &UpstreamConfig, revive_backoff: rouse_core::backoff::Backoff) -> ScaleSettings {
    ScaleSettings {
        min_servers: c.min_servers,
        max_servers: c.max_servers,
        target_in_flight: c.target_in_flight,
        target_rps: c.target_rps,
        idle_timeout: c.idle_timeout,
        scale_down_after: c.idle_timeout.min(Duration::from_secs(30)),
        revive_backoff,
    }
}

struct Reconciler {
    table: Arc<Table>,
    /// Live upstreams in table order, then retiring entries.
    ups: Vec<UpCtl>,
    /// (driver name, program) → (position in `ups`, position in its `servers`).
    programs: HashMap<(String, String), (usize, usize)>,
    /// `ServerCtl::id` → (position in `ups`, position in its `servers`).
    ids: HashMap<usize, (usize, usize)>,
    next_id: usize,
    /// One relay of process events per driver in use, stopped once no server uses it.
    forwarders: Vec<(Arc<dyn Supervisor>, DropGuard)>,
    tx: mpsc::UnboundedSender<Msg>,
    stop: CancellationToken,
}

impl Reconciler {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let mut sample = false;
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                Some(msg) = rx.recv() => self.on_msg(msg),
                _ = self.table.demand.notified() => {}
                _ = tick.tick() => sample = true,
            }
            let now = Instant::now();
            let busy = self.busy();
            for u in 0..self.ups.len() {
                if self.ups[u].retiring {
                    self.retire(u, now);
                } else {
                    self.reconcile(u, now, sample, &busy);
                }
            }
            self.forget_retired();
        }
    }

    fn reconcile(&mut self, u: usize, now: Instant, sample: bool, busy: &Busy) {
        let up = Arc::clone(&self.ups[u].upstream);
        for i in 0..self.ups[u].servers.len() {
            let s = Arc::clone(&self.ups[u].servers[i]);
            // The data plane could not connect to a server that should be up: the balancer
            // already leaves it out; the loop checks before failing (and stopping) it.
            if s.state() == ServerState::Ready
                && s.passively_failed(now)
                && !self.ups[u].ctls[i].checking
            {
                self.check(u, i);
            }
            self.stop_if_overdue(u, i, StopReason::Manual, now);
            // A failed server may start again once it has cooled down.
            let ctl = &self.ups[u].ctls[i];
            if s.state() == ServerState::Failed && !ctl.stopping_failed {
                let cool = up.backoff.delay(ctl.failures.saturating_sub(1));
                if now >= s.since() + cool {
                    self.cooled_down(u, i, now);
                }
            }
        }
        let ctl = &mut self.ups[u];
        if sample {
            ctl.rps = ctl
                .meter
                .sample(now, ctl.servers.iter().map(|s| s.requests()).sum());
        }
        let rps = ctl.rps;
        // A server that replaces one still draining (same address or program) is left out
        // until that one is down: it could not start beside it.
        let views: Vec<ServerView> = ctl
            .servers
            .iter()
            .zip(&ctl.ctls)
            .zip(&ctl.drivers)
            .filter(|((s, _), d)| !busy.blocks(s, d.name()))
            .map(|((s, c), _)| ServerView {
                index: c.id,
                state: s.state(),
                in_flight: s.in_flight(),
                since: s.since(),
                last_active: s.last_active(),
            })
            .collect();
        let view = UpstreamView {
            servers: &views,
            held: up.held(),
            rps,
            now,
        };
        let actions = ctl.policy.decide(&view);
        for a in actions {
            if let Some(i) = self.ups[u].position(a.index()) {
                self.apply(u, i, a, now);
            }
        }
    }

    /// `action` is about server `i` of entry `u`.
    fn apply(&mut self, u: usize, i: usize, action: Action, now: Instant) {
        match action {
            Action::Start(_) => self.start(u, i, now),
            Action::Drain(_, reason) => {
                if self.set(u, i, Event::Drain, now) {
                    let s = &self.ups[u].servers[i];
                    tracing::info!(
                        upstream = self.ups[u].upstream.name(),
                        server = %s.address(),
                        reason = reason.as_str(),
                        "draining server"
                    );
                    self.note(u, i, "drain", reason.as_str().to_owned());
                }
            }
            Action::Undrain(_) => {
                if self.set(u, i, Event::Undrain, now) {
                    self.ups[u].upstream.notify_changed();
                }
            }
            Action::Stop(_, reason) => self.stop(u, i, reason, now),
        }
    }

    /// Where the server a task report names is now, if the report is about its current
    /// attempt (`generation`) and, when given, it is still in `state`.
    fn locate(
        &self,
        id: usize,
        generation: u64,
        state: Option<ServerState>,
    ) -> Option<(usize, usize)> {
        let &(u, i) = self.ids.get(&id)?;
        let ctl = &self.ups[u];
        (ctl.ctls[i].generation == generation
            && state.is_none_or(|st| ctl.servers[i].state() == st))
        .then_some((u, i))
    }

    /// Moves a server through the state machine; a refused transition is logged and ignored.
    fn set(&self, u: usize, i: usize, event: Event, now: Instant) -> bool {
        let s: &Server = &self.ups[u].servers[i];
        match transition::next(s.state(), event) {
            Ok(next) => {
                s.set_state(next, now);
                true
            }
            Err(refused) => {
                tracing::debug!(server = %s.address(), "{refused}");
                false
            }
        }
    }
}
