//! When to start, drain and stop an upstream's servers: ngx_supervisord's scaling rule, done right.
//!
//! # Where this comes from
//! ngx_supervisord's fair patch looked at one load report every 60 s: above `fair_load_threshold`
//! req/s per up backend it started one more; with no request at all, or under 40% of the
//! threshold, it stopped one. What that got wrong, and what this module does instead:
//! - A burst waited up to a minute for a second backend, and got one backend per minute. Here
//!   scale-up is decided on every tick, sized to the load at once, and immediate.
//! - It measured requests/s only, which slow requests (long polls, uploads) do not raise. Here the
//!   primary signal is requests in flight; requests/s is an optional second one.
//! - One quiet minute stopped a backend, and the next busy one started it again. Here load must
//!   stay low for `scale_down_after`, one server goes per period, and the 40% threshold leaves the
//!   remaining servers under target so the stop does not itself cause a start.
//! - Every nginx worker ran the policy on its own counters. Here one reconciler runs one
//!   [`ScalePolicy`] per upstream.
//!
//! # Rules
//! Numbered as in the design; see each function for the reasons.
//! 1. **Drained**: a draining server with nothing in flight is stopped, for the reason it was
//!    drained for (`stop_drained`).
//! 2. **Demand from zero**: held requests and no server ready or starting start as many servers
//!    as the held load needs at target (at least one), or, when only failed ones are left, revive
//!    the first failed one with backoff (`demand_from_zero`).
//! 3. **Floor**: keep `min_servers` ready or starting (`floor`).
//! 4. **Scale up** to the number of servers the load needs (`scale_up`).
//! 5. **Scale down** one server per `scale_down_after` of low load (`scale_down`).
//! 6. **Idle**: drain servers idle for `idle_timeout`, down to `min_servers` (`idle`).
//! 7. **Bounds**: ready + starting never grows beyond `max_servers`; only `stopped` servers are
//!    started, `failed` ones only by rule 2; adding capacity takes back (undrains) a server the
//!    policy drained before starting a new one.
//! 8. **No duplicates**: replaying a view yields no action twice (see "What the shell must do").
//!
//! Rules 2–4 run before rule 1, so that a drained server that demand wants back is undrained
//! rather than stopped and replaced by a cold one; otherwise the order is the numbering. Each
//! server gets at most one action per call, and rules 5 and 6 do nothing in a call that added
//! capacity, so one decision never scales both ways.
//!
//! # What the shell must do
//! - Pass `servers` in index order.
//! - Apply the actions right away, moving each server through [`crate::transition::next`] with
//!   [`Action::event`] before building the next view. The policy relies on this: a later view
//!   that still shows a server in the state an action was issued against means the action was
//!   lost, and it is issued again. Only a replay (a view at the same `now`, servers unchanged) is
//!   recognised as such: the policy then treats its earlier actions as applied and issues nothing
//!   twice.
//! - Tell the policy about drains it does itself ([`ScalePolicy::note_drained`]), so the stop
//!   that follows carries the right reason (otherwise `manual`).
//! - Call [`ScalePolicy::decide`] on a regular tick (about a second: idle and hysteresis timers
//!   are only as precise as the tick) and whenever requests start being held.
//! - Not call it while shutting down: the floor would start servers again.

use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::state::ServerState;
use crate::transition::{self, Event};

#[cfg(test)]
mod tests;

/// Load under this share of the target, in percent, counts as low (ngx_supervisord's value). It
/// must stay under 50%: then removing one of n ≥ 2 servers leaves the others under target, so a
/// scale-down never triggers the next scale-up.
const LOW_LOAD_PERCENT: u64 = 40;

/// How an upstream scales; the config's upstream keys, plus the policy's own timing.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSettings {
    pub min_servers: usize,
    pub max_servers: usize,
    /// In-flight requests one ready server should carry; 0 counts as 1.
    pub target_in_flight: u32,
    /// Requests/s one ready server should carry; a non-positive value counts as unset.
    pub target_rps: Option<f64>,
    pub idle_timeout: Duration,
    /// Load must stay under 40% of target this long before one server is drained (hysteresis).
    pub scale_down_after: Duration,
    /// Revival backoff when every server has failed (ngx_supervisord 1.4: bring back the first).
    pub revive_backoff: Backoff,
}

/// One server as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerView {
    pub index: usize,
    pub state: ServerState,
    /// Requests in flight, open upgraded connections included.
    pub in_flight: u32,
    /// When it entered `state`.
    pub since: Instant,
    /// Last time a request started or ended on it.
    pub last_active: Instant,
}

