//! Host names in server addresses: resolved at start, again every `resolve_interval`, and as
//! soon as a reload brings a new one; never on the request path. What a name resolves to is
//! stored in its server ([`Server::set_resolved`]), where each new connection reads it.
//!
//! A name that stops resolving keeps its last good addresses (a DNS outage must not take
//! healthy servers down), and each change of fortune is logged once, not at every lookup.
//! A name that never resolved leaves its server with nothing to connect to: a supervised one
//! does not become ready, a static one fails its connects, both saying why.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rouse_config::ServerAddress;
use rouse_state::{Server, ServerId, Table};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// One lookup may take this long (the system resolver's own retries included).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the loop looks for names that are due, or new after a reload.
const TICK: Duration = Duration::from_millis(250);

/// What to do with one lookup's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// New addresses to store (`None`: keep what the server has).
    pub store: Option<Vec<SocketAddr>>,
    pub log: Option<Log>,
    /// The failure now known (logged), so the same one is not logged again.
    pub failing: Option<String>,
}

/// What is worth a log line: changes only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Log {
    /// Resolved for the first time.
    Resolved(Vec<SocketAddr>),
    /// Now resolves to other addresses.
    Changed {
        from: Vec<SocketAddr>,
        to: Vec<SocketAddr>,
    },
    /// Resolves again after failing (to the same addresses as before).
    Recovered,
    /// Fails (or fails otherwise than last logged); `keeping` the last good addresses.
    Failed {
        why: String,
        keeping: Vec<SocketAddr>,
    },
}

/// The pure rule: `current` is what the server has, `failing` the failure last logged.
pub fn decide(
    current: &[SocketAddr],
    lookup: Result<Vec<SocketAddr>, String>,
    failing: Option<&str>,
) -> Decision {
    let found = match lookup {
        Ok(found) if found.is_empty() => Err("resolves to no address".to_owned()),
        other => other,
    };
    match found {
        Ok(mut found) => {
            // Order as the resolver gave it (it may prefer some), without repeats.
            let mut seen = BTreeSet::new();
            found.retain(|a| seen.insert(*a));
            let same = seen == current.iter().copied().collect::<BTreeSet<_>>();
            let (store, log) = match (current.is_empty(), same) {
                (_, true) => (None, failing.map(|_| Log::Recovered)),
                (true, false) => (Some(found.clone()), Some(Log::Resolved(found))),
                (false, false) => (
                    Some(found.clone()),
                    Some(Log::Changed {
                        from: current.to_vec(),
                        to: found,
                    }),
                ),
            };
            Decision {
                store,
                log,
                failing: None,
            }
        }
        Err(why) => Decision {
            store: None,
            log: (failing != Some(why.as_str())).then(|| Log::Failed {
                why: why.clone(),
                keeping: current.to_vec(),
            }),
            failing: Some(why),
        },
    }
}

#[derive(Debug)]
struct Entry {
    due: Instant,
    failing: Option<String>,
}

/// The resolver's memory of each name (by server), shared by the loop and the one-off passes
/// made at start and at reload.
#[derive(Debug, Default)]
pub struct Resolver {
    names: Mutex<HashMap<ServerId, Entry>>,
}

impl Resolver {
    pub fn new() -> Arc<Resolver> {
        Arc::default()
    }

    /// Resolves every name of `table` that is due (and every one never resolved), all at
    /// once, each within a bound; returns when all have answered.
    pub async fn pass(&self, table: &Table) {
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut names = self.lock();
            // Most configs name no host at all: no set of 10,000 ids every second for them.
            if !names.is_empty() {
                let live: std::collections::HashSet<ServerId> = table
                    .upstreams
                    .iter()
                    .flat_map(|u| u.servers.iter().map(|s| s.id()))
                    .collect();
                names.retain(|id, _| live.contains(id));
            }
            for up in &table.upstreams {
                for server in &up.servers {
                    let ServerAddress::Name { host, port } = server.address() else {
                        continue;
                    };
                    let entry = names.entry(server.id()).or_insert(Entry {
                        // A server kept by a reload was resolved by the previous table's pass.
                        due: if server.resolved().is_empty() {
                            now
                        } else {
                            rouse_core::time::deadline(now, up.config.resolve_interval)
                        },
                        failing: None,
                    });
                    if entry.due <= now {
                        entry.due = rouse_core::time::deadline(now, up.config.resolve_interval);
                        due.push((
                            up.name().to_owned(),
                            Arc::clone(server),
                            host.clone(),
                            *port,
                        ));
                    }
                }
            }
        }
        let mut lookups = JoinSet::new();
        for (upstream, server, host, port) in due {
            lookups.spawn(async move {
                let found = lookup(&host, port).await;
                (upstream, server, found)
            });
        }
        while let Some(Ok((upstream, server, found))) = lookups.join_next().await {
            self.apply(&upstream, &server, found);
        }
    }

    /// Resolves names again as they fall due, for as long as the task runs (aborted at
    /// shutdown), following the table across reloads.
    pub fn spawn(self: Arc<Resolver>, table: Arc<ArcSwap<Table>>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                self.pass(&table.load_full()).await;
            }
        })
    }

    fn apply(&self, upstream: &str, server: &Server, found: Result<Vec<SocketAddr>, String>) {
        let mut names = self.lock();
        let Some(entry) = names.get_mut(&server.id()) else {
            return;
        };
        let current = server.resolved();
        let decision = decide(&current, found, entry.failing.as_deref());
        entry.failing = decision.failing;
        if let Some(addresses) = decision.store {
            server.set_resolved(addresses);
        }
        let name = server.address();
        match decision.log {
            None => {}
            Some(Log::Resolved(to)) => {
                tracing::info!(upstream, server = %name, "{name} resolves to {}", list(&to));
            }
            Some(Log::Changed { from, to }) => tracing::info!(
                upstream,
                server = %name,
                "{name} now resolves to {} (was {})",
                list(&to),
                list(&from)
            ),
            Some(Log::Recovered) => {
                tracing::info!(upstream, server = %name, "{name} resolves again");
            }
            Some(Log::Failed { why, keeping }) if keeping.is_empty() => tracing::warn!(
                upstream,
                server = %name,
                "{name} does not resolve ({why}): the server cannot be reached until it does"
            ),
            Some(Log::Failed { why, keeping }) => tracing::warn!(
                upstream,
                server = %name,
                "{name} no longer resolves ({why}); keeping its last addresses {}",
                list(&keeping)
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ServerId, Entry>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(found)) => Ok(found.collect()),
    }
}

