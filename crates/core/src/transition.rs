//! The server state machine, written as one table (after Horust's `handle_status_change`).
//!
//! Everything that changes a server's [`ServerState`](crate::state::ServerState) (the reconciler
//! applying a policy action, a readiness probe, a supervisor poll, the data plane seeing a refused
//! connect) goes through [`next`], so a transition the diagram in `docs/architecture.md` does not
//! draw is refused in one place instead of silently corrupting the table. The shell decides what
//! to do with a refusal (usually: log it and keep the state, because the observation was stale).

use crate::state::ServerState as S;

/// Something that happened to a server, or that rouse decided to do to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A start was sent to the supervisor (stopped or failed → starting).
    StartIssued,
    /// The readiness check passed, or the supervisor reports RUNNING (starting → ready).
    Ready,
    /// Spawn error, FATAL, or `start_timeout` elapsed (starting → failed).
    StartFailed,
    /// Chosen for scale-down or idle: no new requests (ready → draining).
    Drain,
    /// Load came back before a draining server stopped (draining → ready).
    Undrain,
    /// A stop was sent to the supervisor (ready, draining, starting or failed → stopping).
    StopIssued,
    /// The supervisor reports the process gone (stopping → stopped).
    Stopped,
    /// It stopped working and nothing runs that needs stopping, e.g. a program its supervisor
    /// does not know (→ failed).
    Failed,
    /// The stop of a server that failed is through (stopping → failed, to cool down).
    FailureStopped,
    /// A failed server's cool-down is over, or its supervisor answers again (failed → stopped).
    CooledDown,
    /// Found already running at start-up, reload or later: probed before it takes requests
    /// (stopped or failed → starting).
    Adopted,
    /// Stopped behind rouse's back, e.g. `supervisorctl stop` (→ stopped).
    VanishedStopped,
}

impl Event {
    pub const ALL: [Event; 12] = [
        Event::StartIssued,
        Event::Ready,
        Event::StartFailed,
        Event::Drain,
        Event::Undrain,
        Event::StopIssued,
        Event::Stopped,
        Event::Failed,
        Event::FailureStopped,
        Event::CooledDown,
        Event::Adopted,
        Event::VanishedStopped,
    ];

