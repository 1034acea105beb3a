//! All upstreams of one configuration generation.

use std::sync::Arc;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rouse_config::{Config, SupervisorRef, UpstreamConfig};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::changes::{Changes, Placement, Reloaded, ServerChange, UpstreamChange};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::server::Server;
use crate::upstream::Upstream;
use rouse_core::state::ServerState;

#[derive(Debug)]
pub struct Table {
    pub upstreams: Vec<Arc<Upstream>>,
    /// The data plane pokes this when a request starts waiting, or when it could not connect
    /// to a server, so the control plane decides at once instead of at its next tick. Shared by every generation of the table, so a
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
        let demand = Arc::new(Notify::new());
        Table {
            upstreams: config
                .upstreams
                .iter()
                .map(|u| Arc::new(Upstream::new(u.clone(), epoch, &demand)))
                .collect(),
            demand,
            epoch,
            metrics: Arc::default(),
            journal: Arc::default(),
            retire_within: config.proxy.shutdown_timeout,
        }
    }

    /// The table for a reloaded config, and what changed ([`Changes`]). An upstream whose
    /// config is unchanged is carried over as it is; a changed one becomes a new upstream that
    /// keeps every server whose config is the same but for position, weight and `max_conns`
    /// ([`Server::is_same`]): the same object, so its process (if rouse runs one), state,
    /// passive failures, in-flight requests and counters go on. Servers not kept are the
    /// control plane's to drain and stop; a new server on the address (or supervisord program)
    /// of one not kept is said to replace it.
    pub fn reloaded(&self, config: &Config) -> Reloaded {
        let mut changes = Vec::with_capacity(config.upstreams.len());
        // By name, not a scan per upstream: 1,000 upstreams made that a million comparisons.
        let old: HashMap<&str, &Arc<Upstream>> =
            self.upstreams.iter().map(|u| (u.name(), u)).collect();
        let new: HashSet<&str> = config.upstreams.iter().map(|c| c.name.as_str()).collect();
        let upstreams = config
            .upstreams
            .iter()
            .map(|c| match old.get(c.name.as_str()).copied() {
                Some(old) if old.config == *c => {
                    changes.push(UpstreamChange::Kept(Arc::clone(old)));
                    Arc::clone(old)
                }
                Some(old) => {
                    let (new, servers) = self.succeeding(c, old);
                    let new = Arc::new(new);
                    changes.push(UpstreamChange::Changed {
                        old: Arc::clone(old),
                        new: Arc::clone(&new),
                        servers,
                    });
                    new
                }
                None => {
                    let new = Arc::new(Upstream::new(c.clone(), self.epoch, &self.demand));
                    changes.push(UpstreamChange::Added(Arc::clone(&new)));
                    new
                }
            })
            .collect();
        changes.extend(
            self.upstreams
                .iter()
                .filter(|old| !new.contains(old.name()))
                .map(|old| UpstreamChange::Removed(Arc::clone(old))),
        );
        Reloaded {
            table: Table {
                upstreams,
                demand: Arc::clone(&self.demand),
                epoch: self.epoch,
                metrics: Arc::clone(&self.metrics),
                journal: Arc::clone(&self.journal),
                retire_within: config.proxy.shutdown_timeout,
            },
            changes: Changes { upstreams: changes },
        }
    }

    /// The new generation of upstream `old`, changed to `c`, and what became of its servers.
    fn succeeding(&self, c: &UpstreamConfig, old: &Upstream) -> (Upstream, Vec<ServerChange>) {
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
        // What a new server replaces: the old one on its address, else the one running its
        // supervisord program (embedded names are rouse's own, see `Server::is_same`). Only
        // for reporting and the caller's bookkeeping: either way the old one retires.
        let mut replaces = Vec::with_capacity(c.servers.len());
        for (sc, kept) in c.servers.iter().zip(&kept) {
            let found = kept.is_none().then(|| {
                let free = |at: &usize| !taken[*at];
                (0..old.servers.len())
                    .filter(free)
                    .find(|&at| *old.servers[at].address() == sc.address)
                    .or_else(|| {
                        (0..old.servers.len()).filter(free).find(|&at| {
                            let o = &old.servers[at].config;
                            matches!(o.supervisor, SupervisorRef::Supervisord(_))
                                && o.supervisor == sc.supervisor
                                && o.program == sc.program
                        })
                    })
            });
            let found = found.flatten();
            if let Some(at) = found {
                taken[at] = true;
            }
            replaces.push(found);
        }
        // A kept embedded server keeps its program name, which may be the name the new config
        // derives for another server: new servers get names no server of the old generation
        // has, so a name never means two processes (one of them perhaps still draining).
        let mut names: HashSet<String> = old
            .servers
            .iter()
            .map(|s| s.config.program.clone())
            .collect();
        // Static servers are assumed up until a connect proves otherwise (as in `Upstream::new`).
        let initial = match c.supervisor {
            SupervisorRef::Static => ServerState::Ready,
            _ => ServerState::Stopped,
        };
        let mut changes = Vec::with_capacity(c.servers.len());
        let servers = c
            .servers
            .iter()
            .zip(kept.into_iter().zip(replaces))
            .map(|(sc, (kept, replaces))| match kept {
                Some(at) => {
                    let s = &old.servers[at];
                    let was = Placement {
                        index: s.index(),
                        weight: s.weight(),
                        max_conns: s.max_conns(),
                    };
                    s.relocate(sc.index, sc.weight, sc.max_conns);
                    changes.push(ServerChange::Kept {
                        server: Arc::clone(s),
                        was,
                    });
                    Arc::clone(s)
                }
                None => {
                    let mut sc = sc.clone();
                    if sc.supervisor == SupervisorRef::Embedded && names.contains(&sc.program) {
                        Arc::make_mut(&mut sc).program = (0..)
                            .map(|k| format!("{}{k}", c.supervisord_name))
                            .find(|n| !names.contains(n))
                            .unwrap_or_default();
                    }
                    names.insert(sc.program.clone());
                    let new = Arc::new(Server::new(
                        sc,
                        initial,
                        self.epoch,
                        Arc::clone(old.waiters()),
                        Arc::clone(&self.demand),
                    ));
                    changes.push(match replaces {
                        Some(at) => ServerChange::Replaced {
                            old: Arc::clone(&old.servers[at]),
                            new: Arc::clone(&new),
                            why: old.servers[at].differences(&new.config),
                        },
                        None => ServerChange::Added(Arc::clone(&new)),
                    });
                    new
                }
            })
            .collect();
        changes.extend(
            old.servers
                .iter()
                .zip(&taken)
                .filter(|(_, taken)| !**taken)
                .map(|(s, _)| ServerChange::Removed(Arc::clone(s))),
        );
        (
            Upstream::succeeding(c.clone(), servers, old, self.epoch, &self.demand),
            changes,
        )
    }

    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerId;

    fn config(text: &str) -> Config {
        rouse_config::parse("t.toml", text).expect("valid")
    }

    const STATIC: &str = "[[upstream]]\nname = \"s\"\nsupervisor = \"none\"\n\
                          [[upstream.server]]\naddress = \"127.0.0.1:9001\"\n";
    const EMBEDDED: &str = "[[upstream]]\nname = \"e\"\nhosts = [\"e.example\"]\n\
                            [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"x\"\n";

    #[tokio::test]
    async fn unchanged_upstreams_are_carried_over_and_a_static_server_on_a_new_address_is_new() {
        let old = Table::new(&config(&format!("{STATIC}{EMBEDDED}")));
        let changed_static = STATIC.replace("9001", "9002");
        let new = old
            .reloaded(&config(&format!("{changed_static}{EMBEDDED}")))
            .table;
        assert!(
            Arc::ptr_eq(&new.upstreams[1], &old.upstreams[1]),
            "same servers, same states"
        );
        assert_eq!(new.upstreams[0].servers[0].address().port(), Some(9002));
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
        let new = old.reloaded(&config(new_text)).table;
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
        let new = old
            .reloaded(&config(&TWO.replacen(
                "command = \"x\"\n",
                "command = \"x\"\nmax_conns = 4\n",
                1,
            )))
            .table;
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
        let new = old
            .reloaded(&config(&TWO.replacen(
                "command = \"x\"",
                "command = \"y\"",
                1,
            )))
            .table;
        let (up, was) = (&new.upstreams[0], &old.upstreams[0]);
        assert!(!Arc::ptr_eq(&up.servers[0], &was.servers[0]));
        assert!(Arc::ptr_eq(&up.servers[1], &was.servers[1]));
    }

    fn ids(servers: impl IntoIterator<Item = ServerId>) -> Vec<ServerId> {
        let mut ids: Vec<ServerId> = servers.into_iter().collect();
        ids.sort();
        ids
    }

    const THREE: &str = "[[upstream]]\nname = \"app\"\n\
                         [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"x\"\n\
                         [[upstream.server]]\naddress = \"127.0.0.1:9102\"\ncommand = \"x\"\n\
                         [[upstream.server]]\naddress = \"127.0.0.1:9104\"\ncommand = \"x\"\n";

    /// One reload of one upstream with a server of each kind: :9102 kept (re-weighted), :9101
    /// replaced (new command), :9103 added, :9104 removed.
    #[tokio::test]
    async fn the_changes_say_what_became_of_each_server() {
        let old = Table::new(&config(THREE));
        let was = &old.upstreams[0];
        let new_text = "[[upstream]]\nname = \"app\"\n\
                        [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"y\"\n\
                        [[upstream.server]]\naddress = \"127.0.0.1:9102\"\ncommand = \"x\"\n\
                        weight = 2\n\
                        [[upstream.server]]\naddress = \"127.0.0.1:9103\"\ncommand = \"x\"\n";
        let Reloaded { table, changes } = old.reloaded(&config(new_text));
        let up = &table.upstreams[0];
        let [
            UpstreamChange::Changed {
                old: o,
                new: n,
                servers,
            },
        ] = &changes.upstreams[..]
        else {
            panic!("{changes:?}");
        };
        assert!(Arc::ptr_eq(o, was) && Arc::ptr_eq(n, up));
        match &servers[..] {
            [
                ServerChange::Replaced {
                    old: replaced,
                    new: by,
                    why,
                },
                ServerChange::Kept {
                    server: kept,
                    was: placement,
                },
                ServerChange::Added(added),
                ServerChange::Removed(removed),
            ] => {
                assert!(Arc::ptr_eq(replaced, &was.servers[0]) && Arc::ptr_eq(by, &up.servers[0]));
                assert_eq!(why, &["command"]);
                assert!(Arc::ptr_eq(kept, &was.servers[1]) && Arc::ptr_eq(kept, &up.servers[1]));
                assert_eq!(
                    *placement,
                    Placement {
                        index: 1,
                        weight: 1,
                        max_conns: 0
                    }
                );
                assert!(Arc::ptr_eq(added, &up.servers[2]));
                assert!(Arc::ptr_eq(removed, &was.servers[2]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ids(changes.kept_ids()), [was.servers[1].id()]);
        assert_eq!(
            ids(changes.retiring_servers().map(|s| s.id())),
            ids([was.servers[0].id(), was.servers[2].id()])
        );
        assert_eq!(changes.retiring_upstreams().count(), 1);
        assert_eq!(
            changes.to_string(),
            "upstream \"app\": changed; servers kept 1 (127.0.0.1:9102: weight 1 -> 2), \
             added 1 (127.0.0.1:9103), replaced 1 (127.0.0.1:9101: command changed), \
             removed 1 (127.0.0.1:9104)"
        );
    }

    #[tokio::test]
    async fn upstreams_added_kept_and_removed() {
        let other = EMBEDDED
            .replace("\"e\"", "\"f\"")
            .replace("e.example", "f.example")
            .replace("9101", "9201");
        let old = Table::new(&config(&format!("{EMBEDDED}{STATIC}")));
        let Reloaded { table, changes } = old.reloaded(&config(&format!("{EMBEDDED}{other}")));
        let kinds: Vec<(&str, &str)> = changes
            .upstreams
            .iter()
            .map(|u| {
                let kind = match u {
                    UpstreamChange::Added(_) => "added",
                    UpstreamChange::Kept(_) => "kept",
                    UpstreamChange::Changed { .. } => "changed",
                    UpstreamChange::Removed(_) => "removed",
                };
                (u.name(), kind)
            })
            .collect();
        assert_eq!(kinds, [("e", "kept"), ("f", "added"), ("s", "removed")]);
        assert!(Arc::ptr_eq(&table.upstreams[0], &old.upstreams[0]));
        assert_eq!(ids(changes.kept_ids()), [old.upstreams[0].servers[0].id()]);
        assert_eq!(
            ids(changes.retiring_servers().map(|s| s.id())),
            [old.upstreams[1].servers[0].id()]
        );
        let retiring: Vec<&str> = changes.retiring_upstreams().map(|u| u.name()).collect();
        assert_eq!(retiring, ["s"]);
        assert_eq!(
            changes.to_string(),
            "upstream \"f\": added (1 server)\nupstream \"s\": removed (1 server)"
        );

        let removed_supervised = table.reloaded(&config(STATIC)).changes;
        assert_eq!(
            removed_supervised.to_string(),
            "upstream \"s\": added (1 server)\n\
             upstream \"e\": removed (1 server, draining)\n\
             upstream \"f\": removed (1 server, draining)"
        );
    }

    #[tokio::test]
    async fn the_same_file_changes_nothing() {
        let old = Table::new(&config(&format!("{STATIC}{EMBEDDED}")));
        let Reloaded { table, changes } = old.reloaded(&config(&format!("{STATIC}{EMBEDDED}")));
        assert!(changes.is_empty());
        assert_eq!(changes.to_string(), "no changes");
        assert_eq!(changes.retiring_servers().count(), 0);
        assert_eq!(changes.retiring_upstreams().count(), 0);
        for (new, was) in table.upstreams.iter().zip(&old.upstreams) {
            assert!(Arc::ptr_eq(new, was), "{}", new.name());
        }
    }

    /// A static server is what its address says it is: kept across a reload like a supervised
    /// one, so its passive-failure window and counters survive; a new one is assumed up.
    #[tokio::test]
    async fn static_servers_with_the_same_config_are_kept() {
        let old = Table::new(&config(STATIC));
        let was = &old.upstreams[0];
        let now = Instant::now();
        was.servers[0].record_failure(now, &was.backoff);
        let more = format!(
            "{}weight = 5\n[[upstream.server]]\naddress = \"127.0.0.1:9002\"\n",
            STATIC.replace("[[upstream]]", "[[upstream]]\nbalance = \"round_robin\"")
        );
        let Reloaded { table, changes } = old.reloaded(&config(&more));
        let up = &table.upstreams[0];
        assert!(!Arc::ptr_eq(up, was), "its settings changed");
        assert!(Arc::ptr_eq(&up.servers[0], &was.servers[0]));
        assert!(up.servers[0].passively_failed(now), "its failure stands");
        assert_eq!(up.servers[0].weight(), 5);
        assert_eq!(up.servers[1].state(), ServerState::Ready);
        assert_eq!(ids(changes.kept_ids()), [was.servers[0].id()]);
        assert_eq!(
            changes.to_string(),
            "upstream \"s\": changed; servers kept 1 (127.0.0.1:9001: weight 1 -> 5), \
             added 1 (127.0.0.1:9002), replaced 0, removed 0"
        );
    }

    /// A supervisord server is its program: moved to another address, it replaces itself.
    #[tokio::test]
    async fn a_supervisord_program_on_a_new_address_replaces_the_old_one() {
        let text = |port: u16| {
            format!(
                "[supervisors.main]\nurl = \"http://127.0.0.1:9001/RPC2\"\n\
                 [[upstream]]\nname = \"app\"\nsupervisor = \"main\"\n\
                 [[upstream.server]]\naddress = \"127.0.0.1:{port}\"\nprogram = \"web\"\n"
            )
        };
        let old = Table::new(&config(&text(9101)));
        let Reloaded { table, changes } = old.reloaded(&config(&text(9105)));
        let UpstreamChange::Changed { servers, .. } = &changes.upstreams[0] else {
            panic!("{changes:?}");
        };
        let [
            ServerChange::Replaced {
                old: o,
                new: n,
                why,
            },
        ] = &servers[..]
        else {
            panic!("{servers:?}");
        };
        assert!(Arc::ptr_eq(o, &old.upstreams[0].servers[0]));
        assert!(Arc::ptr_eq(n, &table.upstreams[0].servers[0]));
        assert_eq!(why, &["address"]);
        assert_eq!(
            changes.to_string(),
            "upstream \"app\": changed; servers kept 0, added 0, \
             replaced 1 (127.0.0.1:9101: address changed, now 127.0.0.1:9105), removed 0"
        );
    }

    /// TLS settings are part of what a server is (its upstream's `tls_*` keys too); a kept
    /// server keeps the addresses its name resolved to.
    #[tokio::test]
    async fn tls_changes_replace_servers_and_kept_names_keep_their_addresses() {
        let text = |verify: bool| {
            format!(
                "[[upstream]]\nname = \"s\"\nsupervisor = \"none\"\ntls_verify = {verify}\n\
                 [[upstream.server]]\naddress = \"https://a.example:8443\"\n\
                 [[upstream]]\nname = \"n\"\nhosts = [\"n.example\"]\nsupervisor = \"none\"\n\
                 [[upstream.server]]\naddress = \"b.example:80\"\n"
            )
        };
        let old = Table::new(&config(&text(true)));
        assert!(old.upstreams[0].tls.as_ref().is_some_and(|t| t.is_ok()));
        assert!(
            old.upstreams[1].tls.is_none(),
            "no TLS server, no TLS config"
        );
        let resolved = vec!["10.0.0.7:80".parse().unwrap()];
        old.upstreams[1].servers[0].set_resolved(resolved.clone());
        let Reloaded { table, changes } = old.reloaded(&config(&text(false)));
        let UpstreamChange::Changed { servers, .. } = &changes.upstreams[0] else {
            panic!("{changes:?}");
        };
        let [ServerChange::Replaced { why, .. }] = &servers[..] else {
            panic!("{servers:?}");
        };
        assert_eq!(why, &["tls"]);
        assert!(Arc::ptr_eq(
            &old.upstreams[1].servers[0],
            &table.upstreams[1].servers[0]
        ));
        assert_eq!(*table.upstreams[1].servers[0].resolved(), resolved);
    }
}
