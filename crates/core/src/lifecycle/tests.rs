//! The lifecycle as a table (after Horust's): for each state that matters and each input that
//! can reach it, the state it leads to and what the shell must do.

use super::*;
use crate::state::ServerState as S;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn settings() -> Settings {
    Settings {
        start_timeout: Duration::from_secs(10),
        backoff: Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
        },
        ready_by_supervisor: false,
    }
}

/// The lifecycles the table starts from, by name; `t0` is when each phase was entered.
fn from(name: &str, t0: Instant) -> Lifecycle {
    let base = Lifecycle {
        phase: Phase::Stopped,
        since: t0,
        attempt: 1,
        failures: 0,
        seen: true,
        retired: false,
    };
    let starting = |step: Step, seen: bool| Lifecycle {
        phase: Phase::Starting {
            reason: StartReason::Demand { held: 3 },
            at: t0,
            step,
        },
        seen,
        ..base.clone()
    };
    let draining = |why, by, retired| Lifecycle {
        phase: Phase::Draining {
            why,
            by,
            settled: true,
        },
        retired,
        ..base.clone()
    };
    let failed = |unreachable| Lifecycle {
        phase: Phase::Failed {
            cause: "boom".into(),
            until: t0 + ms(1000),
            unreachable,
        },
        failures: 1,
        ..base.clone()
    };
    match name {
        "stopped" => base,
        "stopped-retired" => Lifecycle {
            retired: true,
            ..base
        },
        "calling" => starting(Step::Calling { tries: 0 }, false),
        "calling-seen" => starting(Step::Calling { tries: 0 }, true),
        "calling-again" => starting(Step::Calling { tries: 2 }, false),
        "probing" => starting(Step::Probing, true),
        "retrying" => starting(
            Step::Retrying {
                at: t0 + ms(100),
                error: "cannot connect".into(),
                tries: 1,
            },
            false,
        ),
        "ready" => Lifecycle {
            phase: Phase::Ready { checking: false },
            ..base
        },
        "ready-unseen" => Lifecycle {
            phase: Phase::Ready { checking: false },
            seen: false,
            ..base
        },
        "checking" => Lifecycle {
            phase: Phase::Ready { checking: true },
            ..base
        },
        "draining" => draining(StopReason::Idle, None, false),
        "draining-by" => draining(StopReason::Manual, Some(t0 + ms(1000)), false),
        "retired" => draining(StopReason::Reload, Some(t0 + ms(1000)), true),
        "stopping" => Lifecycle {
            phase: Phase::Stopping {
                why: StopReason::Idle,
                then: Then::Stopped,
            },
            ..base
        },
        "stopping-failure" => Lifecycle {
            phase: Phase::Stopping {
                why: StopReason::Failure,
                then: Then::Failed("boom".into()),
            },
            failures: 2,
            ..base
        },
        "failed" => failed(false),
        "failed-unreachable" => failed(true),
        other => panic!("no lifecycle named {other}"),
    }
}

/// An effect as the table writes it.
fn short(e: &Effect) -> String {
    match e {
        Effect::CallStart { .. } => "call-start".into(),
        Effect::CallStop => "call-stop".into(),
        Effect::Probe { .. } => "probe".into(),
        Effect::Check { .. } => "check".into(),
        Effect::ForgetConnectFailures => "forget".into(),
        Effect::WakeHeld => "wake".into(),
        Effect::ForgetStartError => "forget-error".into(),
        Effect::TellHeld(_) => "tell".into(),
        Effect::StartDelayed(Some(_)) => "delayed".into(),
        Effect::StartDelayed(None) => "not-delayed".into(),
        Effect::Record(r) => String::from(match r {
            Record::Start(_) => "+start",
            Record::StartRetry(_) => "+retry",
            Record::Adopt { .. } => "+adopt",
            Record::Ready { .. } => "+ready",
            Record::StartFailed {
                timed_out: true, ..
            } => "+start-timeout",
            Record::StartFailed { .. } => "+start-failed",
            Record::Drain(_) => "+drain",
            Record::Overdue { .. } => "+overdue",
            Record::Stop(_) => "+stop",
            Record::Stopped { .. } => "+stopped",
            Record::StoppedOutside => "+outside",
            Record::Failed(_) => "+failed",
            Record::CheckPassed => "+check-passed",
        }),
    }
}