    /// A stable name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::StartIssued => "start_issued",
            Event::Ready => "ready",
            Event::StartFailed => "start_failed",
            Event::Drain => "drain",
            Event::Undrain => "undrain",
            Event::StopIssued => "stop_issued",
            Event::Stopped => "stopped",
            Event::Failed => "failed",
            Event::FailureStopped => "failure_stopped",
            Event::CooledDown => "cooled_down",
            Event::Adopted => "adopted",
            Event::VanishedStopped => "vanished_stopped",
        }
    }

    /// The event as a verb, so that [`Refused`] reads as a sentence:
    /// "cannot drain a stopped server".
    fn verb(self) -> &'static str {
        match self {
            Event::StartIssued => "start",
            Event::Ready => "mark ready",
            Event::StartFailed => "fail the start of",
            Event::Drain => "drain",
            Event::Undrain => "undrain",
            Event::StopIssued => "stop",
            Event::Stopped => "mark stopped",
            Event::Failed => "mark failed",
            Event::FailureStopped => "end the failure stop of",
            Event::CooledDown => "end the cool-down of",
            Event::Adopted => "adopt",
            Event::VanishedStopped => "record a stop behind our back of",
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `event` cannot happen to a server in state `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub from: S,
    pub event: Event,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot {} a {} server", self.event.verb(), self.from)
    }
}

impl std::error::Error for Refused {}

/// For every event: the states it may happen in, and where it leads.
///
/// Each event has a single destination whatever its origin, which keeps the table one row per
/// event. Notable absences, each deliberate:
/// - `stopping` leaves only once the stop is through (`Stopped`, or `FailureStopped` when the
///   server is stopped because it failed): a stop sent to the supervisor cannot be taken back,
///   so a start or a failure report has to wait until the process is gone. This is also why a
///   server that fails goes through `stopping`: its revival can never race its stop.
/// - `Adopted` only from `stopped` or `failed`: a server rouse already tracks as up needs no
///   adoption; an adopted process is probed (`starting`) before it takes requests.
/// - `failed` is left by a (revival) start, a stop, the end of its cool-down, or the supervisor
///   reporting it stopped; never straight to `ready`, so a failed process is always restarted
///   and probed again.
/// - no self-transitions: a repeated `Drain` or `StartIssued` is a bug or a stale observation,
///   and the caller should hear about it.
const TABLE: &[(Event, &[S], S)] = &[
    (Event::StartIssued, &[S::Stopped, S::Failed], S::Starting),
    (Event::Ready, &[S::Starting], S::Ready),
    (Event::StartFailed, &[S::Starting], S::Failed),
    (Event::Drain, &[S::Ready], S::Draining),
    (Event::Undrain, &[S::Draining], S::Ready),
    (
        Event::StopIssued,
        &[S::Ready, S::Draining, S::Starting, S::Failed],
        S::Stopping,
    ),
    (Event::Stopped, &[S::Stopping], S::Stopped),
    (
        Event::Failed,
        &[S::Ready, S::Draining, S::Starting],
        S::Failed,
    ),
    (Event::FailureStopped, &[S::Stopping], S::Failed),
    (Event::CooledDown, &[S::Failed], S::Stopped),
    (Event::Adopted, &[S::Stopped, S::Failed], S::Starting),
    (
        Event::VanishedStopped,
        &[S::Ready, S::Draining, S::Starting, S::Failed],
        S::Stopped,
    ),
];

/// The state a server in `from` moves to on `event`, or `Refused` when the table has no such edge.
pub fn next(from: S, event: Event) -> Result<S, Refused> {
    TABLE
        .iter()
        .find(|(e, _, _)| *e == event)
        .filter(|(_, origins, _)| origins.contains(&from))
        .map(|&(_, _, to)| to)
        .ok_or(Refused { from, event })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event as E;

    /// Every (state, event) pair, written out: changing the table means changing this list, on
    /// purpose. `None` = refused.
    const EXPECTED: [(S, Event, Option<S>); 72] = [
        // stopped
        (S::Stopped, E::StartIssued, Some(S::Starting)),
        (S::Stopped, E::Ready, None),
        (S::Stopped, E::StartFailed, None),
        (S::Stopped, E::Drain, None),
        (S::Stopped, E::Undrain, None),
        (S::Stopped, E::StopIssued, None),
        (S::Stopped, E::Stopped, None),
        (S::Stopped, E::Failed, None),
        (S::Stopped, E::FailureStopped, None),
        (S::Stopped, E::CooledDown, None),
        (S::Stopped, E::Adopted, Some(S::Starting)),
        (S::Stopped, E::VanishedStopped, None),
        // starting
        (S::Starting, E::StartIssued, None),
        (S::Starting, E::Ready, Some(S::Ready)),
        (S::Starting, E::StartFailed, Some(S::Failed)),
        (S::Starting, E::Drain, None),
        (S::Starting, E::Undrain, None),
        (S::Starting, E::StopIssued, Some(S::Stopping)),
        (S::Starting, E::Stopped, None),
        (S::Starting, E::Failed, Some(S::Failed)),
        (S::Starting, E::FailureStopped, None),
        (S::Starting, E::CooledDown, None),
        (S::Starting, E::Adopted, None),
        (S::Starting, E::VanishedStopped, Some(S::Stopped)),
        // ready
        (S::Ready, E::StartIssued, None),
        (S::Ready, E::Ready, None),
        (S::Ready, E::StartFailed, None),
        (S::Ready, E::Drain, Some(S::Draining)),
        (S::Ready, E::Undrain, None),
        (S::Ready, E::StopIssued, Some(S::Stopping)),
        (S::Ready, E::Stopped, None),
        (S::Ready, E::Failed, Some(S::Failed)),
        (S::Ready, E::FailureStopped, None),
        (S::Ready, E::CooledDown, None),
        (S::Ready, E::Adopted, None),
        (S::Ready, E::VanishedStopped, Some(S::Stopped)),
        // draining
        (S::Draining, E::StartIssued, None),
        (S::Draining, E::Ready, None),
        (S::Draining, E::StartFailed, None),
        (S::Draining, E::Drain, None),
        (S::Draining, E::Undrain, Some(S::Ready)),
        (S::Draining, E::StopIssued, Some(S::Stopping)),
        (S::Draining, E::Stopped, None),
        (S::Draining, E::Failed, Some(S::Failed)),
        (S::Draining, E::FailureStopped, None),
        (S::Draining, E::CooledDown, None),
        (S::Draining, E::Adopted, None),
        (S::Draining, E::VanishedStopped, Some(S::Stopped)),
        // stopping
        (S::Stopping, E::StartIssued, None),
        (S::Stopping, E::Ready, None),
        (S::Stopping, E::StartFailed, None),
        (S::Stopping, E::Drain, None),
        (S::Stopping, E::Undrain, None),
        (S::Stopping, E::StopIssued, None),
        (S::Stopping, E::Stopped, Some(S::Stopped)),
        (S::Stopping, E::Failed, None),
        (S::Stopping, E::FailureStopped, Some(S::Failed)),
        (S::Stopping, E::CooledDown, None),
        (S::Stopping, E::Adopted, None),
        (S::Stopping, E::VanishedStopped, None),
        // failed
        (S::Failed, E::StartIssued, Some(S::Starting)),
        (S::Failed, E::Ready, None),
        (S::Failed, E::StartFailed, None),
        (S::Failed, E::Drain, None),
        (S::Failed, E::Undrain, None),
        (S::Failed, E::StopIssued, Some(S::Stopping)),
        (S::Failed, E::Stopped, None),
        (S::Failed, E::Failed, None),
        (S::Failed, E::FailureStopped, None),
        (S::Failed, E::CooledDown, Some(S::Stopped)),
        (S::Failed, E::Adopted, Some(S::Starting)),
        (S::Failed, E::VanishedStopped, Some(S::Stopped)),
    ];

    #[test]
    fn every_state_event_pair_is_as_listed() {
        for (from, event, expected) in EXPECTED {
            let got = next(from, event);
            match expected {
                Some(to) => assert_eq!(got, Ok(to), "{from} + {event}"),
                None => assert_eq!(got, Err(Refused { from, event }), "{from} + {event}"),
            }
        }
    }

    #[test]
    fn expected_list_covers_each_pair_exactly_once() {
        for from in S::ALL {
            for event in Event::ALL {
                let n = EXPECTED
                    .iter()
                    .filter(|(f, e, _)| *f == from && *e == event)
                    .count();
                assert_eq!(n, 1, "{from} + {event} listed {n} times");
            }
        }
    }

    #[test]
    fn table_has_one_row_per_event() {
        for event in Event::ALL {
            let rows = TABLE.iter().filter(|(e, _, _)| *e == event).count();
            assert_eq!(rows, 1, "{event}");
        }
        assert_eq!(TABLE.len(), Event::ALL.len());
    }

    #[test]
    fn refusal_reads_as_a_sentence() {
        let r = next(S::Stopped, E::Drain).unwrap_err();
        assert_eq!(r.to_string(), "cannot drain a stopped server");
        let r = next(S::Stopping, E::StartIssued).unwrap_err();
        assert_eq!(r.to_string(), "cannot start a stopping server");
        let r = next(S::Ready, E::Adopted).unwrap_err();
        assert_eq!(r.to_string(), "cannot adopt a ready server");
        let boxed: Box<dyn std::error::Error> = Box::new(r);
        assert_eq!(boxed.to_string(), "cannot adopt a ready server");
    }

    #[test]
    fn event_names_are_distinct_snake_case() {
        let mut names: Vec<_> = Event::ALL.iter().map(|e| e.as_str()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Event::ALL.len());
        assert_eq!(E::FailureStopped.to_string(), "failure_stopped");
    }
}
