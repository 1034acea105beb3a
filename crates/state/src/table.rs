//! All upstreams of one configuration generation.

use std::sync::Arc;

use rouse_config::Config;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::upstream::Upstream;

#[derive(Debug)]
pub struct Table {
    pub upstreams: Vec<Arc<Upstream>>,
    /// The data plane pokes this when a request starts waiting, so the control plane decides
    /// at once instead of at its next tick.
    pub demand: Notify,
    pub epoch: Instant,
}

impl Table {
    pub fn new(config: &Config) -> Table {
        let epoch = Instant::now();
        Table {
            upstreams: config
                .upstreams
                .iter()
                .map(|u| Arc::new(Upstream::new(u.clone(), epoch)))
                .collect(),
            demand: Notify::new(),
            epoch,
        }
    }

    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.name() == name)
    }
}
