//! The channels between the control plane and the etcd shell.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::report::Report;
use crate::snapshot::Snapshot;

/// What the leader asks the shell to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Put `drain/UPSTREAM/INDEX` (under the leader's lease).
    Drain {
        upstream: String,
        index: usize,
        reason: &'static str,
    },
    /// Delete it: the server is routed to again, or is down.
    Undrain { upstream: String, index: usize },
}

/// The control plane's side: reads the snapshot, hands over its report and the leader's
/// drains. Cheap to clone (the admin API reads the snapshot too).
#[derive(Clone)]
pub struct ClusterHandle {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    report: Arc<watch::Sender<Arc<Report>>>,
    commands: mpsc::UnboundedSender<Command>,
}

/// The shell's side: keeps the snapshot current, puts the latest report, carries out commands.
pub struct Shell {
    pub snapshot: watch::Sender<Arc<Snapshot>>,
    pub report: watch::Receiver<Arc<Report>>,
    pub commands: mpsc::UnboundedReceiver<Command>,
}

/// A connected pair, the snapshot starting as [`Snapshot::new`].
pub fn channels(name: &str, id: &str) -> (ClusterHandle, Shell) {
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::new(name, id)));
    let (report_tx, report_rx) = watch::channel(Arc::new(Report::default()));
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    (
        ClusterHandle {
            snapshot: snapshot_rx,
            report: Arc::new(report_tx),
            commands: commands_tx,
        },
        Shell {
            snapshot: snapshot_tx,
            report: report_rx,
            commands: commands_rx,
        },
    )
}

impl ClusterHandle {
    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.borrow())
    }

    /// This replica's load now; the shell puts the latest one about every second.
    pub fn publish(&self, report: Report) {
        self.report.send_replace(Arc::new(report));
    }

    /// Send [`Command::Drain`]; ignored once the shell is gone (nothing stops then).
    pub fn drain(&self, upstream: &str, index: usize, reason: &'static str) {
        let _ = self.commands.send(Command::Drain {
            upstream: upstream.to_owned(),
            index,
            reason,
        });
    }

    pub fn undrain(&self, upstream: &str, index: usize) {
        let _ = self.commands.send(Command::Undrain {
            upstream: upstream.to_owned(),
            index,
        });
    }
}
