//! One server's lifecycle: one pure function, `(state, input, now) -> (state, effects)`.
//!
//! Everything rouse knows about a server's process lives here, in the state's own variants:
//! which attempt is under way and why it was made, whether the supervisor has reported the new
//! process yet, why it drains and by when, why it failed and until when it cools down. The
//! reconciler feeds [`Input`]s (policy decisions, manual commands, task answers, supervisor
//! reports, the data plane's connect failures, reloads, the clock) and carries out the
//! [`Effect`]s (calls to the supervisor, probes, waking or answering held requests, the
//! journal); it keeps no memory of a server of its own.
//!
//! The public state ([`ServerState`]) is [`Phase::state`]; every change of it is an edge of the
//! diagram in [`crate::transition`] (checked on every step in debug builds and by the tests),
//! which is what `docs/architecture.md` draws.

use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::policy::StopReason;
use crate::reason::StartReason;
use crate::state::ServerState;

mod machine;
#[cfg(test)]
mod tests;

use machine::Machine;

/// How long to wait before asking an unreachable supervisor again to start a server: it is
/// usually restarting, which takes about a second.
const RETRY_UNREACHABLE: Backoff = Backoff {
    base: Duration::from_millis(100),
    max: Duration::from_secs(1),
};

/// What the lifecycle needs to know of its upstream's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// A start not ready this long after it was issued has failed.
    pub start_timeout: Duration,
    /// Cool-down after consecutive failures (`fail_timeout`, doubling up to `fail_timeout_max`).
    pub backoff: Backoff,
    /// `ready = "supervisor"`: RUNNING is ready.
    pub ready_by_supervisor: bool,
}

/// A process state as a supervisor reports it (supervisord's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Starting,
    Running,
    Backoff,
    Stopping,
    Stopped,
    Exited,
    Fatal,
    Unknown,
}

impl Process {
    /// Reports that show a process of the current run exists (or tried to: BACKOFF).
    fn shows_a_process(self) -> bool {
        matches!(
            self,
            Process::Starting | Process::Running | Process::Backoff
        )
    }
}

/// Why the supervisor did not take a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// It could not be reached (or refused rouse's credentials): nothing is wrong with the
    /// server, and the start is asked again until `start_timeout`.
    Unreachable(String),
    /// It does not know the program: nothing runs, so there is nothing to stop.
    BadName(String),
    /// It tried and failed (spawn error, abnormal termination).
    Failed(String),
}

/// Why a started server did not become ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// Still not ready when `start_timeout` ran out (the last probe's error).
    TimedOut(String),
    /// The supervisor reported the process dead (FATAL, EXITED) while it started.
    Died(String),
}

/// The answer of a connect check of a ready server the data plane could not reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Accepts,
    /// Refused; `process` is what its supervisor says of the program at that moment.
    Refused {
        why: String,
        process: Option<Process>,
    },
}

/// Something that happened to a server, or that someone decided about it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The policy or an operator wants it up.
    Start(StartReason),
    /// Stop routing to it; it is stopped once nothing is in flight, or at `by` at the latest.
    Drain {
        why: StopReason,
        by: Option<Instant>,
    },
    /// Load came back: route to it again.
    Undrain,
    /// Stop it now.
    Stop(StopReason),
    /// A reload removed it: drained, then stopped, by `by` at the latest; never started again.
    Retire { by: Instant },
    /// rouse shuts down and its supervisor stops every process with it (embedded).
    Shutdown,
    /// The supervisor answered the start of `attempt`.
    StartAnswered {
        attempt: u64,
        result: Result<(), StartError>,
    },
    /// The readiness check of `attempt` ended.
    ProbeAnswered {
        attempt: u64,
        result: Result<(), NotReady>,
    },
    /// The supervisor answered the stop under way.
    StopAnswered { result: Result<(), String> },
    /// The supervisor reports the program in `process`.
    Reported {
        process: Process,
        pid: Option<u32>,
        description: String,
    },
    /// The supervisor answered something: if it was unreachable, it is back.
    SupervisorAnswers,
    /// The data plane could not connect to it.
    ConnectFailed,
    /// The connect check of `attempt` (see [`Effect::Check`]) answered.
    Checked { attempt: u64, result: Checked },
    /// Time passed; `in_flight` is what the data plane has on it now.
    Tick { in_flight: u32 },
}

/// What the shell must do after a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Ask the supervisor to start the program; answer with [`Input::StartAnswered`].
    CallStart { attempt: u64 },
    /// Ask it to stop the program; answer with [`Input::StopAnswered`].
    CallStop,
    /// Check readiness until `deadline`; answer with [`Input::ProbeAnswered`].
    Probe { attempt: u64, deadline: Instant },
    /// One connect of the control plane's own; answer with [`Input::Checked`].
    Check { attempt: u64 },
    /// Connect failures the data plane saw are about a process that is gone.
    ForgetConnectFailures,
    /// Held requests should look again (a server may be ready, or may take more).
    WakeHeld,
    /// The last start error no longer stands (a new attempt, a server ready or cooled down):
    /// held requests wait instead of getting it, and look again.
    ForgetStartError,
    /// Held requests get this error at once, unless another server is ready or on its way.
    TellHeld(String),
    /// Why the start under way is slow (`None`: it no longer is): held requests that time out
    /// meanwhile say it.
    StartDelayed(Option<String>),
    /// Something operators should see: the journal, the log, the counters.
    Record(Record),
}

