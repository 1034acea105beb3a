//! All upstreams of one configuration generation.

use std::sync::Arc;

use rouse_config::Config;

use crate::upstream::Upstream;

#[derive(Debug)]
pub struct Table {
    pub upstreams: Vec<Arc<Upstream>>,
}

impl Table {
    pub fn new(config: &Config) -> Table {
        Table {
            upstreams: config
                .upstreams
                .iter()
                .map(|u| Arc::new(Upstream::new(u.clone())))
                .collect(),
        }
    }

    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.name() == name)
    }
}
