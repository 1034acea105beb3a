//! Each server's states over the window, from what rouse already keeps: the journal's
//! lifecycle events for the past, and the table's current state and since when for the end.

use std::time::{Duration, SystemTime};

use rouse_state::Entry;
use serde::{Deserialize, Serialize};

/// A stretch of time a server spent in one state; it lasts until the next one's `from`, the
/// last one until now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// A server state (`stopped`, `starting`, `ready`, `draining`, `stopping`, `failed`), or
    /// `unknown` before the oldest event the journal still holds.
    pub state: String,
    pub from_unix_ms: u64,
}

/// The state a journal event leaves a server in; `None` for one that says nothing of it.
fn state_after(what: &str) -> Option<&'static str> {
    Some(match what {
        "start" | "start-retry" => "starting",
        "ready" | "adopt" => "ready",
        "start-failed" | "failed" => "failed",
        "drain" => "draining",
        "stop" => "stopping",
        "stopped" => "stopped",
        _ => return None,
    })
}

pub fn unix_ms(t: SystemTime) -> u64 {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The segments of one server from `from` on. `events` are its journal entries, oldest first;
/// `before` is its state ahead of the first of them (`None`: not known, the journal having let
/// older ones go); it has been `current` since `current_since`, which wins over the journal.
pub fn timeline(
    events: &[&Entry],
    before: Option<&'static str>,
    current: &str,
    current_since: SystemTime,
    from: SystemTime,
) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut push = |state: &str, at: SystemTime| {
        let at = unix_ms(at.max(from));
        match out.last_mut() {
            Some(last) if last.state == state => {}
            Some(last) if last.from_unix_ms == at => last.state = state.to_owned(),
            _ => out.push(Segment {
                state: state.to_owned(),
                from_unix_ms: at,
            }),
        }
    };
    if current_since > from {
        push(before.unwrap_or("unknown"), from);
        for e in events.iter().filter(|e| e.at < current_since) {
            if let Some(state) = state_after(e.what) {
                push(state, e.at);
            }
        }
    }
    push(current, current_since);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at_s: u64, what: &'static str) -> Entry {
        Entry {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(at_s),
            upstream: "app".into(),
            server: 0,
            address: String::new(),
            what,
            detail: String::new(),
        }
    }

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn states(v: &[Segment]) -> Vec<(&str, u64)> {
        v.iter()
            .map(|s| (s.state.as_str(), s.from_unix_ms / 1000))
            .collect()
    }

    #[test]
    fn events_make_the_past_and_the_table_the_present() {
        let evs = [
            entry(50, "start"),
            entry(110, "start"),
            entry(111, "ready"),
            entry(200, "drain"),
            entry(201, "stop"),
            entry(202, "stopped"),
        ];
        let refs: Vec<&Entry> = evs.iter().collect();
        // Stopped since 202, as the journal says; the window starts at 100.
        let tl = timeline(&refs, Some("stopped"), "stopped", t(202), t(100));
        assert_eq!(
            states(&tl),
            [
                ("starting", 100),
                ("ready", 111),
                ("draining", 200),
                ("stopping", 201),
                ("stopped", 202)
            ]
        );
    }

    #[test]
    fn the_current_state_wins_over_a_guess_from_the_journal() {
        // start-failed reads as failed; the table says it has been stopped since 130.
        let evs = [entry(120, "start"), entry(121, "start-failed")];
        let refs: Vec<&Entry> = evs.iter().collect();
        let tl = timeline(&refs, None, "stopped", t(130), t(100));
        assert_eq!(
            states(&tl),
            [
                ("unknown", 100),
                ("starting", 120),
                ("failed", 121),
                ("stopped", 130)
            ]
        );
    }

    #[test]
    fn a_server_unchanged_for_the_whole_window_is_one_segment() {
        let tl = timeline(&[], None, "ready", t(10), t(100));
        assert_eq!(states(&tl), [("ready", 100)]);
    }
}