/// An upstream as the policy sees it, at `now`.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamView<'a> {
    /// In index order.
    pub servers: &'a [ServerView],
    /// Requests waiting for a ready server, or for room on one (`max_conns`, or the target while
    /// another server starts).
    pub held: usize,
    /// Requests/s over the last few seconds, measured by the shell.
    pub rps: f64,
    pub now: Instant,
}

/// Why a server is stopped; the `reason` label of `rouse_stops_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopReason {
    Idle,
    Load,
    Failure,
    Manual,
    Shutdown,
    /// A reload removed the server from the config.
    Reload,
}

impl StopReason {
    pub const ALL: [StopReason; 6] = [
        StopReason::Idle,
        StopReason::Load,
        StopReason::Failure,
        StopReason::Manual,
        StopReason::Shutdown,
        StopReason::Reload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Idle => "idle",
            StopReason::Load => "load",
            StopReason::Failure => "failure",
            StopReason::Manual => "manual",
            StopReason::Shutdown => "shutdown",
            StopReason::Reload => "reload",
        }
    }

    /// Only the policy's own drains may be taken back when load returns: someone who stopped a
    /// server by hand (say, to restart it on new code) or a shutdown must get the stop.
    fn reclaimable(self) -> bool {
        matches!(self, StopReason::Idle | StopReason::Load)
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the shell should do to a server (by its index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start(usize),
    Drain(usize, StopReason),
    Undrain(usize),
    Stop(usize, StopReason),
}

impl Action {
    pub fn index(self) -> usize {
        match self {
            Action::Start(i) | Action::Drain(i, _) | Action::Undrain(i) | Action::Stop(i, _) => i,
        }
    }

    /// The state-machine event that applying this action is.
    pub fn event(self) -> Event {
        match self {
            Action::Start(_) => Event::StartIssued,
            Action::Drain(..) => Event::Drain,
            Action::Undrain(_) => Event::Undrain,
            Action::Stop(..) => Event::StopIssued,
        }
    }
}

/// An action from an earlier call, kept to recognise a replayed view.
#[derive(Debug, Clone, Copy)]
struct Issued {
    index: usize,
    before: ServerState,
    since: Instant,
    at: Instant,
    after: ServerState,
}

/// The scaling policy of one upstream: settings plus the little memory hysteresis and revival need.
#[derive(Debug, Clone)]
pub struct ScalePolicy {
    settings: ScaleSettings,
    /// Since when load has been low without a break (rule 5).
    low_load_since: Option<Instant>,
    /// When rule 5 last drained, so that even a zero `scale_down_after` drains one per instant.
    last_load_drain: Option<Instant>,
    /// Revivals since a server was last ready (rule 2).
    revive_attempts: u32,
    next_revive_at: Option<Instant>,
    /// Why each draining server was drained, for the stop that follows (rule 1).
    drained_for: Vec<(usize, StopReason)>,
    /// The last call's actions, for replay detection (rule 8).
    issued: Vec<Issued>,
}

impl ScalePolicy {
    pub fn new(settings: ScaleSettings) -> Self {
        Self {
            settings,
            low_load_since: None,
            last_load_drain: None,
            revive_attempts: 0,
            next_revive_at: None,
            drained_for: Vec::new(),
            issued: Vec::new(),
        }
    }

    pub fn settings(&self) -> &ScaleSettings {
        &self.settings
    }

    /// New settings on reload, keeping the timers: a reload must not restart the hysteresis or
    /// forget a revival backoff.
    pub fn set_settings(&mut self, settings: ScaleSettings) {
        self.settings = settings;
    }

    /// Records that the shell drained server `index` itself (manual stop, shutdown, failure), so
    /// that rule 1 stops it with that reason and scale-up never takes it back. Call it together
    /// with the drain, before the next `decide`: the note is dropped once a view shows the server
    /// anything but draining.
    pub fn note_drained(&mut self, index: usize, reason: StopReason) {
        self.drained_for.retain(|&(i, _)| i != index);
        self.drained_for.push((index, reason));
    }

    /// When a revival of a failed server is allowed again (None: now); for status pages.
    pub fn next_revive_at(&self) -> Option<Instant> {
        self.next_revive_at
    }

    /// Decides what to do now. Deterministic: the same memory and view give the same actions.
    pub fn decide(&mut self, view: &UpstreamView) -> Vec<Action> {
        let mut work = self.begin(view);
        self.demand_from_zero(&mut work);
        self.floor(&mut work);
        self.scale_up(&mut work);
        self.stop_drained(&mut work);
        self.scale_down(&mut work);
        self.idle(&mut work);
        self.finish(view, work)
    }

    /// Overlays a replayed call's actions and forgets what no longer applies.
    fn begin<'v>(&mut self, view: &'v UpstreamView<'v>) -> Work<'v> {
        let servers = view.servers;
        let mut work = Work {
            servers,
            now: view.now,
            held: view.held,
            rps: view.rps,
            states: servers.iter().map(|s| s.state).collect(),
            settled: vec![false; servers.len()],
            reclaimable: vec![false; servers.len()],
            actions: Vec::new(),
            added: 0,
        };
        // Rule 8: a view at the instant of the last call, with the server still as it was then, is
        // that view again: act as if the earlier actions were applied, and leave those servers
        // alone (their in-flight counts predate the action). A later view showing the old state
        // means the action was lost, and the rules issue it again.
        self.issued.retain(|p| {
            view.now <= p.at
                && position(servers, p.index)
                    .is_some_and(|at| servers[at].state == p.before && servers[at].since == p.since)
        });
        for p in &self.issued {
            if let Some(at) = position(servers, p.index) {
                work.states[at] = p.after;
                work.settled[at] = true;
            }
        }
        let states = &work.states;
        self.drained_for.retain(|&(i, _)| {
            position(servers, i).is_some_and(|at| states[at] == ServerState::Draining)
        });
        for (at, s) in servers.iter().enumerate() {
            work.reclaimable[at] = work.states[at] == ServerState::Draining
                && !work.settled[at]
                && self.drain_reason(s.index).reclaimable();
        }
        // Any server ready means revival worked (or was not needed): the next time everything
        // fails, the first revival is immediate again.
        if work.count(ServerState::Ready) > 0 {
            self.revive_attempts = 0;
            self.next_revive_at = None;
        }
        work
    }

    /// Remembers this call's actions: drain reasons for rule 1, the rest for rule 8.
    fn finish(&mut self, view: &UpstreamView, work: Work) -> Vec<Action> {
        for &action in &work.actions {
            let index = action.index();
            match action {
                Action::Drain(_, reason) => self.note_drained(index, reason),
                Action::Undrain(_) | Action::Stop(..) => {
                    self.drained_for.retain(|&(i, _)| i != index)
                }
                Action::Start(_) => {}
            }
            if let Some(at) = position(view.servers, index) {
                self.issued.push(Issued {
                    index,
                    before: view.servers[at].state,
                    since: view.servers[at].since,
                    at: view.now,
                    after: work.states[at],
                });
            }
        }
        work.actions
    }

    /// Unknown drains were made by someone else, which, outside shutdown, means by hand.
    fn drain_reason(&self, index: usize) -> StopReason {
        self.drained_for
            .iter()
            .find(|&&(i, _)| i == index)
            .map_or(StopReason::Manual, |&(_, r)| r)
    }

    /// Rule 1. Only servers the view itself shows draining are considered, so `in_flight` was
    /// counted after routing to them stopped: a server drained in this call waits for the next
    /// view, since a request may have reached it between the snapshot and the drain.
    fn stop_drained(&self, work: &mut Work) {
        for at in 0..work.servers.len() {
            let s = work.servers[at];
            if !work.settled[at] && work.states[at] == ServerState::Draining && s.in_flight == 0 {
                work.issue(at, Action::Stop(s.index, self.drain_reason(s.index)));
            }
        }
    }

    /// Rule 2. As many servers as the held requests need at `target_in_flight`, at once: a cold
    /// burst of 40 at target 2 must not wait for one server to come up, fill, and only then make
    /// rule 4 start the next ones (the data plane releases held requests by capacity, so they
    /// wait for those starts rather than all landing on the first server up). At least one, for
    /// a single request or the floor; rule 4 sizes from there as the load changes. The floor
    /// counts as demand too, so that a `min_servers` upstream whose servers all crashed is
    /// revived without waiting for a request.
    ///
    /// Failed servers are revived only here, when nothing else can serve, and always the first one
    /// (ngx_supervisord 1.4), paced by `revive_backoff`, so a server that crashes on start is not
    /// restarted in a tight loop while requests keep arriving.
    fn demand_from_zero(&mut self, work: &mut Work) {
        let demand = work.held > 0 || work.up() < self.settings.min_servers;
        // Once a server is ready, rule 4 sizes from the load it sees.
        if !demand || work.count(ServerState::Ready) > 0 {
            return;
        }
        let target = self.settings.target_in_flight.max(1) as usize;
        let wanted = work.held.div_ceil(target).max(1);
        let up = work.up();
        if up > 0 {
            // A burst still arriving while the first servers start: starting servers count as
            // capacity, so only what the held load needs beyond them is started.
            if wanted > up {
                work.add_capacity(wanted - up, self.settings.max_servers);
            }
            return;
        }
        if work.add_capacity(wanted, self.settings.max_servers) > 0 {
            return;
        }
        if self.settings.max_servers == 0 || self.next_revive_at.is_some_and(|t| work.now < t) {
            return;
        }
        if let Some(at) = work.lowest(ServerState::Failed) {
            work.issue(at, Action::Start(work.servers[at].index));
            work.added += 1;
            let delay = self.settings.revive_backoff.delay(self.revive_attempts);
            self.next_revive_at = Some(crate::time::deadline(work.now, delay));
            self.revive_attempts = self.revive_attempts.saturating_add(1);
        }
    }

    /// Rule 3, with or without traffic: `min_servers` is capacity kept warm for the next burst.
    fn floor(&self, work: &mut Work) {
        let floor = self.settings.min_servers.min(self.settings.max_servers);
        let up = work.up();
        if up < floor {
            work.add_capacity(floor - up, self.settings.max_servers);
        }
    }

    /// Rule 4. Immediate, because every tick of delay is requests queueing; servers already
    /// starting count as capacity, so a burst seen on consecutive ticks does not start the same
    /// servers twice. Held requests count as load (see `servers_for_load`), not as a reason for
    /// one more server on their own. Requests are held while ready servers are full (at
    /// `max_conns`, or at target while another server starts) as well as while none is ready,
    /// so a view with both says nothing by itself: it may be the moment a server has just become
    /// ready with the held requests on their way to it, where asking for one more would start a
    /// second server on every cold start. In-flight plus held, at target, covers both cases.
    fn scale_up(&self, work: &mut Work) {
        if work.count(ServerState::Ready) == 0 {
            return;
        }
        let desired = self.servers_for_load(work).min(self.settings.max_servers);
        let up = work.up();
        if desired > up {
            work.add_capacity(desired - up, self.settings.max_servers);
        }
    }

    /// Rule 5, with hysteresis: low load must last `scale_down_after`, and the timer restarts after
    /// each drain, so servers go one at a time and each one's absence is felt before the next.
    /// Never while something is starting (scaling up) or requests are held (with servers ready,
    /// that means they are full: the opposite of low load), and never below
    /// `max(min_servers, 1)`: the last server goes by rule 6 only, when there is no traffic at all.
    /// The highest index goes first, the reverse of the start order, so the same low-index
    /// servers stay warm.
    fn scale_down(&mut self, work: &mut Work) {
        let ready = work.count(ServerState::Ready);
        let eligible = ready > self.settings.min_servers.max(1)
            && work.count(ServerState::Starting) == 0
            && work.held == 0
            && work.added == 0;
        if !(eligible && self.load_is_low(work, ready)) {
            self.low_load_since = None;
            return;
        }
        let since = *self.low_load_since.get_or_insert(work.now);
        if work.now.saturating_duration_since(since) < self.settings.scale_down_after
            || self.last_load_drain == Some(work.now)
        {
            return;
        }
        if let Some(at) = work.highest(ServerState::Ready) {
            work.issue(at, Action::Drain(work.servers[at].index, StopReason::Load));
            self.low_load_since = Some(work.now);
            self.last_load_drain = Some(work.now);
        }
    }

    /// Rule 6: how the last server stops when `min_servers` is 0. Idle time counts from the later
    /// of the last request and the moment the server entered its state, so a server just started
    /// or adopted (whose last request may be long ago) gets a full `idle_timeout`. Never below
    /// what the current load needs either, so idling cannot undo a scale-up, and never while
    /// requests are held, whether for a start or for room on busy servers.
    fn idle(&self, work: &mut Work) {
        if work.held > 0 || work.added > 0 {
            return;
        }
        let keep = self.settings.min_servers.max(self.servers_for_load(work));
        let mut ready = work.count(ServerState::Ready);
        for at in (0..work.servers.len()).rev() {
            if ready <= keep {
                break;
            }
            let s = work.servers[at];
            let idle_since = s.last_active.max(s.since);
            if !work.settled[at]
                && work.states[at] == ServerState::Ready
                && s.in_flight == 0
                && work.now.saturating_duration_since(idle_since) >= self.settings.idle_timeout
            {
                work.issue(at, Action::Drain(s.index, StopReason::Idle));
                ready -= 1;
            }
        }
    }

    /// How many servers the load needs at target. In-flight requests of every server count,
    /// draining ones included: they are load the upstream carries right now; so do held
    /// requests, whether they wait for a start or for room on full servers: they will be in
    /// flight as soon as a server takes them, and they are not in flight anywhere yet, so no
    /// request is counted twice.
    fn servers_for_load(&self, work: &Work) -> usize {
        let target = u64::from(self.settings.target_in_flight.max(1));
        let load = work.total_in_flight().saturating_add(work.held as u64);
        let by_in_flight = usize::try_from(load.div_ceil(target)).unwrap_or(usize::MAX);
        let by_rps = match self.target_rps() {
            // `as` saturates, and turns a NaN from a confused measurement into 0.
            Some(target) => (work.rps / target).ceil() as usize,
            None => 0,
        };
        by_in_flight.max(by_rps)
    }

    /// Under 40% of target per ready server, on every configured measure. A NaN rate is never low.
    fn load_is_low(&self, work: &Work, ready: usize) -> bool {
        let ready = ready as u64;
        let target = u64::from(self.settings.target_in_flight.max(1));
        let in_flight_low = u128::from(work.total_in_flight()) * 100
            < u128::from(LOW_LOAD_PERCENT * target) * u128::from(ready);
        let rps_low = match self.target_rps() {
            Some(target) => work.rps < LOW_LOAD_PERCENT as f64 / 100.0 * target * ready as f64,
            None => true,
        };
        in_flight_low && rps_low
    }

    fn target_rps(&self) -> Option<f64> {
        self.settings
            .target_rps
            .filter(|t| *t > 0.0 && t.is_finite())
    }
}

/// One call's scratch: the servers' states with this call's actions applied.
struct Work<'v> {
    servers: &'v [ServerView],
    now: Instant,
    held: usize,
    rps: f64,
    /// By position in `servers`, as they will be once the actions so far are applied.
    states: Vec<ServerState>,
    /// Has an action already (this call's, or a replayed call's): gets no other.
    settled: Vec<bool>,
    /// Draining because the policy drained it, so adding capacity may take it back.
    reclaimable: Vec<bool>,
    actions: Vec<Action>,
    /// Servers started or undrained in this call.
    added: usize,
}

