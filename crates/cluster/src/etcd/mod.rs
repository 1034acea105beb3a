//! The etcd shell (feature `etcd`): keeps a replica's [`Snapshot`](crate::Snapshot) current
//! from etcd and writes what the control plane hands over, on one task that never gives up.
//!
//! - `connect`: the client and the lease every key of this replica is tied to;
//! - `publish`: `members/ID`, and `load/ID` about every second;
//! - `campaign`: `leader`, created only if absent;
//! - `watch`: the prefix read once and then watched, into the snapshot;
//! - `commands`: the leader's `drain/UPSTREAM/INDEX` keys;
//! - `task`: the sessions, and what a lost lease means for the snapshot.
//!
//! What it costs etcd, per replica, with N replicas and `lease_ttl` T: about 1 put of
//! `load/ID` per second (up to 5 while its load changes fast) and 3/T keep-alives per second
//! on its lease stream; one watch stream, which delivers every replica's puts: about N events
//! per second. Each replica's puts reach every watcher, so etcd sends about N² events per
//! second in all (100 at 10 replicas, 10,000 at 100), each a report of a few hundred bytes
//! per upstream with traffic. Connecting, a read of the prefix and a campaign happen only
//! when a session starts (after etcd was unreachable) or `leader` goes.

mod campaign;
mod commands;
mod connect;
mod error;
mod keys;
mod publish;
mod task;
mod watch;

use std::time::Duration;

use rouse_config::ClusterConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::handle::{ClusterHandle, channels};

/// One replica's membership of a cluster: its handle, and the task behind it.
///
/// Dropping it aborts the task without a word to etcd, as a crash would: the others see this
/// replica gone once its lease runs out. [`Cluster::leave`] is the orderly way.
pub struct Cluster {
    handle: ClusterHandle,
    leave: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    timeout: Duration,
}

impl Cluster {
    /// Spawns the shell's task on the current runtime and returns at once: etcd is reached in
    /// the background (the snapshot says `Unreachable` until it is).
    pub fn start(config: &ClusterConfig, id: String) -> Cluster {
        let (handle, shell) = channels(&config.name, &id);
        let (leave, leaving) = oneshot::channel();
        let task = tokio::spawn(task::Task::new(config.clone(), &id, shell).run(leaving));
        Cluster {
            handle,
            leave: Some(leave),
            task: Some(task),
            timeout: config.timeout,
        }
    }

    pub fn handle(&self) -> ClusterHandle {
        self.handle.clone()
    }

    /// Revokes this replica's lease, so the others see it gone (and campaign, if it led) at
    /// once, and ends the task. Bounded: the call in progress and the revoke get `timeout`
    /// each, then the task is aborted.
    pub async fn leave(mut self) {
        if let Some(leave) = self.leave.take() {
            let _ = leave.send(());
        }
        if let Some(mut task) = self.task.take() {
            let bound = self.timeout * 2 + Duration::from_millis(100);
            if tokio::time::timeout(bound, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
