//! What operators see of the loop's work: the journal and the start/stop counters.

use super::*;

impl Reconciler {
    /// Records a lifecycle event for the dashboard and `/status`.
    pub(super) fn note(&self, u: usize, i: usize, what: &'static str, detail: String) {
        let up = &self.ups[u].upstream;
        self.table.journal.record(Entry {
            at: SystemTime::now(),
            upstream: up.name().to_owned(),
            server: i,
            address: self.ups[u].servers[i].address().to_string(),
            what,
            detail,
        });
    }

    pub(super) fn count_start(&self, u: usize, i: usize, result: &str) {
        let up = &self.ups[u].upstream;
        self.table
            .metrics
            .starts
            .get_or_create(&StartLabels {
                upstream: up.name().to_owned(),
                server: self.ups[u].servers[i].address().to_string(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub(super) fn count_stop(&self, u: usize, i: usize, reason: StopReason) {
        let up = &self.ups[u].upstream;
        self.table
            .metrics
            .stops
            .get_or_create(&StopLabels {
                upstream: up.name().to_owned(),
                server: self.ups[u].servers[i].address().to_string(),
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }
}
