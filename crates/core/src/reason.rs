//! Why a server is started: said in the journal, the log and `/status`, so an operator can tell
//! a burst from a floor from a hand.

/// Why a start was issued (or a running process taken on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartReason {
    /// Requests are held and nothing is ready or starting.
    Demand { held: usize },
    /// The load needs more servers than are up: `in_flight` (held requests included) over
    /// `ready` servers of `target` each.
    Load {
        in_flight: u64,
        ready: usize,
        target: u32,
    },
    /// `min_servers` keeps it up.
    MinServers,
    /// An operator asked (admin API, dashboard, `rouse start`).
    Manual,
    /// Every server had failed and requests wait: the first is brought back, with backoff.
    Revive,
    /// Found already running (rouse restarted, or someone started it by hand).
    Adopted,
}

impl StartReason {
    /// The reason's kind, for metrics labels and JSON.
    pub fn kind(self) -> &'static str {
        match self {
            StartReason::Demand { .. } => "demand",
            StartReason::Load { .. } => "load",
            StartReason::MinServers => "min_servers",
            StartReason::Manual => "manual",
            StartReason::Revive => "revive",
            StartReason::Adopted => "adopted",
        }
    }
}

impl std::fmt::Display for StartReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            StartReason::Demand { held } => write!(f, "demand: {held} held"),
            StartReason::Load {
                in_flight,
                ready,
                target,
            } => write!(f, "load: {in_flight} in flight > {ready} x {target}"),
            other => f.write_str(other.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_the_operator_sees_them() {
        assert_eq!(
            StartReason::Demand { held: 38 }.to_string(),
            "demand: 38 held"
        );
        let load = StartReason::Load {
            in_flight: 38,
            ready: 3,
            target: 4,
        };
        assert_eq!(load.to_string(), "load: 38 in flight > 3 x 4");
        assert_eq!(load.kind(), "load");
        assert_eq!(StartReason::MinServers.to_string(), "min_servers");
        assert_eq!(StartReason::Adopted.to_string(), "adopted");
    }
}
