//! All upstreams of one configuration generation.

use std::sync::Arc;

use std::collections::HashSet;
use std::time::Duration;

use rouse_config::{Config, SupervisorRef, UpstreamConfig};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::server::Server;
use crate::upstream::Upstream;
use rouse_core::state::ServerState;

#[derive(Debug)]
pub struct Table {
    pub upstreams: Vec<Arc<Upstream>>,
    /// The data plane pokes this when a request starts waiting, so the control plane decides
    /// at once instead of at its next tick. Shared by every generation of the table, so a
    /// reload does not disconnect the planes.
    pub demand: Arc<Notify>,
    pub epoch: Instant,
    /// Like `demand`, shared by every generation: counters survive reloads.
    pub metrics: Arc<Metrics>,
    pub journal: Arc<Journal>,
    /// How long a server that left the configuration may take to finish what is in flight on
    /// it (WebSockets included) before it is stopped anyway: `[proxy] shutdown_timeout`, the
    /// same bound a SIGTERM gives.
    pub retire_within: Duration,
}

impl Table {
    pub fn new(config: &Config) -> Table {
        let epoch = Instant::now();
        Table {
            upstreams: config
                .upstreams
                .iter()
                .map(|u| Arc::new(Upstream::new(u.clone(), epoch)))
                .collect(),
            demand: Arc::new(Notify::new()),
            epoch,
            metrics: Arc::default(),
            journal: Arc::default(),
            retire_within: config.proxy.shutdown_timeout,
        }
    }

    /// The table for a reloaded config. Static upstreams are rebuilt (their pools are kept by
    /// the proxy). A supervised upstream whose config is unchanged is carried over as it is; a
    /// changed one becomes a new upstream that keeps every server whose config is the same but
    /// for position, weight and `max_conns` ([`Server::is_same`]): the same object, so its process, state,
    /// in-flight requests and counters go on. Servers not kept are the control plane's to drain
    /// and stop.
    pub fn reloaded(&self, config: &Config) -> Table {
        let upstreams = config
            .upstreams
            .iter()
            .map(|c| match self.upstream(&c.name) {
                Some(old) if c.supervisor != SupervisorRef::Static && old.config == *c => {
                    Arc::clone(old)
                }
                Some(old) if c.supervisor != SupervisorRef::Static => {
                    Arc::new(self.succeeding(c, old))
                }
                _ => Arc::new(Upstream::new(c.clone(), self.epoch)),
            })
            .collect();
        Table {
            upstreams,
            demand: Arc::clone(&self.demand),
            epoch: self.epoch,
            metrics: Arc::clone(&self.metrics),
            journal: Arc::clone(&self.journal),
            retire_within: config.proxy.shutdown_timeout,
        }
    }