fn reported(process: Process) -> Input {
    Input::Reported {
        process,
        pid: Some(7),
        description: "scripted".into(),
    }
}

fn start_err(e: StartError) -> Input {
    Input::StartAnswered {
        attempt: 1,
        result: Err(e),
    }
}

fn probe(result: Result<(), NotReady>) -> Input {
    Input::ProbeAnswered { attempt: 1, result }
}

fn refused(process: Option<Process>) -> Input {
    Input::Checked {
        attempt: 1,
        result: Checked::Refused {
            why: "refused".into(),
            process,
        },
    }
}

/// (from, input, ms after t0, state after, effects in order). Every row with an input that
/// does not apply says so with the state unchanged and no effect.
fn table() -> Vec<(&'static str, Input, u64, S, Vec<&'static str>)> {
    use Input as I;
    use Process as P;
    let tick = |in_flight| I::Tick { in_flight };
    vec![
        // --- stopped ---
        (
            "stopped",
            I::Start(StartReason::MinServers),
            5,
            S::Starting,
            vec!["+start", "forget-error", "call-start"],
        ),
        (
            "stopped",
            reported(P::Running),
            5,
            S::Starting,
            vec!["+adopt", "probe"],
        ),
        ("stopped", reported(P::Stopped), 5, S::Stopped, vec![]),
        ("stopped", reported(P::Exited), 5, S::Stopped, vec![]),
        (
            "stopped",
            I::Drain {
                why: StopReason::Idle,
                by: None,
            },
            5,
            S::Stopped,
            vec![],
        ),
        (
            "stopped",
            I::Stop(StopReason::Manual),
            5,
            S::Stopped,
            vec![],
        ),
        ("stopped", tick(0), 5, S::Stopped, vec![]),
        (
            "stopped",
            I::Retire { by: Instant::now() },
            5,
            S::Stopped,
            vec![],
        ),
        (
            "stopped-retired",
            I::Start(StartReason::Demand { held: 1 }),
            5,
            S::Stopped,
            vec![],
        ),
        (
            "stopped-retired",
            reported(P::Running),
            5,
            S::Stopped,
            vec![],
        ),
        // --- starting: the supervisor is asked ---
        (
            "calling",
            I::StartAnswered {
                attempt: 1,
                result: Ok(()),
            },
            5,
            S::Starting,
            vec!["probe"],
        ),
        (
            "calling",
            I::StartAnswered {
                attempt: 0,
                result: Ok(()),
            },
            5,
            S::Starting,
            vec![],
        ),
        (
            "calling",
            start_err(StartError::Unreachable("down".into())),
            5,
            S::Starting,
            vec!["+retry", "delayed"],
        ),
        (
            "calling",
            start_err(StartError::BadName("ghost".into())),
            5,
            S::Failed,
            vec!["+start-failed", "tell"],
        ),
        (
            "calling",
            start_err(StartError::Failed("spawn".into())),
            5,
            S::Stopping,
            vec!["+start-failed", "+stop", "call-stop", "tell"],
        ),
        (
            "calling",
            I::Start(StartReason::Manual),
            5,
            S::Starting,
            vec![],
        ),
        // The previous run's last reports, before the new process showed up.
        ("calling", reported(P::Exited), 5, S::Starting, vec![]),
        ("calling", reported(P::Stopped), 5, S::Starting, vec![]),
        ("calling", reported(P::Backoff), 5, S::Starting, vec![]),
        (
            "calling-seen",
            reported(P::Exited),
            5,
            S::Stopping,
            vec!["+start-failed", "+stop", "call-stop", "tell"],
        ),
        (
            "calling-seen",
            reported(P::Fatal),
            5,
            S::Stopping,
            vec!["+start-failed", "+stop", "call-stop", "tell"],
        ),
        (
            "calling-seen",
            reported(P::Stopped),
            5,
            S::Stopped,
            vec!["+outside", "wake"],
        ),
        ("calling-seen", reported(P::Running), 5, S::Starting, vec![]),
        (
            "calling",
            I::Stop(StopReason::Manual),
            5,
            S::Stopping,
            vec!["+stop", "call-stop", "wake"],
        ),
        (
            "calling",
            I::Retire { by: Instant::now() },
            5,
            S::Stopping,
            vec!["+stop", "call-stop", "wake"],
        ),
        ("calling", I::Shutdown, 5, S::Stopping, vec!["+stop"]),
        // --- starting: the supervisor could not be reached ---
        (
            "calling-again",
            I::StartAnswered {
                attempt: 1,
                result: Ok(()),
            },
            5,
            S::Starting,
            vec!["not-delayed", "probe"],
        ),
        (
            "calling-again",
            start_err(StartError::Unreachable("down".into())),
            5,
            S::Starting,
            vec!["delayed"],
        ),
        ("retrying", tick(0), 50, S::Starting, vec![]),
        ("retrying", tick(0), 100, S::Starting, vec!["call-start"]),
        (
            "retrying",
            I::SupervisorAnswers,
            50,
            S::Starting,
            vec!["call-start"],
        ),
        ("retrying", reported(P::Stopped), 50, S::Starting, vec![]),
        (
            "retrying",
            tick(0),
            10_000,
            S::Failed,
            vec!["+start-timeout", "tell"],
        ),
        // --- starting: the readiness check ---
        (
            "probing",
            probe(Ok(())),
            5,
            S::Ready,
            vec!["forget", "+ready", "forget-error"],
        ),
        (
            "probing",
            I::ProbeAnswered {
                attempt: 0,
                result: Ok(()),
            },
            5,
            S::Starting,
            vec![],
        ),
        (
            "probing",
            probe(Err(NotReady::TimedOut("refused".into()))),
            10_000,
            S::Stopping,
            vec!["+start-timeout", "+stop", "call-stop", "wake"],
        ),
        (
            "probing",
            probe(Err(NotReady::Died("FATAL".into()))),
            5,
            S::Stopping,
            vec!["+start-failed", "+stop", "call-stop", "tell"],
        ),
        ("probing", I::ConnectFailed, 5, S::Starting, vec![]),
        // --- ready ---
        (
            "ready",
            I::Drain {
                why: StopReason::Idle,
                by: None,
            },
            5,
            S::Draining,
            vec!["+drain"],
        ),
        ("ready", I::Undrain, 5, S::Ready, vec![]),
        ("ready", I::Start(StartReason::Manual), 5, S::Ready, vec![]),
        (
            "ready",
            I::Stop(StopReason::Manual),
            5,
            S::Stopping,
            vec!["+stop", "call-stop"],
        ),
        (
            "ready",
            reported(P::Exited),
            5,
            S::Stopping,
            vec!["+failed", "+stop", "call-stop", "wake"],
        ),
        (
            "ready",
            reported(P::Backoff),
            5,
            S::Stopping,
            vec!["+failed", "+stop", "call-stop", "wake"],
        ),
        (
            "ready",
            reported(P::Stopped),
            5,
            S::Stopped,
            vec!["+outside", "wake"],
        ),
        ("ready", reported(P::Running), 5, S::Ready, vec![]),
        ("ready-unseen", reported(P::Stopped), 5, S::Ready, vec![]),
        ("ready-unseen", reported(P::Exited), 5, S::Ready, vec![]),
        ("ready", I::ConnectFailed, 5, S::Ready, vec!["check"]),
        ("checking", I::ConnectFailed, 5, S::Ready, vec![]),
        (
            "checking",
            I::Checked {
                attempt: 1,
                result: Checked::Accepts,
            },
            5,
            S::Ready,
            vec!["forget", "wake", "+check-passed"],
        ),
        (
            "checking",
            refused(None),
            5,
            S::Stopping,
            vec!["+failed", "+stop", "call-stop", "wake"],
        ),
        (
            "checking",
            refused(Some(P::Stopped)),
            5,
            S::Stopped,
            vec!["+outside", "wake"],
        ),
        (
            "checking",
            I::Checked {
                attempt: 0,
                result: Checked::Accepts,
            },
            5,
            S::Ready,
            vec![],
        ),
        (
            "ready",
            I::Retire { by: Instant::now() },
            5,
            S::Draining,
            vec!["+drain"],
        ),
        ("ready", I::Shutdown, 5, S::Stopping, vec!["+stop"]),
        ("ready", tick(3), 5, S::Ready, vec![]),
        // --- draining ---
        ("draining", I::Undrain, 5, S::Ready, vec!["wake"]),
        (
            "draining",
            I::Stop(StopReason::Idle),
            5,
            S::Stopping,
            vec!["+stop", "call-stop"],
        ),
        ("draining", tick(0), 5, S::Draining, vec![]),
        (
            "draining",
            reported(P::Fatal),
            5,
            S::Stopping,
            vec!["+failed", "+stop", "call-stop", "wake"],
        ),
        (
            "draining",
            I::Drain {
                why: StopReason::Manual,
                by: None,
            },
            5,
            S::Draining,
            vec![],
        ),
        ("draining-by", tick(2), 999, S::Draining, vec![]),
        (
            "draining-by",
            tick(2),
            1000,
            S::Stopping,
            vec!["+overdue", "+stop", "call-stop"],
        ),
        ("retired", tick(1), 5, S::Draining, vec![]),
        (
            "retired",
            tick(0),
            5,
            S::Stopping,
            vec!["+stop", "call-stop"],
        ),
        ("retired", I::Undrain, 5, S::Draining, vec![]),
        // --- stopping ---
        (
            "stopping",
            I::StopAnswered { result: Ok(()) },
            5,
            S::Stopped,
            vec!["+stopped"],
        ),
        (
            "stopping",
            I::StopAnswered {
                result: Err("gone".into()),
            },
            5,
            S::Stopped,
            vec!["+stopped"],
        ),
        (
            "stopping",
            I::Start(StartReason::Demand { held: 1 }),
            5,
            S::Stopping,
            vec![],
        ),
        ("stopping", reported(P::Running), 5, S::Stopping, vec![]),
        ("stopping", reported(P::Exited), 5, S::Stopping, vec![]),
        (
            "stopping",
            I::Stop(StopReason::Manual),
            5,
            S::Stopping,
            vec![],
        ),
        (
            "stopping-failure",
            I::StopAnswered { result: Ok(()) },
            5,
            S::Failed,
            vec!["wake"],
        ),
        // --- failed ---
        (
            "failed",
            I::Start(StartReason::Revive),
            5,
            S::Starting,
            vec!["+start", "forget-error", "call-start"],
        ),
        ("failed", tick(0), 999, S::Failed, vec![]),
        ("failed", tick(0), 1000, S::Stopped, vec!["forget-error"]),
        (
            "failed",
            reported(P::Running),
            5,
            S::Starting,
            vec!["+adopt", "probe"],
        ),
        ("failed", reported(P::Stopped), 5, S::Failed, vec![]),
        (
            "failed",
            I::Stop(StopReason::Manual),
            5,
            S::Stopped,
            vec!["+stop", "forget-error"],
        ),
        ("failed", I::SupervisorAnswers, 5, S::Failed, vec![]),
        (
            "failed-unreachable",
            I::SupervisorAnswers,
            5,
            S::Stopped,
            vec!["forget-error"],
        ),
        (
            "failed",
            I::Drain {
                why: StopReason::Idle,
                by: None,
            },
            5,
            S::Failed,
            vec![],
        ),
    ]
}

