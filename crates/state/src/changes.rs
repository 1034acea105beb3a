//! What a reload changed: the one diff of two table generations that every plane acts on.
//!
//! `Table::reloaded` decides, once, which upstreams and servers go on, which are new, which a
//! new one replaces and which are gone; the control plane moves and retires lifecycles by it,
//! the proxy carries connection pools over by it, the reload retires replaced upstreams by it,
//! and `rouse reload` prints it. Nothing else works out "the same server" again.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use crate::server::{Server, ServerId};
use crate::table::Table;
use crate::upstream::Upstream;

/// The next table and how it differs from the one it was made from.
#[derive(Debug)]
pub struct Reloaded {
    pub table: Table,
    pub changes: Changes,
}

/// Per upstream, in the new config's order, then the removed ones in the old order.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub upstreams: Vec<UpstreamChange>,
}

#[derive(Debug, Clone)]
pub enum UpstreamChange {
    /// Only in the new config: every server is new.
    Added(Arc<Upstream>),
    /// Its config did not change: the very same object goes on, servers and all.
    Kept(Arc<Upstream>),
    /// Its config changed: `new` succeeds `old` (held requests move over), and `servers` says
    /// what became of each server.
    Changed {
        old: Arc<Upstream>,
        new: Arc<Upstream>,
        servers: Vec<ServerChange>,
    },
    /// Gone from the config: every server retires.
    Removed(Arc<Upstream>),
}

/// A server's place in its upstream's config, as it was before a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub index: usize,
    pub weight: u32,
    pub max_conns: u32,
}

/// What a reload did to one server of a changed upstream.
#[derive(Debug, Clone)]
pub enum ServerChange {
    /// A new server, on an address and program no old server of its upstream had.
    Added(Arc<Server>),
    /// The same server object goes on (process, state, connections, counters); it may have
    /// moved, or have a new weight or `max_conns`: `was` is where it stood before.
    Kept { server: Arc<Server>, was: Placement },
    /// `new`, on the address (or supervisord program) of `old`, differs from it in what needs
    /// another process (`why`: config keys): `old` retires, `new` starts once it is down.
    Replaced {
        old: Arc<Server>,
        new: Arc<Server>,
        why: Vec<&'static str>,
    },
    /// Gone from the config: it retires.
    Removed(Arc<Server>),
}

impl Changes {
    /// True when the reload changed no upstream.
    pub fn is_empty(&self) -> bool {
        self.upstreams
            .iter()
            .all(|u| matches!(u, UpstreamChange::Kept(_)))
    }

    /// The servers that go on as they are: every server of a kept upstream, and the kept ones
    /// of a changed upstream.
    pub fn kept_servers(&self) -> impl Iterator<Item = &Arc<Server>> {
        self.upstreams.iter().flat_map(|u| {
            let (all, some): (&[Arc<Server>], &[ServerChange]) = match u {
                UpstreamChange::Kept(up) => (&up.servers, &[]),
                UpstreamChange::Changed { servers, .. } => (&[], servers),
                _ => (&[], &[]),
            };
            all.iter().chain(some.iter().filter_map(|c| match c {
                ServerChange::Kept { server, .. } => Some(server),
                _ => None,
            }))
        })
    }

    /// The ids of [`Changes::kept_servers`].
    pub fn kept_ids(&self) -> HashSet<ServerId> {
        self.kept_servers().map(|s| s.id()).collect()
    }

    /// The servers of the old table that no upstream of the new one holds: replaced, removed,
    /// or of a removed upstream. They are to be drained and stopped.
    pub fn retiring_servers(&self) -> impl Iterator<Item = &Arc<Server>> {
        self.upstreams.iter().flat_map(|u| {
            let (all, some): (&[Arc<Server>], &[ServerChange]) = match u {
                UpstreamChange::Removed(up) => (&up.servers, &[]),
                UpstreamChange::Changed { servers, .. } => (&[], servers),
                _ => (&[], &[]),
            };
            all.iter().chain(some.iter().filter_map(|c| match c {
                ServerChange::Replaced { old, .. } | ServerChange::Removed(old) => Some(old),
                _ => None,
            }))
        })
    }

    /// The upstreams of the old table that the new one does not hold: changed (a successor
    /// takes their held requests) or removed.
    pub fn retiring_upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.iter().filter_map(|u| match u {
            UpstreamChange::Changed { old, .. } | UpstreamChange::Removed(old) => Some(old),
            _ => None,
        })
    }
}

impl UpstreamChange {
    pub fn name(&self) -> &str {
        match self {
            UpstreamChange::Added(u) | UpstreamChange::Kept(u) | UpstreamChange::Removed(u) => {
                u.name()
            }
            UpstreamChange::Changed { new, .. } => new.name(),
        }
    }
}

/// One line per upstream that changed, `no changes` when none did:
///
/// ```text
/// upstream "app": changed; servers kept 2, added 1 (127.0.0.1:9103), replaced 1 (127.0.0.1:9101: command changed), removed 0
/// upstream "new": added (2 servers)
/// upstream "old": removed (1 server, draining)
/// ```
impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no changes");
        }
        let mut first = true;
        for u in &self.upstreams {
            let line = match u {
                UpstreamChange::Kept(_) => continue,
                UpstreamChange::Added(up) => format!("added ({})", servers(up.servers.len())),
                UpstreamChange::Removed(up) => format!(
                    "removed ({}{})",
                    servers(up.servers.len()),
                    // Static servers are not rouse's to stop: their requests just finish.
                    if up.is_static() { "" } else { ", draining" }
                ),
                UpstreamChange::Changed { servers, .. } => changed(servers),
            };
            if !first {
                f.write_str("\n")?;
            }
            first = false;
            write!(f, "upstream {:?}: {line}", u.name())?;
        }
        Ok(())
    }
}

fn servers(n: usize) -> String {
    format!("{n} server{}", if n == 1 { "" } else { "s" })
}

fn changed(changes: &[ServerChange]) -> String {
    let (mut kept, mut added, mut replaced, mut removed) = (vec![], vec![], vec![], vec![]);
    let mut kept_count = 0;
    for c in changes {
        match c {
            ServerChange::Kept { server, was } => {
                kept_count += 1;
                // A move alone is no news (removing one server moves the rest); a new weight
                // or cap is.
                let mut notes = Vec::new();
                if was.weight != server.weight() {
                    notes.push(format!("weight {} -> {}", was.weight, server.weight()));
                }
                if was.max_conns != server.max_conns() {
                    notes.push(format!(
                        "max_conns {} -> {}",
                        was.max_conns,
                        server.max_conns()
                    ));
                }
                if !notes.is_empty() {
                    kept.push(format!("{}: {}", server.address(), notes.join(", ")));
                }
            }
            ServerChange::Added(s) => added.push(s.address().to_string()),
            ServerChange::Replaced { old, new, why } => {
                let mut item = format!("{}: {} changed", old.address(), why.join(", "));
                if old.address() != new.address() {
                    item.push_str(&format!(", now {}", new.address()));
                }
                replaced.push(item);
            }
            ServerChange::Removed(s) => removed.push(s.address().to_string()),
        }
    }
    let part = |n: usize, items: &[String]| {
        if items.is_empty() {
            n.to_string()
        } else {
            format!("{n} ({})", items.join("; "))
        }
    };
    format!(
        "changed; servers kept {}, added {}, replaced {}, removed {}",
        part(kept_count, &kept),
        part(added.len(), &added),
        part(replaced.len(), &replaced),
        part(removed.len(), &removed),
    )
}
