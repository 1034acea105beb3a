//! Shared by the tests against a real etcd: short leases and timeouts, two replica ids, a
//! plain config, and the bounded wait on a snapshot.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use rouse_cluster::{ClusterHandle, Snapshot};
use rouse_config::ClusterConfig;
use rouse_e2e::Etcd;
use tokio::time::{Instant, sleep};

/// A short `lease_ttl` (2 s, etcd's least) and `timeout` keep the lease and failure cases fast.
pub const LEASE_TTL: Duration = Duration::from_secs(2);
pub const TIMEOUT: Duration = Duration::from_millis(500);
/// For what should happen within a few calls.
pub const SOON: Duration = Duration::from_secs(10);

pub const A: &str = "edge-a/127.0.0.1:8080";
pub const B: &str = "edge-b/127.0.0.1:8080";

/// `etcd`'s URL, no credentials, no TLS files; the id left to the caller.
pub fn config(etcd: &Etcd) -> ClusterConfig {
    ClusterConfig {
        etcd: vec![etcd.url()],
        name: "test".into(),
        id: None,
        lease_ttl: LEASE_TTL,
        timeout: TIMEOUT,
        user: None,
        password: None,
        ca_file: None,
        cert_file: None,
        key_file: None,
    }
}

/// Polls `handle`'s snapshot until `ready` holds; returns that snapshot.
pub async fn until(
    handle: &ClusterHandle,
    what: &str,
    bound: Duration,
    ready: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let deadline = Instant::now() + bound;
    loop {
        let snap = handle.snapshot();
        if ready(&snap) {
            return snap;
        }
        if Instant::now() >= deadline {
            panic!("{}: not {what} within {bound:?}: {snap:#?}", snap.id);
        }
        sleep(Duration::from_millis(50)).await;
    }
}
