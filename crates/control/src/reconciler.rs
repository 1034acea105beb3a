//! The reconciler loop: observe, decide, act.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rouse_config::{Readiness, SupervisorRef};
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
use tokio_util::sync::CancellationToken;

mod manual;

pub use manual::{ControlHandle, ManualError, ManualOp};

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
        let mut ups = Vec::new();
        let mut programs = HashMap::new();
        for upstream in &table.upstreams {
            // Each server's own supervisor: one upstream may span several supervisords.
            let Some(server_drivers) = upstream
                .servers
                .iter()
                .map(|s| drivers.for_server(&s.config.supervisor))
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            for (s, driver) in upstream.servers.iter().zip(&server_drivers) {
                programs.insert(
                    (driver.name().to_owned(), s.config.program.clone()),
                    (ups.len(), s.index()),
                );
                tokio::spawn(forward_failures(Arc::clone(s), tx.clone(), stop.clone()));
            }
            ups.push(UpCtl::new(Arc::clone(upstream), server_drivers));
        }
        let mut drivers_seen: Vec<Arc<dyn Supervisor>> = Vec::new();
        for d in ups.iter().flat_map(|up| &up.drivers) {
            if !drivers_seen.iter().any(|seen| seen.name() == d.name()) {
                drivers_seen.push(Arc::clone(d));
            }
        }
        for d in drivers_seen {
            tokio::spawn(forward_process_events(d, tx.clone(), stop.clone()));
        }
        let handle = ControlHandle {
            tx: tx.clone(),
            statics: table
                .upstreams
                .iter()
                .filter(|u| u.is_static())
                .map(|u| u.name().to_owned())
                .collect(),
            known: table
                .upstreams
                .iter()
                .map(|u| u.name().to_owned())
                .collect(),
        };
        let r = Reconciler {
            table,
            ups,
            programs,
            tx,
        };
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
    Manual {
        upstream: String,
        index: Option<usize>,
        op: ManualOp,
        reply: tokio::sync::oneshot::Sender<Result<String, ManualError>>,
    },
    Started {
        up: usize,
        server: usize,
        generation: u64,
        result: Result<(), StartFailure>,
    },
    Probed {
        up: usize,
        server: usize,
        generation: u64,
        result: Result<(), NotReady>,
    },
    StopDone {
        up: usize,
        server: usize,
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
    /// Per server: who runs it.
    drivers: Vec<Arc<dyn Supervisor>>,
    policy: ScalePolicy,
    meter: RateMeter,
    /// Requests/s at the last tick.
    rps: f64,
    servers: Vec<ServerCtl>,
}

