//! `[cluster]`: this process as one replica among several, coordinated through etcd. The etcd
//! client comes with the `cluster` cargo feature (its build needs protoc); without it, a
//! config with `[cluster]` is refused rather than run as a lone rouse that would stop servers
//! the other replicas use.

use rouse_cluster::ClusterHandle;
use rouse_config::{ClusterConfig, Config};

/// Why this build cannot run `config`, if it cannot.
pub fn unsupported(config: &Config) -> Option<String> {
    (config.cluster.is_some() && !cfg!(feature = "cluster")).then(|| {
        "[cluster] needs a rouse built with the `cluster` feature \
         (cargo build --release --features cluster; the Debian package has it)"
            .to_owned()
    })
}

/// This replica's id: `[cluster] id`, else the host name and the first listen address, which
/// tell replicas on one host apart.
pub fn id(config: &Config, cluster: &ClusterConfig) -> String {
    if let Some(id) = &cluster.id {
        return id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rouse".to_owned());
    match config.proxy.listen.first() {
        Some(listen) => format!("{host}/{listen}"),
        None => host,
    }
}

/// The running replica: its etcd task.
pub struct Replica {
    #[cfg(feature = "cluster")]
    cluster: rouse_cluster::Cluster,
    handle: ClusterHandle,
}

impl Replica {
    /// Joins the cluster of `config`, if it has one (never waits for etcd: the replica serves
    /// and starts servers while etcd is unreachable).
    pub fn start(config: &Config) -> Option<Replica> {
        let cluster = config.cluster.as_ref()?;
        let id = id(config, cluster);
        tracing::info!(cluster = cluster.name, id, etcd = ?cluster.etcd, "joining the cluster");
        Replica::join(cluster, id)
    }

    #[cfg(feature = "cluster")]
    fn join(config: &ClusterConfig, id: String) -> Option<Replica> {
        let cluster = rouse_cluster::Cluster::start(config, id);
        let handle = cluster.handle();
        Some(Replica { cluster, handle })
    }

    #[cfg(not(feature = "cluster"))]
    fn join(_config: &ClusterConfig, _id: String) -> Option<Replica> {
        // `unsupported` refused this config before anything started.
        tracing::error!("[cluster] ignored: this rouse has no etcd client");
        None
    }

    pub fn handle(&self) -> ClusterHandle {
        self.handle.clone()
    }

    /// Leaves the cluster at once (its lease revoked), rather than when the lease runs out.
    pub async fn leave(self) {
        #[cfg(feature = "cluster")]
        self.cluster.leave().await;
    }
}
