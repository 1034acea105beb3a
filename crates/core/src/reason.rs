//! Why a server is started: said in the journal, the log and `/status`, so an operator can tell
//! a burst from a floor from a hand.

use crate::policy::{ScaleSettings, UpstreamView};
use crate::state::ServerState;

/// Why a start was issued (or a running process taken on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartReason {
    /// Requests are held and nothing is ready or starting.
    Demand { held: usize },
    /// The load needs more servers than are up: `in_flight` (held requests included) over
    /// `up` servers (ready or starting) of `target` each.
    Load {
        in_flight: u64,
        up: usize,
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

impl StartReason {
    /// Why the policy, looking at `view`, started server `index`: the first rule of the policy
    /// that starts servers which holds in the view (see `crate::policy`).
    pub fn explain(view: &UpstreamView, settings: &ScaleSettings, index: usize) -> StartReason {
        let count = |state| view.servers.iter().filter(|s| s.state == state).count();
        let up = count(ServerState::Ready) + count(ServerState::Starting);
        let was_failed = view
            .servers
            .iter()
            .any(|s| s.index == index && s.state == ServerState::Failed);
        if was_failed {
            StartReason::Revive
        } else if up == 0 && view.held > 0 {
            StartReason::Demand { held: view.held }
        } else if up < settings.min_servers {
            StartReason::MinServers
        } else {
            let in_flight: u64 = view.servers.iter().map(|s| u64::from(s.in_flight)).sum();
            StartReason::Load {
                in_flight: in_flight.saturating_add(view.held as u64),
                up,
                target: settings.target_in_flight.max(1),
            }
        }
    }
}

impl std::fmt::Display for StartReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            StartReason::Demand { held } => write!(f, "demand: {held} held"),
            StartReason::Load {
                in_flight,
                up,
                target,
            } => write!(f, "load: {in_flight} in flight > {up} x {target}"),
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
            up: 3,
            target: 4,
        };
        assert_eq!(load.to_string(), "load: 38 in flight > 3 x 4");
        assert_eq!(load.kind(), "load");
        assert_eq!(StartReason::MinServers.to_string(), "min_servers");
        assert_eq!(StartReason::Adopted.to_string(), "adopted");
    }

    #[test]
    fn the_reason_is_the_first_starting_rule_that_holds() {
        use crate::backoff::Backoff;
        use crate::policy::ServerView;
        use std::time::Duration;
        use tokio::time::Instant;
        let now = Instant::now();
        let server = |index, state, in_flight| ServerView {
            index,
            state,
            in_flight,
            since: now,
            last_active: now,
        };
        let settings = ScaleSettings {
            min_servers: 1,
            max_servers: 3,
            target_in_flight: 2,
            target_rps: None,
            idle_timeout: Duration::from_secs(60),
            scale_down_after: Duration::from_secs(30),
            revive_backoff: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(8),
            },
        };
        let explain = |servers: &[ServerView], held, i| {
            let view = UpstreamView {
                servers,
                held,
                rps: 0.0,
                now,
            };
            StartReason::explain(&view, &settings, i)
        };
        use ServerState as S;
        let cold = [server(0, S::Stopped, 0), server(1, S::Stopped, 0)];
        assert_eq!(explain(&cold, 3, 0), StartReason::Demand { held: 3 });
        assert_eq!(explain(&cold, 0, 0), StartReason::MinServers);
        let failed = [server(0, S::Failed, 0), server(1, S::Stopped, 0)];
        assert_eq!(explain(&failed, 3, 0), StartReason::Revive);
        let busy = [
            server(0, S::Ready, 4),
            server(1, S::Starting, 0),
            server(2, S::Stopped, 0),
        ];
        assert_eq!(
            explain(&busy, 1, 2),
            StartReason::Load {
                in_flight: 5,
                up: 2,
                target: 2
            }
        );
    }
}
