//! What a replica knows of the cluster, as last learnt from etcd: pure data, and the rules
//! the control plane asks of it.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use crate::report::{Report, ServerLoad};

/// Whether etcd answers this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdState {
    Ok,
    /// Not reached yet, or the last call failed or timed out: nothing is stopped.
    Unreachable,
}

impl EtcdState {
    pub fn as_str(self) -> &'static str {
        match self {
            EtcdState::Ok => "ok",
            EtcdState::Unreachable => "unreachable",
        }
    }
}

/// Another replica's latest report, and when this replica got it.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub report: Report,
    pub at: Instant,
}

/// A drain the leader asked of every replica: `drain/UPSTREAM/INDEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    /// Why (`idle`, `load`), as the stop that follows will be counted.
    pub reason: String,
    /// The key's etcd revision: a replica's report acknowledges it only from this one on.
    pub revision: i64,
}

/// The load of the other replicas on one server, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remote {
    pub in_flight: u32,
    /// The latest request on it anywhere else; None: none reported.
    pub last_active: Option<Instant>,
}

/// What this replica knows of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `[cluster] name`.
    pub name: String,
    /// This replica's id.
    pub id: String,
    pub etcd: EtcdState,
    /// Who holds the `leader` key, as last seen.
    pub leader: Option<String>,
    /// Until when this replica's lease is surely alive (the send time of its last answered
    /// keep-alive plus the TTL granted, less a margin); None: it has none. A leader decides
    /// stops only before then, so two replicas never both think they lead.
    pub lease_until: Option<Instant>,
    /// Live replicas (their `members/ID` keys), this one included.
    pub members: BTreeSet<String>,
    /// The other members' latest reports.
    pub reports: BTreeMap<String, Received>,
    /// Servers the leader drains everywhere, by (upstream, index).
    pub drains: BTreeMap<(String, usize), Drain>,
    /// The etcd revision all of the above is current to.
    pub revision: i64,
}

impl Snapshot {
    /// Nothing known yet: etcd not reached, no leader, no lease.
    pub fn new(name: &str, id: &str) -> Snapshot {
        Snapshot {
            name: name.to_owned(),
            id: id.to_owned(),
            etcd: EtcdState::Unreachable,
            leader: None,
            lease_until: None,
            members: BTreeSet::new(),
            reports: BTreeMap::new(),
            drains: BTreeMap::new(),
            revision: 0,
        }
    }

    /// This replica leads and its lease surely still holds: the one state in which it may
    /// drain for the cluster or stop anything.
    pub fn leading(&self, now: Instant) -> bool {
        self.etcd == EtcdState::Ok
            && self.leader.as_deref() == Some(self.id.as_str())
            && self.lease_until.is_some_and(|until| now < until)
    }

    /// Live members' reports other than this replica's own.
    fn others(&self) -> impl Iterator<Item = &Received> {
        self.members
            .iter()
            .filter(|m| **m != self.id)
            .filter_map(|m| self.reports.get(m))
    }

    /// Live members whose last report says they have other upstreams or servers than
    /// `fingerprint` (this replica's): server indexes do not mean the same servers there.
    pub fn disagreeing(&self, fingerprint: u64) -> Vec<&str> {
        if fingerprint == 0 {
            return Vec::new();
        }
        self.members
            .iter()
            .filter(|m| **m != self.id)
            .filter(|m| {
                self.reports
                    .get(*m)
                    .is_some_and(|r| r.report.servers != 0 && r.report.servers != fingerprint)
            })
            .map(String::as_str)
            .collect()
    }

    /// The other replicas' requests held for `upstream`, and their requests/s to it.
    pub fn remote_upstream(&self, upstream: &str) -> (u64, f64) {
        self.others()
            .filter_map(|r| r.report.upstreams.get(upstream))
            .fold((0, 0.0), |(held, rps), u| {
                (held.saturating_add(u.held), rps + u.rps.max(0.0))
            })
    }

    /// The other replicas' load on server `index` of `upstream`. A report's idle time counts
    /// from when this replica received it, so it errs towards "more recent": a stop waits a
    /// little longer, never less.
    pub fn remote(&self, upstream: &str, index: usize) -> Remote {
        let mut sum = Remote::default();
        for r in self.others() {
            let Some(s) = r.report.server(upstream, index) else {
                continue;
            };
            sum.in_flight = sum.in_flight.saturating_add(s.in_flight);
            let at =
                r.at.checked_sub(std::time::Duration::from_millis(s.idle_ms))
                    .unwrap_or(r.at);
            sum.last_active = Some(sum.last_active.map_or(at, |t| t.max(at)));
        }
        sum
    }

    /// What each other live member's report says of server `index` of `upstream` since the
    /// drain of it: None when there is no drain; per member, None when it has not reported
    /// since the drain (or at all), `Some(None)` when its report leaves the server out
    /// (stopped or failed in its view, which routes nothing to it), else its load there.
    fn since_drain<'a>(
        &'a self,
        upstream: &'a str,
        index: usize,
    ) -> Option<impl Iterator<Item = Option<Option<&'a ServerLoad>>>> {
        let drain = self.drains.get(&(upstream.to_owned(), index))?;
        Some(
            self.members
                .iter()
                .filter(|m| **m != self.id)
                .map(move |m| {
                    let r = self.reports.get(m)?;
                    (r.report.seen >= drain.revision).then(|| r.report.server(upstream, index))
                }),
        )
    }

    /// Every other live replica has drained server `index` of `upstream` and has nothing in
    /// flight on it, by a report made after it saw the drain: the leader may stop it. False
    /// when there is no such drain, or a member has not reported yet.
    pub fn drained_everywhere(&self, upstream: &str, index: usize) -> bool {
        self.since_drain(upstream, index).is_some_and(|mut acks| {
            acks.all(|ack| match ack {
                None => false,
                Some(None) => true,
                Some(Some(s)) => s.draining && s.in_flight == 0,
            })
        })
    }

    /// Some other live replica took server `index` of `upstream` back after it saw the drain
    /// (for requests it held): it routes there, so the leader's stop would never come; the
    /// leader takes it back too, and drains again later if the load says so.
    pub fn reclaimed(&self, upstream: &str, index: usize) -> bool {
        self.since_drain(upstream, index)
            .is_some_and(|mut acks| acks.any(|ack| matches!(ack, Some(Some(s)) if !s.draining)))
    }

    /// Every other live replica's report, made after it saw the drain, leaves server `index`
    /// of `upstream` out (stopped or failed in its view): the leader may delete the drain key.
    /// Deleting it sooner would make a replica that has not yet seen the stop route to the
    /// server again.
    pub fn stopped_everywhere(&self, upstream: &str, index: usize) -> bool {
        self.since_drain(upstream, index)
            .is_some_and(|mut acks| acks.all(|ack| matches!(ack, Some(None))))
    }
}

#[cfg(test)]
mod tests;