#[derive(Default)]
struct ServerCtl {
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

impl UpCtl {
    fn new(upstream: Arc<Upstream>, drivers: Vec<Arc<dyn Supervisor>>) -> UpCtl {
        let c = &upstream.config;
        let settings = ScaleSettings {
            min_servers: c.min_servers,
            max_servers: c.max_servers,
            target_in_flight: c.target_in_flight,
            target_rps: c.target_rps,
            idle_timeout: c.idle_timeout,
            scale_down_after: c.idle_timeout.min(Duration::from_secs(30)),
            revive_backoff: upstream.backoff,
        };
        let servers = upstream
            .servers
            .iter()
            .map(|_| ServerCtl::default())
            .collect();
        UpCtl {
            policy: ScalePolicy::new(settings),
            meter: RateMeter::new(RATE_WINDOW),
            rps: 0.0,
            upstream,
            drivers,
            servers,
        }
    }
}

struct Reconciler {
    table: Arc<Table>,
    ups: Vec<UpCtl>,
    /// (driver name, program) → (position in `ups`, server index).
    programs: HashMap<(String, String), (usize, usize)>,
    tx: mpsc::UnboundedSender<Msg>,
}

impl Reconciler {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, stop: CancellationToken) {
        if self.ups.is_empty() {
            return;
        }
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
            for u in 0..self.ups.len() {
                self.reconcile(u, now, sample);
            }
        }
    }

    fn reconcile(&mut self, u: usize, now: Instant, sample: bool) {
        let up = Arc::clone(&self.ups[u].upstream);
        for s in &up.servers {
            // The data plane could not connect to a server that should be up.
            if s.state() == ServerState::Ready && s.passively_failed(now) {
                self.fail(u, s.index(), "refused connections".into(), now);
            }
            // A failed server may start again once it has cooled down.
            let ctl = &self.ups[u].servers[s.index()];
            if s.state() == ServerState::Failed && !ctl.stopping_failed {
                let cool = up.backoff.delay(ctl.failures.saturating_sub(1));
                if now >= s.since() + cool {
                    self.cooled_down(u, s.index(), now);
                }
            }
        }
        let ctl = &mut self.ups[u];
        if sample {
            ctl.rps = ctl
                .meter
                .sample(now, up.servers.iter().map(|s| s.requests()).sum());
        }
        let rps = ctl.rps;
        let views: Vec<ServerView> = up
            .servers
            .iter()
            .map(|s| ServerView {
                index: s.index(),
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
            self.apply(u, a, now);
        }
    }

    fn apply(&mut self, u: usize, action: Action, now: Instant) {
        match action {
            Action::Start(i) => self.start(u, i, now),
            Action::Drain(i, reason) => {
                if self.set(u, i, Event::Drain, now) {
                    let s = &self.ups[u].upstream.servers[i];
                    tracing::info!(
                        upstream = self.ups[u].upstream.name(),
                        server = %s.address(),
                        reason = reason.as_str(),
                        "draining server"
                    );
                    self.note(u, i, "drain", reason.as_str().to_owned());
                }
            }
            Action::Undrain(i) => {
                if self.set(u, i, Event::Undrain, now) {
                    self.ups[u].upstream.notify_changed();
                }
            }
            Action::Stop(i, reason) => self.stop(u, i, reason, now),
        }
    }

    fn start(&mut self, u: usize, i: usize, now: Instant) {
        if !self.set(u, i, Event::StartIssued, now) {
            return;
        }
        let ctl = &mut self.ups[u];
        let up = Arc::clone(&ctl.upstream);
        let server = Arc::clone(&up.servers[i]);
        let sc = &mut ctl.servers[i];
        sc.generation += 1;
        sc.start_at = Some(now);
        sc.previous_run = true;
        sc.adopted = false;
        sc.failed_unreachable = false;
        let sent = Arc::new(AtomicBool::new(false));
        sc.start_sent = Arc::clone(&sent);
        let generation = sc.generation;
        let after_stop = sc.stop_done.clone();
        // Held requests now wait for this attempt rather than failing on the previous one.
        up.set_start_error(None);
        tracing::info!(
            upstream = up.name(),
            server = %server.address(),
            program = server.config.program,
            held = up.held(),
            "starting server"
        );
        self.note(u, i, "start", format!("{} held", up.held()));
        let ctl = &mut self.ups[u];
        let driver = Arc::clone(&ctl.drivers[i]);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if let Some(stopped) = after_stop {
                // Bounded: a stop ends within stop_timeout plus the SIGKILL grace.
                stopped.cancelled().await;
            }
            sent.store(true, Ordering::Release);
            let result = driver
                .start(&server.config.program)
                .await
                .map_err(|e| StartFailure {
                    bad_name: matches!(e, SupervisorError::BadName(_)),
                    unreachable: matches!(e, SupervisorError::Unreachable(_)),
                    why: e.to_string(),
                });
            let _ = tx.send(Msg::Started {
                up: u,
                server: i,
                generation,
                result,
            });
        });
    }

    fn stop(&mut self, u: usize, i: usize, reason: StopReason, now: Instant) {
        if !self.set(u, i, Event::StopIssued, now) {
            return;
        }
        let ctl = &self.ups[u];
        let server = Arc::clone(&ctl.upstream.servers[i]);
        tracing::info!(
            upstream = ctl.upstream.name(),
            server = %server.address(),
            program = server.config.program,
            reason = reason.as_str(),
            "stopping server"
        );
        self.count_stop(u, i, reason);
        self.note(u, i, "stop", reason.as_str().to_owned());
        self.spawn_stop(u, i);
    }

    fn spawn_stop(&mut self, u: usize, i: usize) {
        let ctl = &mut self.ups[u];
        let server = Arc::clone(&ctl.upstream.servers[i]);
        let generation = ctl.servers[i].generation;
        let driver = Arc::clone(&ctl.drivers[i]);
        let tx = self.tx.clone();
        let done = CancellationToken::new();
        ctl.servers[i].stop_done = Some(done.clone());
        tokio::spawn(async move {
            // Whatever way the task ends, a start waiting for this stop goes on.
            let _done = done.drop_guard();
            let result = driver
                .stop(&server.config.program)
                .await
                .map_err(|e| e.to_string());
            let _ = tx.send(Msg::StopDone {
                up: u,
                server: i,
                generation,
                result,
            });
        });
    }

    fn on_msg(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::Manual {
                upstream,
                index,
                op,
                reply,
            } => {
                let _ = reply.send(self.manual(&upstream, index, op, now));
            }
            Msg::Started {
                up: u,
                server: i,
                generation,
                result,
            } => {
                if !self.current(u, i, generation, ServerState::Starting) {
                    return;
                }
                match result {
                    Err(e) => {
                        self.ups[u].servers[i].nothing_to_stop = e.bad_name;
                        let failed = self.fail_start(u, i, e.why, now, true);
                        let sc = &mut self.ups[u].servers[i];
                        sc.nothing_to_stop = false;
                        sc.failed_unreachable = failed && e.unreachable;
                    }
                    Ok(()) => self.spawn_probe(u, i, generation),
                }
            }
            Msg::Probed {
                up: u,
                server: i,
                generation,
                result,
            } => {
                if !self.current(u, i, generation, ServerState::Starting) {
                    return;
                }
                match result {
                    Ok(()) => self.ready(u, i, now),
                    // The requests held for it have waited about as long, and answer
                    // `start-timeout` themselves; those that came later keep waiting for the
                    // next attempt rather than fail on this one.
                    Err(NotReady::TimedOut(e)) => {
                        let t = self.ups[u].upstream.config.start_timeout;
                        let why = format!("not ready after {t:?}: {e}");
                        self.fail_start(u, i, why, now, false);
                    }
                    Err(NotReady::Died(e)) => {
                        self.fail_start(u, i, e, now, true);
                    }
                }
            }
            Msg::StopDone {
                up: u,
                server: i,
                generation,
                result,
            } => {
                let ctl = &mut self.ups[u];
                if ctl.servers[i].generation != generation {
                    return;
                }
                ctl.servers[i].stopping_failed = false;
                if result.is_ok() {
                    // The supervisor answered: if it was unreachable at the start, it is back.
                    self.supervisor_answers(u, i, now);
                }
                let ctl = &mut self.ups[u];
                let s = Arc::clone(&ctl.upstream.servers[i]);
                if let Err(e) = &result {
                    tracing::error!(
                        upstream = ctl.upstream.name(),
                        server = %s.address(),
                        program = s.config.program,
                        "stop failed: {e}"
                    );
                }
                if s.state() == ServerState::Stopping {
                    self.set(u, i, Event::Stopped, now);
                    tracing::info!(
                        upstream = self.ups[u].upstream.name(),
                        server = %s.address(),
                        "server stopped"
                    );
                    self.note(u, i, "stopped", String::new());
                }
            }
            Msg::Process(driver, info) => self.on_process(driver, info, now),
            Msg::PassiveFailure => {}
        }
    }

    fn on_process(&mut self, driver: String, info: ProcessInfo, now: Instant) {
        let Some(&(u, i)) = self.programs.get(&(driver, info.program.clone())) else {
            return;
        };
        // Any report means the supervisor answers (again).
        self.supervisor_answers(u, i, now);
        let up = Arc::clone(&self.ups[u].upstream);
        let state = up.servers[i].state();
        let sc = &mut self.ups[u].servers[i];
        let sent = sc.start_sent.load(Ordering::Acquire);
        if sent && matches!(info.state, ProcessState::Starting | ProcessState::Running) {
            sc.previous_run = false;
        }
        // A BACKOFF shows the new process too (it failed to start and is being retried), but is
        // also an exit: it counts as one only once the new process has been seen otherwise.
        let stale = sc.previous_run;
        if sent && info.state == ProcessState::Backoff {
            sc.previous_run = false;
        }
        if stale {
            tracing::debug!(
                upstream = up.name(),
                program = info.program,
                state = %info.state,
                "ignoring a report about the previous process"
            );
            return;
        }
        let stopping_ours = sc.stopping_failed;
        match (state, info.state) {
            // Found running: at start-up (rouse restarted, supervisord kept its programs), or
            // started by hand. Adopted, not restarted: probed, then ready with the same pid.
            (ServerState::Stopped | ServerState::Failed, ProcessState::Running)
                if !stopping_ours =>
            {
                self.adopt(u, i, &info, now)
            }
            (ServerState::Starting, ProcessState::Running)
                if up.config.ready == Readiness::Supervisor =>
            {
                self.ready(u, i, now)
            }
            // Stopped behind rouse's back (supervisorctl stop): not a failure, just gone.
            (
                ServerState::Ready | ServerState::Draining | ServerState::Starting,
                ProcessState::Stopped,
            ) => self.vanished(u, i, &info, now),
            (ServerState::Starting, ProcessState::Fatal | ProcessState::Exited) => {
                self.fail_start(u, i, info.description, now, true);
            }
            (
                ServerState::Ready | ServerState::Draining,
                ProcessState::Exited | ProcessState::Fatal | ProcessState::Backoff,
            ) => self.fail(
                u,
                i,
                format!("process {}: {}", info.state, info.description),
                now,
            ),
            _ => {}
        }
    }

    /// Server `i`'s supervisor answered. If the server failed because that supervisor could
    /// not be reached, its cool-down ends now: nothing was wrong with the server, and requests
    /// must not keep getting "unreachable" once the supervisor is back (they would: a request
    /// answered at once with the start error is never held, so it never asks for a new start).
    fn supervisor_answers(&mut self, u: usize, i: usize, now: Instant) {
        let state = self.ups[u].upstream.servers[i].state();
        let sc = &mut self.ups[u].servers[i];
        if !sc.failed_unreachable || sc.stopping_failed {
            return;
        }
        sc.failed_unreachable = false;
        if state != ServerState::Failed {
            return;
        }
        sc.failures = 0;
        tracing::info!(
            upstream = self.ups[u].upstream.name(),
            server = %self.ups[u].upstream.servers[i].address(),
            "its supervisor answers again: the server may start at once"
        );
        self.cooled_down(u, i, now);
    }

    /// A failed server may be started again: `stopped`, and the requests that come next wait
    /// for a new start instead of getting the last one's error.
    fn cooled_down(&mut self, u: usize, i: usize, now: Instant) {
        if self.set(u, i, Event::StopIssued, now) {
            self.set(u, i, Event::Stopped, now);
        }
        let up = &self.ups[u].upstream;
        if up.start_error().is_some() {
            up.set_start_error(None);
        }
    }

    fn vanished(&mut self, u: usize, i: usize, info: &ProcessInfo, now: Instant) {
        if !self.set(u, i, Event::VanishedStopped, now) {
            return;
        }
        let up = &self.ups[u].upstream;
        tracing::warn!(
            upstream = up.name(),
            server = %up.servers[i].address(),
            program = info.program,
            "server stopped outside rouse"
        );
        self.note(u, i, "stopped", "outside rouse".to_owned());
        up.notify_changed();
    }

    fn adopt(&mut self, u: usize, i: usize, info: &ProcessInfo, now: Instant) {
        if !self.set(u, i, Event::StartIssued, now) {
            return;
        }
        let ctl = &mut self.ups[u];
        let sc = &mut ctl.servers[i];
        sc.generation += 1;
        sc.start_at = Some(now);
        sc.previous_run = false;
        // The process reported is the one adopted: nothing of ours is on its way.
        sc.start_sent = Arc::new(AtomicBool::new(true));
        sc.adopted = true;
        let generation = sc.generation;
        tracing::info!(
            upstream = ctl.upstream.name(),
            server = %ctl.upstream.servers[i].address(),
            program = info.program,
            pid = info.pid,
            "adopting a running program"
        );
        self.spawn_probe(u, i, generation);
    }

    fn spawn_probe(&self, u: usize, i: usize, generation: u64) {
        let ctl = &self.ups[u];
        let up = Arc::clone(&ctl.upstream);
        let server = Arc::clone(&up.servers[i]);
        let deadline =
            ctl.servers[i].start_at.unwrap_or_else(Instant::now) + up.config.start_timeout;
        let driver = Arc::clone(&ctl.drivers[i]);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = match &up.config.ready {
                Readiness::Supervisor => until_running(&*driver, &server, deadline).await,
                r => probe::until_ready(server.address(), r, deadline)
                    .await
                    .map_err(NotReady::TimedOut),
            };
            let _ = tx.send(Msg::Probed {
                up: u,
                server: i,
                generation,
                result,
            });
        });
    }

    fn ready(&mut self, u: usize, i: usize, now: Instant) {
        let server = &self.ups[u].upstream.servers[i];
        if server.state() != ServerState::Starting {
            return;
        }
        // Before it is routable: refusals seen from a previous process must not keep the new
        // one out of rotation, nor have `reconcile` fail it again at once.
        server.forget_failures();
        if !self.set(u, i, Event::Ready, now) {
            return;
        }
        let ctl = &mut self.ups[u];
        let up = Arc::clone(&ctl.upstream);
        let sc = &mut ctl.servers[i];
        sc.failures = 0;
        let took = sc.start_at.map(|t| now.saturating_duration_since(t));
        let adopted = sc.adopted;
        if let Some(d) = took.filter(|_| !adopted) {
            up.record_start_duration(d);
            self.table
                .metrics
                .start_duration
                .get_or_create(&Metrics::upstream(up.name()))
                .observe(d.as_secs_f64());
        }
        let ms = took.map(|d| d.as_secs_f64() * 1000.0).unwrap_or_default();
        self.count_start(u, i, if adopted { "adopted" } else { "ready" });
        self.note(
            u,
            i,
            if adopted { "adopt" } else { "ready" },
            format!("{ms:.1} ms"),
        );
        tracing::info!(
            upstream = up.name(),
            server = %up.servers[i].address(),
            ms = took.map(|d| d.as_secs_f64() * 1000.0).unwrap_or_default(),
            "server ready"
        );
        // Also wakes every held request.
        up.set_start_error(None);
    }

    /// A start did not lead to a ready server. With `tell_held`, the requests held for the
    /// upstream get `why` at once when no other server is ready or starting.
    /// Whether it did (the server was `starting`).
    fn fail_start(
        &mut self,
        u: usize,
        i: usize,
        why: String,
        now: Instant,
        tell_held: bool,
    ) -> bool {
        if !self.set(u, i, Event::StartFailed, now) {
            return false;
        }
        let up = Arc::clone(&self.ups[u].upstream);
        tracing::error!(
            upstream = up.name(),
            server = %up.servers[i].address(),
            program = up.servers[i].config.program,
            "cannot start server: {why}"
        );
        let result = if tell_held { "failed" } else { "timeout" };
        self.count_start(u, i, result);
        self.note(u, i, "start-failed", why.clone());
        self.after_failure(u, i);
        let none_coming = !up
            .servers
            .iter()
            .any(|s| matches!(s.state(), ServerState::Ready | ServerState::Starting));
        if none_coming && tell_held {
            up.set_start_error(Some(why));
        } else {
            up.notify_changed();
        }
        true
    }

    /// A server that was up stopped working.
    fn fail(&mut self, u: usize, i: usize, why: String, now: Instant) {
        if !self.set(u, i, Event::Failed, now) {
            return;
        }
        let up = Arc::clone(&self.ups[u].upstream);
        tracing::warn!(
            upstream = up.name(),
            server = %up.servers[i].address(),
            program = up.servers[i].config.program,
            "server failed: {why}"
        );
        self.note(u, i, "failed", why.clone());
        self.after_failure(u, i);
        up.notify_changed();
    }

    /// ngx_supervisord 1.4: a failed server is stopped through its supervisor (so a half-alive
    /// process does not keep its port); it stays `failed` until it has cooled down.
    fn after_failure(&mut self, u: usize, i: usize) {
        let sc = &mut self.ups[u].servers[i];
        sc.failures = sc.failures.saturating_add(1);
        if std::mem::take(&mut sc.nothing_to_stop) {
            return;
        }
        sc.stopping_failed = true;
        self.count_stop(u, i, StopReason::Failure);
        self.spawn_stop(u, i);
    }

    /// Records a lifecycle event for the dashboard and `/status`.
    fn note(&self, u: usize, i: usize, what: &'static str, detail: String) {
        let up = &self.ups[u].upstream;
        self.table.journal.record(Entry {
            at: SystemTime::now(),
            upstream: up.name().to_owned(),
            server: i,
            address: up.servers[i].address().to_string(),
            what,
            detail,
        });
    }

    fn count_start(&self, u: usize, i: usize, result: &str) {
        let up = &self.ups[u].upstream;
        self.table
            .metrics
            .starts
            .get_or_create(&StartLabels {
                upstream: up.name().to_owned(),
                server: up.servers[i].address().to_string(),
                result: result.to_owned(),
            })
            .inc();
    }

    fn count_stop(&self, u: usize, i: usize, reason: StopReason) {
        let up = &self.ups[u].upstream;
        self.table
            .metrics
            .stops
            .get_or_create(&StopLabels {
                upstream: up.name().to_owned(),
                server: up.servers[i].address().to_string(),
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }

    fn current(&self, u: usize, i: usize, generation: u64, state: ServerState) -> bool {
        let ctl = &self.ups[u];
        ctl.servers[i].generation == generation && ctl.upstream.servers[i].state() == state
    }

    /// Moves a server through the state machine; a refused transition is logged and ignored.
    fn set(&self, u: usize, i: usize, event: Event, now: Instant) -> bool {
        let s: &Server = &self.ups[u].upstream.servers[i];
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

/// For `ready = "supervisor"`: polls the supervisor until the program is RUNNING.
async fn until_running(
    driver: &dyn Supervisor,
    server: &Server,
    deadline: Instant,
) -> Result<(), NotReady> {
    let program = &server.config.program;
    loop {
        match driver.observe().await {
            Ok(infos) => {
                if let Some(p) = infos.iter().find(|p| &p.program == program) {
                    match p.state {
                        ProcessState::Running => return Ok(()),
                        ProcessState::Fatal | ProcessState::Exited => {
                            return Err(NotReady::Died(format!("{}: {}", p.state, p.description)));
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => tracing::debug!("observe failed: {e}"),
        }
        if Instant::now() + OBSERVE_INTERVAL >= deadline {
            return Err(NotReady::TimedOut(format!("{program} not RUNNING in time")));
        }
        tokio::time::sleep(OBSERVE_INTERVAL).await;
    }
}