impl Work<'_> {
    fn count(&self, state: ServerState) -> usize {
        self.states.iter().filter(|&&s| s == state).count()
    }

    /// Capacity that is there or on its way.
    fn up(&self) -> usize {
        self.count(ServerState::Ready) + self.count(ServerState::Starting)
    }

    fn total_in_flight(&self) -> u64 {
        self.servers.iter().map(|s| u64::from(s.in_flight)).sum()
    }

    fn lowest(&self, state: ServerState) -> Option<usize> {
        (0..self.servers.len()).find(|&at| !self.settled[at] && self.states[at] == state)
    }

    fn highest(&self, state: ServerState) -> Option<usize> {
        (0..self.servers.len())
            .rev()
            .find(|&at| !self.settled[at] && self.states[at] == state)
    }

    /// Adds up to `n` servers without going over `max` ready + starting: first takes back servers
    /// the policy drained (instant, and warm), then starts stopped ones, lowest index first, so
    /// the same servers are used again and again. Returns how many.
    fn add_capacity(&mut self, n: usize, max: usize) -> usize {
        let mut added = 0;
        while added < n && self.up() < max {
            let reclaim =
                (0..self.servers.len()).find(|&at| !self.settled[at] && self.reclaimable[at]);
            if let Some(at) = reclaim {
                self.issue(at, Action::Undrain(self.servers[at].index));
            } else if let Some(at) = self.lowest(ServerState::Stopped) {
                self.issue(at, Action::Start(self.servers[at].index));
            } else {
                break;
            }
            added += 1;
        }
        self.added += added;
        added
    }

    fn issue(&mut self, at: usize, action: Action) {
        let next = transition::next(self.states[at], action.event());
        debug_assert!(
            next.is_ok(),
            "policy chose an impossible {action:?}: {next:?}"
        );
        if let Ok(state) = next {
            self.states[at] = state;
            self.settled[at] = true;
            self.actions.push(action);
        }
    }
}

fn position(servers: &[ServerView], index: usize) -> Option<usize> {
    servers.iter().position(|s| s.index == index)
}
