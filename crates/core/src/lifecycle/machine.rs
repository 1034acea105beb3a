//! The transitions: what each input does in each phase. `Lifecycle::step` runs one input
//! through a [`Machine`], which builds the next lifecycle and the effects in order.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::transition::{self, Event};

/// One step's scratch: the next lifecycle and the effects so far.
pub(super) struct Machine<'a> {
    pub(super) next: Lifecycle,
    pub(super) effects: Vec<Effect>,
    pub(super) settings: &'a Settings,
    pub(super) now: Instant,
}

impl Machine<'_> {
    pub(super) fn on(&mut self, input: Input) {
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
            (Phase::Starting { reason, at, step }, Input::StartAnswered { attempt, result })
                if attempt == self.next.attempt =>
            {
                let tries = match step {
                    Step::Calling { tries } => tries,
                    _ => 0,
                };
                match result {
                    Ok(()) => {
                        if tries > 0 {
                            // The supervisor is back: the start is no longer held up.
                            self.effect(Effect::StartDelayed(None));
                        }
                        self.set_step(reason, at, Step::Probing);
                        let deadline = crate::time::deadline(at, self.settings.start_timeout);
                        self.effect(Effect::Probe { attempt, deadline });
                    }
                    Err(StartError::Unreachable(e)) => self.retry_later(reason, at, e, tries),
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
                if now >= crate::time::deadline(at, self.settings.start_timeout) {
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
                        let until = crate::time::deadline(now, cool);
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
        let deadline = crate::time::deadline(at, self.settings.start_timeout);
        self.effect(Effect::Probe { attempt, deadline });
    }

    fn retry_later(&mut self, reason: StartReason, at: Instant, error: String, tries: u32) {
        let retry = crate::time::deadline(self.now, RETRY_UNREACHABLE.delay(tries));
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
        let until = crate::time::deadline(self.now, self.cool_down());
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
            let until = crate::time::deadline(self.now, self.cool_down());
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