    /// The new generation of the supervised upstream `old`, changed to `c`.
    fn succeeding(&self, c: &UpstreamConfig, old: &Upstream) -> Upstream {
        let mut taken = vec![false; old.servers.len()];
        let mut kept = Vec::with_capacity(c.servers.len());
        for sc in &c.servers {
            let found =
                (0..old.servers.len()).find(|&at| !taken[at] && old.servers[at].is_same(sc));
            if let Some(at) = found {
                taken[at] = true;
            }
            kept.push(found);
        }
        // A kept embedded server keeps its program name, which may be the name the new config
        // derives for another server: new servers get names no server of the old generation
        // has, so a name never means two processes (one of them perhaps still draining).
        let mut names: HashSet<String> = old
            .servers
            .iter()
            .map(|s| s.config.program.clone())
            .collect();
        let servers = c
            .servers
            .iter()
            .zip(kept)
            .map(|(sc, kept)| match kept {
                Some(at) => {
                    let s = &old.servers[at];
                    s.relocate(sc.index, sc.weight, sc.max_conns);
                    Arc::clone(s)
                }
                None => {
                    let mut sc = sc.clone();
                    if sc.supervisor == SupervisorRef::Embedded && names.contains(&sc.program) {
                        sc.program = (0..)
                            .map(|k| format!("{}{k}", c.supervisord_name))
                            .find(|n| !names.contains(n))
                            .unwrap_or_default();
                    }
                    names.insert(sc.program.clone());
                    Arc::new(Server::new(
                        sc,
                        ServerState::Stopped,
                        self.epoch,
                        Arc::clone(old.waiters()),
                    ))
                }
            })
            .collect();
        Upstream::succeeding(c.clone(), servers, old, self.epoch)
    }

    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        rouse_config::parse("t.toml", text).expect("valid")
    }

    const STATIC: &str = "[[upstream]]\nname = \"s\"\nsupervisor = \"none\"\n\
                          [[upstream.server]]\naddress = \"127.0.0.1:9001\"\n";
    const EMBEDDED: &str = "[[upstream]]\nname = \"e\"\nhosts = [\"e.example\"]\n\
                            [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"x\"\n";

    #[tokio::test]
    async fn unchanged_supervised_upstreams_are_carried_over_and_static_ones_rebuilt() {
        let old = Table::new(&config(&format!("{STATIC}{EMBEDDED}")));
        let changed_static = STATIC.replace("9001", "9002");
        let new = old.reloaded(&config(&format!("{changed_static}{EMBEDDED}")));
        assert!(
            Arc::ptr_eq(&new.upstreams[1], &old.upstreams[1]),
            "same servers, same states"
        );
        assert_eq!(new.upstreams[0].servers[0].address().port(), 9002);
        assert!(Arc::ptr_eq(&new.demand, &old.demand));
    }

    const TWO: &str = "[[upstream]]\nname = \"e\"\n\
                       [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"x\"\n\
                       [[upstream.server]]\naddress = \"127.0.0.1:9102\"\ncommand = \"x\"\n";

    #[tokio::test]
    async fn a_changed_upstream_keeps_the_servers_that_stay_the_same() {
        let old = Table::new(&config(TWO));
        old.upstreams[0].servers[1].set_state(ServerState::Ready, Instant::now());
        // e0 (:9101) is removed, e1 (:9102) moves to position 0 with a new weight, :9103 is
        // new, and may not be called e1 (the config's name for position 1).
        let new_text = "[[upstream]]\nname = \"e\"\nmax_servers = 2\n\
                        [[upstream.server]]\naddress = \"127.0.0.1:9102\"\ncommand = \"x\"\n\
                        weight = 3\n\
                        [[upstream.server]]\naddress = \"127.0.0.1:9103\"\ncommand = \"x\"\n";
        let new = old.reloaded(&config(new_text));
        let up = &new.upstreams[0];
        assert!(!Arc::ptr_eq(up, &old.upstreams[0]));
        assert!(Arc::ptr_eq(&up.servers[0], &old.upstreams[0].servers[1]));
        assert_eq!(up.servers[0].state(), ServerState::Ready);
        assert_eq!((up.servers[0].index(), up.servers[0].weight()), (0, 3));
        assert_eq!(up.servers[0].config.program, "e1");
        assert_eq!(up.servers[1].config.program, "e2");
        assert_eq!(up.servers[1].state(), ServerState::Stopped);
    }

    #[tokio::test]
    async fn a_changed_max_conns_keeps_the_server_and_applies_at_once() {
        let old = Table::new(&config(TWO));
        old.upstreams[0].servers[0].set_state(ServerState::Ready, Instant::now());
        let new = old.reloaded(&config(&TWO.replacen(
            "command = \"x\"\n",
            "command = \"x\"\nmax_conns = 4\n",
            1,
        )));
        let (up, was) = (&new.upstreams[0], &old.upstreams[0]);
        assert!(Arc::ptr_eq(&up.servers[0], &was.servers[0]), "same process");
        assert_eq!(up.servers[0].max_conns(), 4);
        assert_eq!(up.servers[0].state(), ServerState::Ready);
        // Requests ending on kept servers wake the requests held for the new generation.
        assert!(Arc::ptr_eq(up.waiters(), was.waiters()));
    }

    #[tokio::test]
    async fn a_server_whose_command_changed_is_a_new_server() {
        let old = Table::new(&config(TWO));
        let new = old.reloaded(&config(&TWO.replacen(
            "command = \"x\"",
            "command = \"y\"",
            1,
        )));
        let (up, was) = (&new.upstreams[0], &old.upstreams[0]);
        assert!(!Arc::ptr_eq(&up.servers[0], &was.servers[0]));
        assert!(Arc::ptr_eq(&up.servers[1], &was.servers[1]));
    }
}
