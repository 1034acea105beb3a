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
use crate::transition::{self, Event};

#[cfg(test)]
mod tests;

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

/// One step's scratch: the next lifecycle and the effects so far.
struct Machine<'a> {
    next: Lifecycle,
    effects: Vec<Effect>,
    settings: &'a Settings,
    now: Instant,
}

impl Machine<'_> {
    fn on(&mut self, input: Input) {
        let now = self.now;
        match (self.next.phase.clone(), input) {
            // === wanted up ===
            (Phase::Stopped | Phase::Failed { .. }, Input::Start(reason)) if !self.next.retired => {
                self.start(reason)
            }
            (Phase::Stopped | Phase::Failed { .. }, Input::Reported { process, pid, .. })
                if process == Process::Running && !self.next.retired =>
            {
                self.adopt(pid)
            }

            // === a start under way ===
            (Phase::Starting { reason, at, .. }, Input::StartAnswered { attempt, result })
                if attempt == self.next.attempt =>
            {
                match result {
                    Ok(()) => {
                        if matches!(
                            self.next.phase,
                            Phase::Starting {
                                step: Step::Calling { tries: 1.. },
                                ..
                            }
                        ) {
                            // The supervisor is back: the start is no longer held up.
                            self.effect(Effect::StartDelayed(None));
                        }
                        self.set_step(reason, at, Step::Probing);
                        let deadline = at + self.settings.start_timeout;
                        self.effect(Effect::Probe { attempt, deadline });
                    }
                    Err(StartError::Unreachable(e)) => {
                        let tries = match self.next.phase {
                            Phase::Starting {
                                step: Step::Calling { tries },
                                ..
                            } => tries,
                            _ => 0,
                        };
                        self.retry_later(reason, at, e, tries)
                    }
                    Err(StartError::BadName(e)) => self.start_failed(e, false, false),
                    Err(StartError::Failed(e)) => self.start_failed(e, false, true),
                }
            }
            (
                Phase::Starting {
                    reason,
                    at,
                    step:
                        Step::Retrying {
                            at: retry, tries, ..
                        },
                },
                input @ (Input::Tick { .. } | Input::SupervisorAnswers),
            ) => {
                if now >= at + self.settings.start_timeout {
                    self.give_up_retrying();
                } else if now >= retry || input == Input::SupervisorAnswers {
                    self.set_step(reason, at, Step::Calling { tries });
                    self.call_start();
                }
            }
            // While the supervisor could not be reached, what it reports when it answers again
            // says nothing of this start (`SupervisorAnswers` asks it again).
            (
                Phase::Starting {
                    step: Step::Retrying { .. },
                    ..
                },
                Input::Reported { .. },
            ) => {}
            (Phase::Starting { .. }, Input::ProbeAnswered { attempt, result })
                if attempt == self.next.attempt =>
            {
                match result {
                    Ok(()) => self.ready(),
                    // The requests held for it have waited about as long, and answer
                    // `start-timeout` themselves; those that came later wait for the next
                    // attempt rather than fail on this one.
                    Err(NotReady::TimedOut(e)) => {
                        let t = self.settings.start_timeout;
                        self.start_failed(format!("not ready after {t:?}: {e}"), true, true)
                    }
                    Err(NotReady::Died(e)) => self.start_failed(e, false, true),
                }
            }
            (Phase::Starting { .. }, Input::Reported { process, .. }) if !self.next.seen => {
                // A BACKOFF shows the new process too (it failed to start and is being
                // retried), but is also an exit: it counts as one only once the new process
                // has been seen otherwise.
                self.next.seen |= process.shows_a_process();
            }
            (
                Phase::Starting { .. },
                Input::Reported {
                    process,
                    description,
                    ..
                },
            ) => match process {
                Process::Running if self.settings.ready_by_supervisor => self.ready(),
                Process::Exited | Process::Fatal => {
                    self.start_failed(format!("{}: {description}", name(process)), false, true)
                }
                Process::Stopped => self.vanished(),
                _ => {}
            },

            // === up ===
            (Phase::Ready { .. } | Phase::Draining { .. }, Input::Reported { process, .. })
                if !self.next.seen =>
            {
                self.next.seen |= matches!(process, Process::Starting | Process::Running);
            }
            (
                Phase::Ready { .. } | Phase::Draining { .. },
                Input::Reported {
                    process,
                    description,
                    ..
                },
            ) => match process {
                Process::Exited | Process::Fatal | Process::Backoff => {
                    self.failed(format!("process {}: {description}", name(process)))
                }
                Process::Stopped => self.vanished(),
                _ => {}
            },
            (Phase::Ready { checking: false }, Input::ConnectFailed) => {
                self.go(Phase::Ready { checking: true }, None);
                let attempt = self.next.attempt;
                self.effect(Effect::Check { attempt });
            }
            (Phase::Ready { .. } | Phase::Draining { .. }, Input::Checked { attempt, result })
                if attempt == self.next.attempt =>
            {
                if let Phase::Ready { .. } = self.next.phase {
                    self.go(Phase::Ready { checking: false }, None);
                }
                match result {
                    Checked::Accepts => {
                        self.effect(Effect::ForgetConnectFailures);
                        self.effect(Effect::WakeHeld);
                        self.record(Record::CheckPassed);
                    }
                    Checked::Refused {
                        process: Some(Process::Stopped),
                        ..
                    } => self.vanished(),
                    Checked::Refused { why, .. } => {
                        self.failed(format!("refused connections ({why})"))
                    }
                }
            }
            (Phase::Ready { .. }, Input::Drain { why, by }) => {
                let settled = false;
                self.go(Phase::Draining { why, by, settled }, Some(Event::Drain));
                self.record(Record::Drain(why));
            }
            (Phase::Draining { .. }, Input::Undrain) if !self.next.retired => {
                self.go(Phase::Ready { checking: false }, Some(Event::Undrain));
                self.effect(Effect::WakeHeld);
            }
            (Phase::Draining { why, by, .. }, Input::Drain { by: sooner, .. }) => {
                // A manual stop of a server the policy drained: the deadline applies.
                let by = earliest(by, sooner);
                self.go(
                    Phase::Draining {
                        why,
                        by,
                        settled: true,
                    },
                    None,
                );
            }
            (
                Phase::Draining {
                    why, by, settled, ..
                },
                Input::Tick { in_flight },
            ) => {
                if self.next.retired && settled && in_flight == 0 {
                    self.stop(why);
                } else if by.is_some_and(|by| now >= by) {
                    self.record(Record::Overdue { in_flight });
                    self.stop(why);
                } else if !settled {
                    self.go(
                        Phase::Draining {
                            why,
                            by,
                            settled: true,
                        },
                        None,
                    );
                }
            }
            (
                Phase::Ready { .. } | Phase::Draining { .. } | Phase::Starting { .. },
                Input::Stop(why),
            ) => self.stop(why),
            (Phase::Failed { .. }, Input::Stop(why)) => {
                // Nothing runs (its failure stop is through): forgetting the failure is all.
                self.record(Record::Stop(why));
                self.go(Phase::Stopped, Some(Event::CooledDown));
                self.effect(Effect::ForgetStartError);
            }

            // === reload, shutdown ===
            (phase, Input::Retire { by }) if !self.next.retired => {
                self.next.retired = true;
                match phase {
                    Phase::Ready { .. } => {
                        let why = StopReason::Reload;
                        let settled = false;
                        self.go(
                            Phase::Draining {
                                why,
                                by: Some(by),
                                settled,
                            },
                            Some(Event::Drain),
                        );
                        self.record(Record::Drain(why));
                    }
                    Phase::Draining {
                        by: was, settled, ..
                    } => {
                        let by = earliest(was, Some(by));
                        let why = StopReason::Reload;
                        self.go(Phase::Draining { why, by, settled }, None);
                    }
                    Phase::Starting { .. } => self.stop(StopReason::Reload),
                    _ => {}
                }
            }
            (
                Phase::Ready { .. } | Phase::Draining { .. } | Phase::Starting { .. },
                Input::Shutdown,
            ) => {
                self.record(Record::Stop(StopReason::Shutdown));
                let then = Then::Stopped;
                let why = StopReason::Shutdown;
                self.go(Phase::Stopping { why, then }, Some(Event::StopIssued));
            }

            // === stopping, failed ===
            (Phase::Stopping { then, .. }, Input::StopAnswered { result }) => {
                let error = result.err();
                match then {
                    Then::Stopped => {
                        self.go(Phase::Stopped, Some(Event::Stopped));
                        self.record(Record::Stopped { error });
                    }
                    Then::Failed(cause) => {
                        let cool = self.cool_down();
                        let until = later(now, cool);
                        let unreachable = false;
                        self.go(
                            Phase::Failed {
                                cause,
                                until,
                                unreachable,
                            },
                            Some(Event::FailureStopped),
                        );
                        if let Some(error) = error {
                            self.record(Record::Stopped { error: Some(error) });
                        }
                        self.effect(Effect::WakeHeld);
                    }
                }
            }
            (Phase::Failed { until, .. }, Input::Tick { .. })
                if now >= until && !self.next.retired =>
            {
                self.cooled_down()
            }
            (
                Phase::Failed {
                    unreachable: true, ..
                },
                Input::SupervisorAnswers,
            ) if !self.next.retired => {
                self.next.failures = 0;
                self.cooled_down()
            }
            _ => {}
        }
    }

    // === the moves ===

    fn start(&mut self, reason: StartReason) {
        let at = self.now;
        let step = Step::Calling { tries: 0 };
        self.go(
            Phase::Starting { reason, at, step },
            Some(Event::StartIssued),
        );
        self.next.attempt += 1;
        self.next.seen = false;
        self.record(Record::Start(reason));
        // Held requests now wait for this attempt rather than fail on the previous one.
        self.effect(Effect::ForgetStartError);
        self.call_start();
    }

    fn call_start(&mut self) {
        let attempt = self.next.attempt;
        self.effect(Effect::CallStart { attempt });
    }

    fn adopt(&mut self, pid: Option<u32>) {
        let reason = StartReason::Adopted;
        let at = self.now;
        let step = Step::Probing;
        self.go(Phase::Starting { reason, at, step }, Some(Event::Adopted));
        self.next.attempt += 1;
        // The process reported is the one adopted.
        self.next.seen = true;
        self.record(Record::Adopt { pid });
        let attempt = self.next.attempt;
        let deadline = at + self.settings.start_timeout;
        self.effect(Effect::Probe { attempt, deadline });
    }

    fn retry_later(&mut self, reason: StartReason, at: Instant, error: String, tries: u32) {
        let retry = later(self.now, RETRY_UNREACHABLE.delay(tries));
        if tries == 0 {
            self.record(Record::StartRetry(error.clone()));
        }
        // The latest reason each time: it is what a request timing out meanwhile is told.
        self.effect(Effect::StartDelayed(Some(error.clone())));
        self.set_step(
            reason,
            at,
            Step::Retrying {
                at: retry,
                error,
                tries: tries.saturating_add(1),
            },
        );
    }

    /// The supervisor stayed unreachable for all of `start_timeout`.
    fn give_up_retrying(&mut self) {
        let Phase::Starting {
            step: Step::Retrying { error, .. },
            ..
        } = &self.next.phase
        else {
            return;
        };
        let why = error.clone();
        self.next.failures = self.next.failures.saturating_add(1);
        self.record(Record::StartFailed {
            why: why.clone(),
            timed_out: true,
        });
        let until = later(self.now, self.cool_down());
        self.go(
            Phase::Failed {
                cause: why.clone(),
                until,
                unreachable: true,
            },
            Some(Event::StartFailed),
        );
        self.effect(Effect::TellHeld(why));
    }

    fn set_step(&mut self, reason: StartReason, at: Instant, step: Step) {
        self.next.phase = Phase::Starting { reason, at, step };
    }

    fn ready(&mut self) {
        let Phase::Starting { reason, at, .. } = self.next.phase.clone() else {
            return;
        };
        // Before it is routable: refusals seen from a previous process must not keep the new
        // one out of rotation.
        self.effect(Effect::ForgetConnectFailures);
        self.go(Phase::Ready { checking: false }, Some(Event::Ready));
        self.next.failures = 0;
        let took = self.now.saturating_duration_since(at);
        let adopted = reason == StartReason::Adopted;
        self.record(Record::Ready { took, adopted });
        self.effect(Effect::ForgetStartError);
    }

    /// A start did not lead to a ready server. `timed_out`: left to the held requests, which
    /// have waited as long; otherwise they are told at once. `something_runs`: there may be a
    /// process to stop.
    fn start_failed(&mut self, why: String, timed_out: bool, something_runs: bool) {
        self.next.failures = self.next.failures.saturating_add(1);
        self.record(Record::StartFailed {
            why: why.clone(),
            timed_out,
        });
        if something_runs {
            // ngx_supervisord 1.4: a failed server is stopped through its supervisor, so a
            // half-alive process does not keep its port.
            self.record(Record::Stop(StopReason::Failure));
            let then = Then::Failed(why.clone());
            let why = StopReason::Failure;
            self.go(Phase::Stopping { why, then }, Some(Event::StopIssued));
            self.effect(Effect::CallStop);
        } else {
            let until = later(self.now, self.cool_down());
            let unreachable = false;
            let cause = why.clone();
            self.go(
                Phase::Failed {
                    cause,
                    until,
                    unreachable,
                },
                Some(Event::StartFailed),
            );
        }
        if timed_out {
            self.effect(Effect::WakeHeld);
        } else {
            self.effect(Effect::TellHeld(why));
        }
    }

    /// A server that was up stopped working: stopped, then cooled down.
    fn failed(&mut self, why: String) {
        self.next.failures = self.next.failures.saturating_add(1);
        self.record(Record::Failed(why.clone()));
        self.record(Record::Stop(StopReason::Failure));
        let then = Then::Failed(why);
        let reason = StopReason::Failure;
        self.go(
            Phase::Stopping { why: reason, then },
            Some(Event::StopIssued),
        );
        self.effect(Effect::CallStop);
        self.effect(Effect::WakeHeld);
    }

    /// Stopped behind rouse's back (`supervisorctl stop`): not a failure, just gone.
    fn vanished(&mut self) {
        self.go(Phase::Stopped, Some(Event::VanishedStopped));
        self.record(Record::StoppedOutside);
        self.effect(Effect::WakeHeld);
    }

    fn stop(&mut self, why: StopReason) {
        let was_starting = self.next.state() == ServerState::Starting;
        self.record(Record::Stop(why));
        let then = Then::Stopped;
        self.go(Phase::Stopping { why, then }, Some(Event::StopIssued));
        self.effect(Effect::CallStop);
        if was_starting {
            // Ready servers hold requests back at target while one starts: that one is not
            // coming any more.
            self.effect(Effect::WakeHeld);
        }
    }

    /// A failed server may be started again: `stopped`, and the requests that come next wait
    /// for a new start instead of getting the last one's error.
    fn cooled_down(&mut self) {
        self.go(Phase::Stopped, Some(Event::CooledDown));
        self.effect(Effect::ForgetStartError);
    }

    fn cool_down(&self) -> Duration {
        self.settings
            .backoff
            .delay(self.next.failures.saturating_sub(1))
    }

    // === plumbing ===

    /// Moves to `phase`. `event` names the edge of the public diagram when the public state
    /// changes (`None`: it does not).
    fn go(&mut self, phase: Phase, event: Option<Event>) {
        let from = self.next.phase.state();
        let to = phase.state();
        match event {
            Some(event) => {
                debug_assert_eq!(
                    transition::next(from, event),
                    Ok(to),
                    "{from} --{event}--> {to} is not an edge of the diagram"
                );
                self.next.since = self.now;
            }
            None => debug_assert_eq!(from, to, "a change of state needs its event"),
        }
        self.next.phase = phase;
    }

    fn effect(&mut self, e: Effect) {
        self.effects.push(e);
    }

    fn record(&mut self, r: Record) {
        self.effects.push(Effect::Record(r));
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn name(p: Process) -> &'static str {
    match p {
        Process::Starting => "STARTING",
        Process::Running => "RUNNING",
        Process::Backoff => "BACKOFF",
        Process::Stopping => "STOPPING",
        Process::Stopped => "STOPPED",
        Process::Exited => "EXITED",
        Process::Fatal => "FATAL",
        Process::Unknown => "UNKNOWN",
    }
}

/// `now + d`, saturating instead of panicking on an absurd backoff.
fn later(now: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d)
        .or_else(|| now.checked_add(CENTURY))
        .unwrap_or(now)
}
