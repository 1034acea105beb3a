//! An upstream: its config, its servers and its balancer.

use std::sync::Arc;

use rouse_config::{Balance, SupervisorRef, UpstreamConfig};
use rouse_core::backoff::Backoff;
use rouse_core::balance::{Balancer, Candidate, CandidateSet, Kind};
use rouse_core::state::ServerState;
use tokio::time::Instant;

use crate::server::Server;

#[derive(Debug)]
pub struct Upstream {
    pub config: UpstreamConfig,
    pub servers: Vec<Arc<Server>>,
    pub balancer: Balancer,
    pub backoff: Backoff,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Upstream {
        // Static servers are assumed up until a connect proves otherwise; supervised ones start
        // stopped until their supervisor says they run.
        let initial = match config.supervisor {
            SupervisorRef::Static => ServerState::Ready,
            _ => ServerState::Stopped,
        };
        let servers = config
            .servers
            .iter()
            .map(|s| Arc::new(Server::new(s.clone(), initial)))
            .collect();
        let balancer = Balancer::new(match config.balance {
            Balance::Fair => Kind::Fair,
            Balance::RoundRobin => Kind::RoundRobin,
        });
        let backoff = Backoff {
            base: config.fail_timeout,
            max: config.fail_timeout_max,
        };
        Upstream {
            config,
            servers,
            balancer,
            backoff,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn is_static(&self) -> bool {
        self.config.supervisor == SupervisorRef::Static
    }

    /// Chooses a server for a request, skipping `tried`.
    pub fn pick(&self, now: Instant, tried: &[usize]) -> Option<&Arc<Server>> {
        let set = LiveSet {
            servers: &self.servers,
            now,
        };
        self.balancer.pick(&set, tried).map(|i| &self.servers[i])
    }

    /// When every ready server is inside a passive-failure window, the one whose window ends
    /// first: trying it beats refusing the request outright, since it may well be back.
    pub fn least_recently_failed(&self, tried: &[usize]) -> Option<&Arc<Server>> {
        self.servers
            .iter()
            .filter(|s| s.state() == ServerState::Ready && !tried.contains(&s.index()))
            .min_by_key(|s| s.failed_until())
    }
}

struct LiveSet<'a> {
    servers: &'a [Arc<Server>],
    now: Instant,
}

impl CandidateSet for LiveSet<'_> {
    fn len(&self) -> usize {
        self.servers.len()
    }

    fn candidate(&self, index: usize) -> Candidate {
        let s = &self.servers[index];
        Candidate {
            eligible: s.eligible(self.now),
            in_flight: s.in_flight(),
            weight: s.config.weight,
        }
    }
}