/// A lifecycle event for the journal, the log and the metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Start(StartReason),
    /// Asking the supervisor again (it was unreachable).
    StartRetry(String),
    Adopt {
        pid: Option<u32>,
    },
    Ready {
        took: Duration,
        adopted: bool,
    },
    /// `timed_out`: not ready within `start_timeout` (counted as `result="timeout"`).
    StartFailed {
        why: String,
        timed_out: bool,
    },
    Drain(StopReason),
    /// A draining server still busy at its deadline.
    Overdue {
        in_flight: u32,
    },
    /// Counted in `rouse_stops_total`.
    Stop(StopReason),
    Stopped {
        error: Option<String>,
    },
    StoppedOutside,
    Failed(String),
    /// The data plane's connect failures were passing: it accepts connections.
    CheckPassed,
}

/// Where a start is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The supervisor is being asked; `tries` earlier asks found it unreachable.
    Calling { tries: u32 },
    /// The supervisor could not be reached; asked again at `at`.
    Retrying {
        at: Instant,
        error: String,
        tries: u32,
    },
    /// The supervisor took it; the readiness check runs.
    Probing,
}

/// What a stop leads to once it is through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    Stopped,
    /// The server failed: it cools down before it may start again.
    Failed(String),
}

/// A server's state, with the data each state needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Stopped,
    Starting {
        reason: StartReason,
        /// When the start was issued (or the running process found): `start_timeout` counts
        /// from here.
        at: Instant,
        step: Step,
    },
    Ready {
        /// A connect check is under way.
        checking: bool,
    },
    Draining {
        why: StopReason,
        /// Stopped then even if something is still in flight (manual stop, reload).
        by: Option<Instant>,
        /// A tick has seen it draining: its in-flight count was read after routing to it
        /// stopped, so zero means idle (a request may have been routed to it just before the
        /// drain and not be counted yet at the first look).
        settled: bool,
    },
    Stopping {
        why: StopReason,
        then: Then,
    },
    Failed {
        cause: String,
        /// It may start again (cooled down) at this instant.
        until: Instant,
        /// Its supervisor could not be reached: it cools down as soon as that one answers.
        unreachable: bool,
    },
}

impl Phase {
    pub fn state(&self) -> ServerState {
        match self {
            Phase::Stopped => ServerState::Stopped,
            Phase::Starting { .. } => ServerState::Starting,
            Phase::Ready { .. } => ServerState::Ready,
            Phase::Draining { .. } => ServerState::Draining,
            Phase::Stopping { .. } => ServerState::Stopping,
            Phase::Failed { .. } => ServerState::Failed,
        }
    }
}

/// One server's lifecycle: its phase, and what carries across phases.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    phase: Phase,
    /// When the phase's public state was entered.
    since: Instant,
    /// Bumped at each start or adoption: answers of tasks carry it, so a late answer about an
    /// earlier attempt is ignored.
    attempt: u64,
    /// Consecutive failed starts or crashes, for the cool-down; reset when ready.
    failures: u32,
    /// The supervisor has reported the current run's process. Until it has, a report of an
    /// exit or a stop is about the previous process: its last reports can still be on their
    /// way when the next start is issued, or even when the new process passes its probe, and
    /// acting on them failed a perfectly good new process.
    seen: bool,
    /// A reload removed it: never started again, stopped once drained.
    retired: bool,
}

impl Lifecycle {
    pub fn new(now: Instant) -> Lifecycle {
        Lifecycle {
            phase: Phase::Stopped,
            since: now,
            attempt: 0,
            failures: 0,
            seen: true,
            retired: false,
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn state(&self) -> ServerState {
        self.phase.state()
    }

    pub fn since(&self) -> Instant {
        self.since
    }

    pub fn attempt(&self) -> u64 {
        self.attempt
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn is_retired(&self) -> bool {
        self.retired
    }

    /// Whether a [`Input::Tick`] may change anything: deadlines and cool-downs run in these
    /// phases only. Stopped and ready lifecycles ignore ticks, so a shell with many servers
    /// need not step them.
    pub fn waits_on_time(&self) -> bool {
        !matches!(self.phase, Phase::Stopped | Phase::Ready { .. })
    }

    /// Nothing runs and nothing is on its way to stop it.
    pub fn is_down(&self) -> bool {
        matches!(self.phase, Phase::Stopped | Phase::Failed { .. })
    }

    /// The next state and what to do, for `input` at `now`. Inputs that do not apply (a late
    /// answer about an earlier attempt, a drain of a stopped server, a stale report) leave the
    /// lifecycle as it is and do nothing.
    pub fn step(
        &self,
        settings: &Settings,
        input: Input,
        now: Instant,
    ) -> (Lifecycle, Vec<Effect>) {
        let mut m = Machine {
            next: self.clone(),
            effects: Vec::new(),
            settings,
            now,
        };
        m.on(input);
        (m.next, m.effects)
    }
}