#[test]
fn every_row_of_the_table() {
    let t0 = Instant::now();
    let mut wrong = Vec::new();
    for (name, input, after_ms, state, expected) in table() {
        let before = from(name, t0);
        let shown = format!("{input:?}");
        let (next, effects) = before.step(&settings(), input, t0 + ms(after_ms));
        let got: Vec<String> = effects.iter().map(short).collect();
        if next.state() != state || got != expected {
            wrong.push(format!(
                "{name} + {shown} @{after_ms}ms: got {} {got:?}, want {state} {expected:?}",
                next.state()
            ));
        }
        if next.state() == before.state() && expected.is_empty() {
            assert_eq!(
                next.phase, before.phase,
                "{name} + {shown}: ignored inputs change nothing"
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "{} rows differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Walks a whole life through the public API, with the answers a supervisor would give.
fn run(l: &mut Lifecycle, input: Input, now: Instant) -> Vec<Effect> {
    let (next, effects) = l.step(&settings(), input, now);
    *l = next;
    effects
}

#[test]
fn a_crash_is_stopped_cooled_down_and_revived_with_growing_cool_downs() {
    let t0 = Instant::now();
    let mut l = Lifecycle::new(t0);
    run(&mut l, Input::Start(StartReason::Demand { held: 1 }), t0);
    let attempt = l.attempt();
    run(
        &mut l,
        Input::StartAnswered {
            attempt,
            result: Ok(()),
        },
        t0,
    );
    run(&mut l, reported(Process::Running), t0 + ms(1));
    run(
        &mut l,
        Input::ProbeAnswered {
            attempt,
            result: Ok(()),
        },
        t0 + ms(2),
    );
    assert_eq!(l.state(), S::Ready);
    for (crash, cool) in [(1u32, 1000u64), (2, 2000)] {
        let at = t0 + Duration::from_secs(u64::from(crash) * 100);
        run(&mut l, reported(Process::Exited), at);
        assert_eq!(l.state(), S::Stopping, "a crash is stopped first");
        run(&mut l, Input::StopAnswered { result: Ok(()) }, at);
        assert_eq!(l.failures(), crash);
        run(&mut l, Input::Tick { in_flight: 0 }, at + ms(cool - 1));
        assert_eq!(l.state(), S::Failed, "cooling down");
        run(&mut l, Input::Tick { in_flight: 0 }, at + ms(cool));
        assert_eq!(l.state(), S::Stopped);
        let effects = run(&mut l, Input::Start(StartReason::Revive), at + ms(cool));
        assert!(effects.contains(&Effect::CallStart {
            attempt: l.attempt()
        }));
        // Never asked: not a "failed" start, so the failure count stands until ready.
        let attempt = l.attempt();
        run(
            &mut l,
            Input::StartAnswered {
                attempt,
                result: Ok(()),
            },
            at + ms(cool),
        );
        // The old process's last report after the revival was issued: ignored.
        run(&mut l, reported(Process::Stopped), at + ms(cool));
        assert_eq!(l.state(), S::Starting);
        run(&mut l, reported(Process::Starting), at + ms(cool));
        run(
            &mut l,
            Input::ProbeAnswered {
                attempt,
                result: Ok(()),
            },
            at + ms(cool),
        );
        assert_eq!(l.state(), S::Ready);
        assert_eq!(l.failures(), 0, "ready resets the failures");
        // Re-arm the count for the second round: two crashes in a row.
        l.failures = crash;
    }
}

#[test]
fn an_unreachable_supervisor_is_asked_again_with_backoff_until_start_timeout() {
    let t0 = Instant::now();
    let mut l = Lifecycle::new(t0);
    run(&mut l, Input::Start(StartReason::Demand { held: 5 }), t0);
    let mut asks = 1;
    let mut now = t0;
    let mut told = None;
    // Ticks every 50 ms for 11 s: asks paced 100 ms, 200, 400, 800, then every second.
    for _ in 0..220 {
        let attempt = l.attempt();
        let effects = if matches!(
            l.phase(),
            Phase::Starting {
                step: Step::Calling { .. },
                ..
            }
        ) {
            let e = StartError::Unreachable("connection refused".into());
            run(
                &mut l,
                Input::StartAnswered {
                    attempt,
                    result: Err(e),
                },
                now,
            )
        } else {
            run(&mut l, Input::Tick { in_flight: 0 }, now)
        };
        asks += effects
            .iter()
            .filter(|e| matches!(e, Effect::CallStart { .. }))
            .count();
        if let Some(Effect::TellHeld(why)) =
            effects.iter().find(|e| matches!(e, Effect::TellHeld(_)))
        {
            told = Some((now, why.clone()));
            break;
        }
        now += ms(50);
    }
    let (at, why) = told.expect("gives up at start_timeout");
    assert!(at >= t0 + Duration::from_secs(10) && at < t0 + Duration::from_millis(10_100));
    assert!(why.contains("connection refused"), "{why}");
    assert!((10..=16).contains(&asks), "asked {asks} times in 10 s");
    assert_eq!(l.state(), S::Failed);
    // Its supervisor answering ends the cool-down at once.
    run(&mut l, Input::SupervisorAnswers, now);
    assert_eq!(l.state(), S::Stopped);
}

#[test]
fn a_retired_server_is_drained_then_stopped_and_never_started_again() {
    let t0 = Instant::now();
    let mut l = from("ready", t0);
    run(
        &mut l,
        Input::Retire {
            by: t0 + Duration::from_secs(30),
        },
        t0,
    );
    assert_eq!(l.state(), S::Draining);
    // The first look may miss a request routed just before the drain.
    run(&mut l, Input::Tick { in_flight: 0 }, t0 + ms(1));
    assert_eq!(l.state(), S::Draining);
    let effects = run(&mut l, Input::Tick { in_flight: 0 }, t0 + ms(2));
    assert!(effects.contains(&Effect::Record(Record::Stop(StopReason::Reload))));
    run(&mut l, Input::StopAnswered { result: Ok(()) }, t0 + ms(3));
    assert!(l.is_down());
    let (next, effects) = l.step(
        &settings(),
        Input::Start(StartReason::Demand { held: 1 }),
        t0,
    );
    assert_eq!((next.state(), effects.len()), (S::Stopped, 0));
}

/// Every public state change a step makes is an edge of the diagram (`transition`), whatever
/// the input: a pseudo-random walk over every input from every state.
#[test]
fn every_state_change_is_an_edge_of_the_diagram() {
    let names = [
        "stopped",
        "calling",
        "calling-seen",
        "probing",
        "retrying",
        "ready",
        "ready-unseen",
        "checking",
        "draining",
        "draining-by",
        "retired",
        "stopping",
        "stopping-failure",
        "failed",
        "failed-unreachable",
    ];
    let t0 = Instant::now();
    for name in names {
        for (_, input, after, _, _) in table() {
            let before = from(name, t0);
            let (next, _) = before.step(&settings(), input.clone(), t0 + ms(after));
            let (a, b) = (before.state(), next.state());
            if a != b {
                assert!(
                    crate::transition::Event::ALL
                        .iter()
                        .any(|&e| crate::transition::next(a, e) == Ok(b)),
                    "{name} + {input:?}: {a} -> {b} is not drawn"
                );
            }
        }
    }
}

/// `waits_on_time` lets a shell skip ticks: where it says no, a tick, however late, must
/// change nothing and ask for nothing.
#[test]
fn lifecycles_that_do_not_wait_on_time_ignore_ticks() {
    let names = [
        "stopped",
        "stopped-retired",
        "calling",
        "calling-seen",
        "calling-again",
        "probing",
        "retrying",
        "ready",
        "ready-unseen",
        "checking",
        "draining",
        "draining-by",
        "retired",
        "stopping",
        "stopping-failure",
        "failed",
        "failed-unreachable",
    ];
    let t0 = Instant::now();
    let mut skipped = 0;
    for name in names {
        let before = from(name, t0);
        if before.waits_on_time() {
            continue;
        }
        skipped += 1;
        for after in [0, 5, 1_000, 60_000, 3_600_000] {
            for in_flight in [0, 3] {
                let (next, effects) =
                    before.step(&settings(), Input::Tick { in_flight }, t0 + ms(after));
                assert_eq!(next, before, "{name} @{after}ms");
                assert!(effects.is_empty(), "{name} @{after}ms: {effects:?}");
            }
        }
    }
    assert_eq!(skipped, 5, "stopped and ready ones");
}
