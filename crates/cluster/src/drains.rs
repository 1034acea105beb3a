//! The cluster's drains as one replica applies them to its own servers.
//!
//! The leader drains a server by putting `drain/UPSTREAM/INDEX`; every replica (the leader
//! too) drains it on seeing the key and routes to it again when the key goes: the leader took
//! it back, the leader died (the key was under its lease), or etcd became unreachable (the
//! shell then forgets every drain, since nothing may be stopped). A replica that takes a drained
//! server back for its own held requests keeps it until a new drain: the key stays, and the
//! leader's next look at the summed load undrains it for everyone.

use std::collections::BTreeMap;
use std::time::Duration;

use rouse_core::policy::StopReason;
use rouse_core::state::ServerState;
use tokio::time::Instant;

use crate::snapshot::Snapshot;

/// (upstream, index of the server in it).
pub type Key = (String, usize);

/// What to do to one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Stop routing to it (its key appeared).
    Drain(StopReason),
    /// Route to it again (its key went).
    Undrain,
    /// Leader only: delete its key; the server is down everywhere.
    Forget,
}

/// One replica's memory of the drains it applied.
#[derive(Debug, Clone)]
pub struct DrainBook {
    entries: BTreeMap<Key, Entry>,
    /// How long a drain this replica asked for (leading) may go without its key appearing
    /// before it is taken back.
    ask_timeout: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The revision of the key applied; None: asked for, not seen yet.
    revision: Option<i64>,
    asked_at: Option<Instant>,
    /// The leader asked for the key's delete: not again.
    forgetting: bool,
}

impl DrainBook {
    pub fn new(ask_timeout: Duration) -> DrainBook {
        DrainBook {
            entries: BTreeMap::new(),
            ask_timeout,
        }
    }

    /// The leader drained the server here and asked for its key.
    pub fn asked(&mut self, key: Key, now: Instant) {
        self.entries.insert(
            key,
            Entry {
                revision: None,
                asked_at: Some(now),
                forgetting: false,
            },
        );
    }

    /// Drains this replica has applied or asked for.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What to do now, given the snapshot and each server's state here (`state`: None for a
    /// server this replica does not have).
    pub fn follow(
        &mut self,
        snapshot: &Snapshot,
        leading: bool,
        state: impl Fn(&str, usize) -> Option<ServerState>,
        now: Instant,
    ) -> Vec<(Key, Follow)> {
        let mut out = Vec::new();
        for (key, drain) in &snapshot.drains {
            let here = state(&key.0, key.1);
            let new_drain = match self.entries.get_mut(key) {
                None => true,
                Some(e) if e.revision.is_none() => {
                    // Our own drain's key, now seen.
                    e.revision = Some(drain.revision);
                    false
                }
                Some(e) => e.revision != Some(drain.revision),
            };
            if new_drain {
                self.entries.insert(
                    key.clone(),
                    Entry {
                        revision: Some(drain.revision),
                        asked_at: None,
                        forgetting: false,
                    },
                );
                if here == Some(ServerState::Ready) {
                    out.push((key.clone(), Follow::Drain(reason(&drain.reason))));
                    continue;
                }
            }
            let down = matches!(
                here,
                None | Some(ServerState::Stopped | ServerState::Failed)
            );
            if leading
                && down
                && snapshot.stopped_everywhere(&key.0, key.1)
                && let Some(e) = self.entries.get_mut(key).filter(|e| !e.forgetting)
            {
                e.forgetting = true;
                out.push((key.clone(), Follow::Forget));
            }
        }
        let timeout = self.ask_timeout;
        self.entries.retain(|key, e| {
            if snapshot.drains.contains_key(key) {
                return true;
            }
            let gone = e.revision.is_some()
                || e.asked_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= timeout);
            if gone && state(&key.0, key.1) == Some(ServerState::Draining) {
                out.push((key.clone(), Follow::Undrain));
            }
            !gone
        });
        out
    }
}

fn reason(s: &str) -> StopReason {
    match s {
        "load" => StopReason::Load,
        _ => StopReason::Idle,
    }
}

#[cfg(test)]
mod tests;
