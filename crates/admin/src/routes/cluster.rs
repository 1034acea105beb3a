//! What the admin API says of `[cluster]`: the `cluster` object of `GET /status` and the
//! `rouse_cluster_*` gauges of `GET /metrics`, both read off the etcd shell's latest snapshot
//! at request time, so they cannot drift from what the control plane decides by.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rouse_cluster::{EtcdState, Snapshot};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// `"cluster"` in `GET /status`; absent when rouse runs without `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// `[cluster] name`.
    pub name: String,
    /// This replica.
    pub id: String,
    /// Who leads, as last seen in etcd; null when nobody does (or etcd is unreachable).
    pub leader: Option<String>,
    /// Live replicas, this one included, sorted.
    pub members: Vec<String>,
    /// `ok` or `unreachable`.
    pub etcd: String,
}

impl ClusterStatus {
    pub fn of(snapshot: &Snapshot) -> ClusterStatus {
        ClusterStatus {
            name: snapshot.name.clone(),
            id: snapshot.id.clone(),
            leader: snapshot.leader.clone(),
            members: snapshot.members.iter().cloned().collect(),
            etcd: snapshot.etcd.as_str().to_owned(),
        }
    }
}

/// Registers `rouse_cluster_leader`, `rouse_cluster_members` and `rouse_cluster_etcd_up`.
pub(crate) fn register(registry: &mut Registry, snapshot: &Snapshot, now: Instant) {
    let gauge = |value: i64| {
        let g = Gauge::<i64>::default();
        g.set(value);
        g
    };
    let r = registry.sub_registry_with_prefix("rouse_cluster");
    r.register(
        "leader",
        "1 while this replica leads the cluster (its lease surely held), else 0",
        gauge(i64::from(snapshot.leading(now))),
    );
    r.register(
        "members",
        "Live replicas of the cluster, this one included",
        gauge(i64::try_from(snapshot.members.len()).unwrap_or(i64::MAX)),
    );
    r.register(
        "etcd_up",
        "1 while etcd answers this replica, else 0",
        gauge(i64::from(snapshot.etcd == EtcdState::Ok)),
    );
}
