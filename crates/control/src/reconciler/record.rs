//! What operators see of a lifecycle: the journal, the log, and the start/stop counters.

use std::time::SystemTime;

use rouse_core::lifecycle::Record;
use rouse_core::policy::StopReason;
use rouse_state::metrics::{StartLabels, StopLabels};
use rouse_state::{Entry, Metrics};

use super::*;

impl Reconciler {
    pub(super) fn record(&self, u: usize, i: usize, r: Record) {
        let up = &self.ups[u].upstream;
        let s = &self.ups[u].servers[i];
        let (upstream, server, program) = (up.name(), s.address(), &s.config.program);
        match r {
            Record::Start(reason) => {
                tracing::info!(upstream, %server, program, %reason, "starting server");
                self.note(u, i, "start", reason.to_string());
            }
            Record::StartRetry(why) => {
                tracing::warn!(upstream, %server, program, "cannot reach the supervisor, asking again: {why}");
                self.note(u, i, "start-retry", why);
            }
            Record::Adopt { pid } => {
                tracing::info!(upstream, %server, program, pid, "adopting a running program");
            }
            Record::Ready { took, adopted } => {
                if !adopted {
                    up.record_start_duration(took);
                    self.table
                        .metrics
                        .start_duration
                        .get_or_create(&Metrics::upstream(upstream))
                        .observe(took.as_secs_f64());
                }
                let ms = took.as_secs_f64() * 1000.0;
                self.count_start(u, i, if adopted { "adopted" } else { "ready" });
                let what = if adopted { "adopt" } else { "ready" };
                self.note(u, i, what, format!("{ms:.1} ms"));
                tracing::info!(upstream, %server, ms, adopted, "server ready");
            }
            Record::StartFailed { why, timed_out } => {
                tracing::error!(upstream, %server, program, "cannot start server: {why}");
                self.count_start(u, i, if timed_out { "timeout" } else { "failed" });
                self.note(u, i, "start-failed", why);
            }
            Record::Drain(why) => {
                tracing::info!(upstream, %server, reason = why.as_str(), "draining server");
                self.note(u, i, "drain", why.as_str().to_owned());
            }
            Record::Overdue { in_flight } => {
                tracing::warn!(
                    upstream,
                    %server,
                    in_flight,
                    "stopping a draining server still busy after shutdown_timeout"
                );
            }
            Record::Stop(why) => {
                tracing::info!(upstream, %server, program, reason = why.as_str(), "stopping server");
                self.count_stop(u, i, why);
                self.note(u, i, "stop", why.as_str().to_owned());
            }
            Record::Stopped { error: None } => {
                tracing::info!(upstream, %server, "server stopped");
                self.note(u, i, "stopped", String::new());
            }
            Record::Stopped { error: Some(e) } => {
                tracing::error!(upstream, %server, program, "stop failed: {e}");
                self.note(u, i, "stopped", format!("stop failed: {e}"));
            }
            Record::StoppedOutside => {
                tracing::warn!(upstream, %server, program, "server stopped outside rouse");
                self.note(u, i, "stopped", "outside rouse".to_owned());
            }
            Record::Failed(why) => {
                tracing::warn!(upstream, %server, program, "server failed: {why}");
                self.note(u, i, "failed", why);
            }
            Record::CheckPassed => tracing::info!(
                upstream,
                %server,
                "connect failures seen by the proxy were passing: it accepts connections"
            ),
        }
    }

    /// Records a lifecycle event for the dashboard and `/status`.
    fn note(&self, u: usize, i: usize, what: &'static str, detail: String) {
        let up = &self.ups[u].upstream;
        self.table.journal.record(Entry {
            at: SystemTime::now(),
            upstream: up.name().to_owned(),
            server: self.ups[u].servers[i].index(),
            address: self.ups[u].servers[i].address().to_string(),
            what,
            detail,
        });
    }

    fn count_start(&self, u: usize, i: usize, result: &str) {
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

    fn count_stop(&self, u: usize, i: usize, reason: StopReason) {
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
