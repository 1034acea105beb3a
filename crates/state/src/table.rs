//! All upstreams of one configuration generation.

use std::sync::Arc;

use rouse_config::{Config, SupervisorRef};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::upstream::Upstream;

#[derive(Debug)]
pub struct Table {
    pub upstreams: Vec<Arc<Upstream>>,
    /// The data plane pokes this when a request starts waiting, so the control plane decides
    /// at once instead of at its next tick. Shared by every generation of the table, so a
    /// reload does not disconnect the planes.
    pub demand: Arc<Notify>,
    pub epoch: Instant,
    /// Like `demand`, shared by every generation: counters survive reloads.
    pub metrics: Arc<Metrics>,
    pub journal: Arc<Journal>,
}

/// Why a new config cannot be applied to a running table without a restart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upstream {0:?} is supervised and its configuration changed; restart rouse to apply it")]
pub struct NeedsRestart(pub String);

impl Table {
    pub fn new(config: &Config) -> Table {
        let epoch = Instant::now();
        Table {
            upstreams: config
                .upstreams
                .iter()
                .map(|u| Arc::new(Upstream::new(u.clone(), epoch)))
                .collect(),
            demand: Arc::new(Notify::new()),
            epoch,
            metrics: Arc::default(),
            journal: Arc::default(),
        }
    }

    /// The table for a reloaded config. Static upstreams are rebuilt freely; supervised ones
    /// (whose servers have processes, states and a reconciler) are carried over as they are,
    /// and must not have changed.
    pub fn reloaded(&self, config: &Config) -> Result<Table, NeedsRestart> {
        let supervised = |u: &Upstream| u.config.supervisor != SupervisorRef::Static;
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for c in &config.upstreams {
            let old = self.upstream(&c.name);
            match old {
                Some(o) if supervised(o) && o.config == *c => upstreams.push(Arc::clone(o)),
                Some(o) if supervised(o) => return Err(NeedsRestart(c.name.clone())),
                _ if c.supervisor != SupervisorRef::Static => {
                    return Err(NeedsRestart(c.name.clone()));
                }
                _ => upstreams.push(Arc::new(Upstream::new(c.clone(), self.epoch))),
            }
        }
        if let Some(gone) = self
            .upstreams
            .iter()
            .find(|o| supervised(o) && config.upstreams.iter().all(|c| c.name != o.name()))
        {
            return Err(NeedsRestart(gone.name().to_owned()));
        }
        Ok(Table {
            upstreams,
            demand: Arc::clone(&self.demand),
            epoch: self.epoch,
            metrics: Arc::clone(&self.metrics),
            journal: Arc::clone(&self.journal),
        })
    }

    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        rouse_config::parse("t.toml", text).expect("valid")
    }

    const STATIC: &str = "[[upstream]]\nname = \"s\"\nsupervisor = \"none\"\n\
                          [[upstream.server]]\naddress = \"127.0.0.1:9001\"\n";
    const EMBEDDED: &str = "[[upstream]]\nname = \"e\"\nhosts = [\"e.example\"]\n\
                            [[upstream.server]]\naddress = \"127.0.0.1:9101\"\ncommand = \"x\"\n";

    #[tokio::test]
    async fn supervised_upstreams_are_carried_over_and_static_ones_rebuilt() {
        let old = Table::new(&config(&format!("{STATIC}{EMBEDDED}")));
        let changed_static = STATIC.replace("9001", "9002");
        let new = old
            .reloaded(&config(&format!("{changed_static}{EMBEDDED}")))
            .expect("applies");
        assert!(
            Arc::ptr_eq(&new.upstreams[1], &old.upstreams[1]),
            "same servers, same states"
        );
        assert_eq!(new.upstreams[0].servers[0].address().port(), 9002);
        assert!(Arc::ptr_eq(&new.demand, &old.demand));
    }

    #[tokio::test]
    async fn a_changed_added_or_removed_supervised_upstream_needs_a_restart() {
        let old = Table::new(&config(&format!("{STATIC}{EMBEDDED}")));
        let changed = EMBEDDED.replace("9101", "9102");
        assert_eq!(
            old.reloaded(&config(&format!("{STATIC}{changed}")))
                .unwrap_err(),
            NeedsRestart("e".into())
        );
        assert_eq!(
            old.reloaded(&config(STATIC)).unwrap_err(),
            NeedsRestart("e".into())
        );
        let only_static = Table::new(&config(STATIC));
        assert_eq!(
            only_static
                .reloaded(&config(&format!("{STATIC}{EMBEDDED}")))
                .unwrap_err(),
            NeedsRestart("e".into())
        );
    }
}