fn list(addresses: &[SocketAddr]) -> String {
    let shown: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_first_answer_is_stored_and_logged() {
        let d = decide(&[], Ok(vec![a("10.0.0.1:80"), a("10.0.0.1:80")]), None);
        assert_eq!(d.store, Some(vec![a("10.0.0.1:80")]));
        assert_eq!(d.log, Some(Log::Resolved(vec![a("10.0.0.1:80")])));
        assert_eq!(d.failing, None);
    }

    #[test]
    fn the_same_addresses_in_another_order_change_nothing() {
        let current = [a("10.0.0.1:80"), a("10.0.0.2:80")];
        let d = decide(&current, Ok(vec![a("10.0.0.2:80"), a("10.0.0.1:80")]), None);
        assert_eq!((d.store, d.log), (None, None));
    }

    #[test]
    fn new_addresses_replace_the_old_ones_and_say_so() {
        let d = decide(&[a("10.0.0.1:80")], Ok(vec![a("10.0.0.3:80")]), None);
        assert_eq!(d.store, Some(vec![a("10.0.0.3:80")]));
        assert_eq!(
            d.log,
            Some(Log::Changed {
                from: vec![a("10.0.0.1:80")],
                to: vec![a("10.0.0.3:80")]
            })
        );
    }

    #[test]
    fn a_failing_name_keeps_its_addresses_and_is_logged_once_per_change() {
        let current = [a("10.0.0.1:80")];
        let first = decide(&current, Err("timed out".into()), None);
        assert_eq!(first.store, None, "the last good addresses stay");
        assert_eq!(
            first.log,
            Some(Log::Failed {
                why: "timed out".into(),
                keeping: current.to_vec()
            })
        );
        let again = decide(&current, Err("timed out".into()), first.failing.as_deref());
        assert_eq!((again.store, again.log), (None, None), "not logged twice");
        assert_eq!(again.failing.as_deref(), Some("timed out"));
        let other = decide(&current, Err("NXDOMAIN".into()), again.failing.as_deref());
        assert!(
            matches!(other.log, Some(Log::Failed { .. })),
            "a new failure is news"
        );
        let back = decide(&current, Ok(current.to_vec()), other.failing.as_deref());
        assert_eq!(
            (back.store, back.log, back.failing),
            (None, Some(Log::Recovered), None)
        );
    }

    #[test]
    fn an_empty_answer_is_a_failure() {
        let d = decide(&[a("10.0.0.1:80")], Ok(vec![]), None);
        assert_eq!(d.store, None);
        assert!(matches!(d.log, Some(Log::Failed { .. })));
    }

    fn table(text: &str) -> Table {
        Table::new(&rouse_config::parse("t.toml", text).expect("valid"))
    }

    #[tokio::test]
    async fn names_are_resolved_by_a_pass_and_a_failing_one_leaves_nothing_to_connect_to() {
        let table = table(
            "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"localhost:9101\"\n\
             [[upstream.server]]\naddress = \"name.invalid:9102\"\n\
             [[upstream.server]]\naddress = \"127.0.0.1:9103\"\n",
        );
        let resolver = Resolver::new();
        resolver.pass(&table).await;
        let servers = &table.upstreams[0].servers;
        let local = servers[0].resolved();
        assert!(!local.is_empty(), "localhost resolves");
        assert!(
            local
                .iter()
                .all(|s| s.ip().is_loopback() && s.port() == 9101)
        );
        assert!(servers[1].resolved().is_empty(), ".invalid never resolves");
        assert_eq!(*servers[2].resolved(), [a("127.0.0.1:9103")]);
        let failing = resolver.lock()[&servers[1].id()].failing.clone();
        assert!(
            failing.is_some(),
            "the failure is remembered, to be logged once"
        );
    }
}
