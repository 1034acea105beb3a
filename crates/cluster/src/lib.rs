//! Several rouse replicas in front of the same supervisors, coordinated through etcd.
//!
//! Each replica publishes its load ([`Report`]) under a key tied to its own lease; one replica
//! at a time leads and makes the scaling and stop decisions from everyone's load summed; a
//! stop happens only once every live replica has drained the server (drain keys every replica
//! watches). What the control plane reads is a [`Snapshot`], pure data with the instants at
//! which things were learnt, so every rule over it is tested without etcd or sleeps; the etcd
//! shell (feature `etcd`) only keeps the snapshot current and writes what it is asked to.
//!
//! Keys, under `/rouse/NAME/`:
//! - `members/ID`: this replica is alive (its lease);
//! - `load/ID`: its [`Report`], put about every second (its lease);
//! - `leader`: the leader's id, created only if absent (a transaction; its lease);
//! - `drain/UPSTREAM/INDEX`: the leader drains that server everywhere (the leader's lease, so
//!   a dead leader's drains vanish and the servers are routed to again).

mod drains;
#[cfg(feature = "etcd")]
mod etcd;
mod gate;
mod handle;
mod report;
mod snapshot;

pub use drains::{DrainBook, Follow, Key};
#[cfg(feature = "etcd")]
pub use etcd::Cluster;
pub use gate::{for_the_cluster, permitted};
pub use handle::{ClusterHandle, Command, Shell, channels};
pub use report::{Report, ServerLoad, UpstreamLoad, fingerprint};
pub use snapshot::{Drain, EtcdState, Received, Remote, Snapshot};
