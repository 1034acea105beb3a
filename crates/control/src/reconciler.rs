//! The reconciler loop: observe, decide, act.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rouse_cluster::ClusterHandle;
use rouse_config::{Readiness, SupervisorRef, UpstreamConfig};
use rouse_core::balance::hard_cap;
use rouse_core::lifecycle::{self, Input, Lifecycle};
use rouse_core::policy::{Action, ScalePolicy, ScaleSettings, ServerView, UpstreamView};
use rouse_core::reason::StartReason;
use rouse_core::state::ServerState;

use rouse_state::{Changes, Server, ServerId, Table, Upstream};
use rouse_supervisor::{Embedded, ProcessInfo, Supervisor};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, DropGuard};

mod cluster;
mod effects;
mod manual;
mod record;
mod reload;
pub(crate) mod supervisors;

use manual::Names;
pub use manual::{ControlHandle, Manual, ManualError, ManualOp};
use reload::Busy;

use crate::probe::{self, Probe};
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
/// Messages handled before the loop decides; bounded so the data plane, which may share the
/// loop's thread, is not kept waiting behind a long queue.
const MAX_BATCH: usize = 4096;

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
        Control::spawn_with_probe(table, drivers, Arc::new(probe::Tcp))
    }

    /// [`Control::spawn`], as one replica of a cluster when `cluster` is given (see
    /// [`Control::spawn_with`]).
    pub fn spawn_clustered(
        table: Arc<Table>,
        drivers: Drivers,
        cluster: Option<ClusterHandle>,
    ) -> Control {
        Control::spawn_with(table, drivers, Arc::new(probe::Tcp), cluster)
    }

    /// [`Control::spawn`] with the readiness and connect checks done by `probe`.
    pub fn spawn_with_probe(table: Arc<Table>, drivers: Drivers, probe: Arc<dyn Probe>) -> Control {
        Control::spawn_with(table, drivers, probe, None)
    }

    /// [`Control::spawn_with_probe`] as one replica of a cluster when `cluster` is given: the
    /// policy over every replica's load, the leader alone removing capacity (see
    /// `rouse_cluster::permitted`).
    pub fn spawn_with(
        table: Arc<Table>,
        drivers: Drivers,
        probe: Arc<dyn Probe>,
        cluster: Option<ClusterHandle>,
    ) -> Control {
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = ControlHandle {
            tx: tx.clone(),
            names: Arc::new(RwLock::new(Names::of(&table))),
            drivers: Arc::new(RwLock::new(drivers.clone())),
        };
        let mut r = Reconciler {
            table: Arc::clone(&table),
            ups: Vec::new(),
            programs: HashMap::new(),
            ids: HashMap::new(),
            forwarders: Vec::new(),
            embedded: drivers
                .embedded
                .as_ref()
                .map(|e| Arc::clone(e) as Arc<dyn Supervisor>),
            probe,
            tx,
            stop: stop.clone(),
            cluster: cluster.map(cluster::Coordination::new),
        };
        r.set_table(table, &Changes::default(), &drivers);
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

    /// Switches to a reloaded table and its changes (see `Table::reloaded`): servers they keep
    /// go on as they are, new ones start stopped (or are adopted when already running), and
    /// those they retire are drained, stopped and forgotten. `drivers` must keep the embedded
    /// supervisor of `spawn`. Returns once the loop has the new table, before any server has
    /// changed.
    pub async fn reload(&self, table: Arc<Table>, changes: Arc<Changes>, drivers: Drivers) {
        self.handle.reload(table, changes, drivers).await
    }

    /// Stops deciding, then stops every embedded child (supervisord's programs are left as they
    /// are: supervisord owns them, and the next rouse adopts them).
    pub async fn shutdown(mut self) {
        // The loop counts the stops the embedded supervisor is about to make (reason
        // `shutdown`), then decides nothing more.
        let (reply, done) = tokio::sync::oneshot::channel();
        if self.handle.tx.send(Msg::Shutdown { reply }).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
        }
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

/// What reaches the loop: commands, and the answers of the tasks it spawned.
enum Msg {
    Reload {
        table: Arc<Table>,
        changes: Arc<Changes>,
        drivers: Drivers,
        reply: tokio::sync::oneshot::Sender<()>,
    },
    Manual {
        upstream: String,
        index: Option<usize>,
        op: ManualOp,
        reply: tokio::sync::oneshot::Sender<Result<Manual, ManualError>>,
    },
    Shutdown {
        reply: tokio::sync::oneshot::Sender<()>,
    },
    /// A task's answer for server `id`'s lifecycle (a start, probe, stop or check).
    Answer {
        id: ServerId,
        input: Input,
    },
    Process(String, ProcessInfo),
}

/// The loop's entry for one upstream (or, retiring, for the servers a reload removed from it).
struct UpCtl {
    upstream: Arc<Upstream>,
    /// Its upstream's servers, in their order; in a retiring entry, the servers a reload
    /// dropped from it.
    servers: Vec<Arc<Server>>,
    /// Per server: who runs it.
    drivers: Vec<Arc<dyn Supervisor>>,
    /// Per server: its lifecycle, all rouse knows of it.
    lives: Vec<Life>,
    policy: ScalePolicy,
    meter: RateMeter,
    /// Requests/s at the last tick.
    rps: f64,
    /// The servers were dropped by a reload: they are drained and stopped, not scaled, and the
    /// entry goes once all are down.
    retiring: bool,
    settings: lifecycle::Settings,
}

struct Life {
    lifecycle: Lifecycle,
}

fn settings(c: &UpstreamConfig, revive_backoff: rouse_core::backoff::Backoff) -> ScaleSettings {
    // A server takes no more than its max_conns: sizing by a larger target would leave full
    // servers and held requests with nothing starting.
    let smallest_cap = c.servers.iter().filter_map(|s| hard_cap(s.max_conns)).min();
    let target = smallest_cap.map_or(c.target_in_flight, |m| m.min(c.target_in_flight.max(1)));
    ScaleSettings {
        min_servers: c.min_servers,
        max_servers: c.max_servers,
        target_in_flight: target,
        target_rps: c.target_rps,
        idle_timeout: c.idle_timeout,
        scale_down_after: c.idle_timeout.min(Duration::from_secs(30)),
        revive_backoff,
    }
}

fn lifecycle_settings(up: &Upstream) -> lifecycle::Settings {
    lifecycle::Settings {
        start_timeout: up.config.start_timeout,
        backoff: up.backoff,
        ready_by_supervisor: up.config.ready == Readiness::Supervisor,
    }
}

struct Reconciler {
    table: Arc<Table>,
    /// Live upstreams in table order, then retiring entries.
    ups: Vec<UpCtl>,
    /// (driver name, program) → (position in `ups`, position in its `servers`).
    programs: HashMap<(String, String), (usize, usize)>,
    /// Server → (position in `ups`, position in its `servers`).
    ids: HashMap<ServerId, (usize, usize)>,
    /// One relay of process events per driver in use, stopped once no server uses it.
    forwarders: Vec<(Arc<dyn Supervisor>, DropGuard)>,
    /// The embedded supervisor, whose children stop with rouse.
    embedded: Option<Arc<dyn Supervisor>>,
    probe: Arc<dyn Probe>,
    tx: mpsc::UnboundedSender<Msg>,
    stop: CancellationToken,
    /// Set: this rouse is one replica of a cluster.
    cluster: Option<cluster::Coordination>,
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
                Some(msg) = rx.recv() => {
                    if self.on_msg(msg) {
                        return;
                    }
                    // Whatever else is queued first, then one pass: a supervisor's first
                    // report of 10,000 programs is 10,000 messages, and a pass over every
                    // server after each was quadratic (a minute at start).
                    for _ in 0..MAX_BATCH {
                        let Ok(msg) = rx.try_recv() else { break };
                        if self.on_msg(msg) {
                            return;
                        }
                    }
                }
                _ = self.table.demand.notified() => {}
                _ = tick.tick() => sample = true,
            }
            let now = Instant::now();
            self.cluster_begin(now);
            let busy = self.busy();
            for u in 0..self.ups.len() {
                self.tick(u, now);
                if !self.ups[u].retiring {
                    self.decide(u, now, sample, &busy);
                }
            }
            self.forget_retired();
            if sample {
                self.cluster_publish(now);
            }
        }
    }

    /// What happened; true when the loop must end (shutdown).
    fn on_msg(&mut self, msg: Msg) -> bool {
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
            Msg::Reload {
                table,
                changes,
                drivers,
                reply,
            } => {
                self.set_table(table, &changes, &drivers);
                let _ = reply.send(());
            }
            Msg::Shutdown { reply } => {
                self.shutdown(now);
                let _ = reply.send(());
                return true;
            }
            Msg::Answer { id, input } => {
                if let Some(&(u, i)) = self.ids.get(&id) {
                    self.feed(u, i, input, now);
                }
            }
            Msg::Process(driver, info) => {
                if let Some(&(u, i)) = self.programs.get(&(driver, info.program.clone())) {
                    // Any report means the supervisor answers (again).
                    self.feed(u, i, Input::SupervisorAnswers, now);
                    let input = Input::Reported {
                        process: effects::process(info.state),
                        pid: info.pid,
                        description: info.description,
                    };
                    self.feed(u, i, input, now);
                }
            }
        }
        false
    }

    /// Time passes for every server of entry `u`; a ready one the data plane could not
    /// connect to is checked (the balancer already leaves it out).
    fn tick(&mut self, u: usize, now: Instant) {
        for i in 0..self.ups[u].servers.len() {
            let s = &self.ups[u].servers[i];
            if s.state() == ServerState::Ready && s.passively_failed(now) {
                self.feed(u, i, Input::ConnectFailed, now);
            }
            // Most of 10,000 configured servers are stopped at any time, and time does nothing
            // to a stopped or ready lifecycle: stepping each one four times a second cost a
            // quarter of a core, on the thread the data plane may share.
            if self.ups[u].lives[i].lifecycle.waits_on_time() {
                let in_flight = self.ups[u].servers[i].in_flight();
                self.feed(u, i, Input::Tick { in_flight }, now);
            }
        }
    }

    /// Asks the policy of live entry `u` what to do, and does it.
    fn decide(&mut self, u: usize, now: Instant, sample: bool, busy: &Busy) {
        let ctl = &mut self.ups[u];
        if sample {
            ctl.rps = ctl
                .meter
                .sample(now, ctl.servers.iter().map(|s| s.requests()).sum());
        }
        let name = ctl.upstream.name();
        let (remote_held, remote_rps) =
            self.cluster.as_ref().map_or((0, 0.0), |c| c.upstream(name));
        let held = ctl.upstream.held().saturating_add(remote_held);
        let rps = ctl.rps + remote_rps;
        // Nothing runs, nothing waits and nothing must: every rule of the policy would pass
        // (most of 1,000 configured upstreams are so at any time; deciding for each one four
        // times a second took the thread the data plane may share). In a cluster, a server
        // stopped here is stopped for every replica (they share the supervisors).
        let quiet = rps == 0.0
            && held == 0
            && ctl.policy.settings().min_servers == 0
            && ctl
                .lives
                .iter()
                .all(|l| l.lifecycle.state() == ServerState::Stopped);
        if quiet {
            return;
        }
        // A server that replaces one still draining (same address or program) is left out
        // until that one is down: it could not start beside it.
        let views: Vec<ServerView> = (0..ctl.servers.len())
            .filter(|&i| !busy.blocks(&ctl.servers[i], &ctl.lives[i], ctl.drivers[i].name()))
            .map(|i| {
                let own = ServerView {
                    index: ctl.servers[i].id().0,
                    state: ctl.lives[i].lifecycle.state(),
                    in_flight: ctl.servers[i].in_flight(),
                    since: ctl.lives[i].lifecycle.since(),
                    last_active: ctl.servers[i].last_active(),
                };
                match &self.cluster {
                    Some(c) => c.view(name, i, own),
                    None => own,
                }
            })
            .collect();
        let view = UpstreamView {
            servers: &views,
            held,
            rps,
            now,
        };
        let actions = ctl.policy.decide(&view);
        let reasons: Vec<Option<StartReason>> = actions
            .iter()
            .map(|a| match a {
                Action::Start(i) => Some(StartReason::explain(&view, ctl.policy.settings(), *i)),
                _ => None,
            })
            .collect();
        // Owned only in a cluster, where it names the server to the others.
        let name = self.cluster.is_some().then(|| name.to_owned());
        for (a, reason) in actions.into_iter().zip(reasons) {
            let Some(i) = self.ups[u].position(ServerId(a.index())) else {
                continue;
            };
            if let (Some(c), Some(name)) = (self.cluster.as_mut(), name.as_deref()) {
                if !c.permitted(name, i, a) {
                    // The policy forgets a drain's reason once it has asked for the stop; the
                    // stop not made, the next one must carry the same reason (not `manual`,
                    // which would pass).
                    if let Action::Stop(index, why) = a {
                        if c.reclaimed(name, i) {
                            tracing::info!(
                                upstream = name,
                                server = %self.ups[u].servers[i].address(),
                                "another replica took this server back for its requests: undrained"
                            );
                            self.feed(u, i, Input::Undrain, now);
                        } else {
                            self.ups[u].policy.note_drained(index, why);
                        }
                    }
                    continue;
                }
                c.carried_out(name, i, a, now);
            }
            let input = match a {
                Action::Start(_) => Input::Start(reason.unwrap_or(StartReason::Manual)),
                Action::Drain(_, why) => Input::Drain { why, by: None },
                Action::Undrain(_) => Input::Undrain,
                Action::Stop(_, why) => Input::Stop(why),
            };
            self.feed(u, i, input, now);
        }
    }

    /// One step of server `i` of entry `u`'s lifecycle, and its effects carried out.
    fn feed(&mut self, u: usize, i: usize, input: Input, now: Instant) {
        let ctl = &mut self.ups[u];
        let life = &mut ctl.lives[i].lifecycle;
        let (next, effects) = life.step(&ctl.settings, input, now);
        *life = next;
        let server = &ctl.servers[i];
        if server.state() != life.state() || server.since() != life.since() {
            server.set_state(life.state(), life.since());
        }
        for effect in effects {
            self.carry_out(u, i, effect);
        }
    }

    /// rouse stops: the embedded supervisor stops its children, which are counted as stopped
    /// for `shutdown`; supervisord's programs stay as they are.
    fn shutdown(&mut self, now: Instant) {
        let Some(embedded) = self.embedded.clone() else {
            return;
        };
        for u in 0..self.ups.len() {
            for i in 0..self.ups[u].servers.len() {
                if reload::same_driver(&self.ups[u].drivers[i], &embedded) {
                    self.feed(u, i, Input::Shutdown, now);
                }
            }
        }
    }
}
