//! Manual start and stop (the admin API, `rouse start|stop`): what ngx_supervisord's
//! `supervisord_start`/`supervisord_stop` handlers did, through the same loop as every other
//! decision, so a manual command never races the policy.
//!
//! A manual command is a one-off action, not a pin: the policy keeps running, so a server
//! stopped by hand below `min_servers` (or while requests wait) is started again, and one
//! started beyond what the load needs is drained after `idle_timeout` like any other.

use std::sync::{Arc, RwLock};

use rouse_core::lifecycle::Input;
use rouse_core::policy::StopReason;
use rouse_core::reason::StartReason;
use rouse_core::state::ServerState;
use rouse_state::{Changes, Table};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Msg, Reconciler};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManualOp {
    Start,
    Stop,
}

/// What a manual command did: which server it chose (the lowest stopped one for a start
/// without an index, the highest running one for a stop), so a caller can follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manual {
    pub index: usize,
    /// For people: "starting server 1 (127.0.0.1:9101) of \"app\"", "... is already ready".
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManualError {
    #[error("no upstream named {0:?}")]
    UnknownUpstream(String),
    #[error("upstream {upstream:?} has no server {index}")]
    UnknownServer { upstream: String, index: usize },
    #[error(
        "upstream {0:?} has static servers (supervisor = \"none\"): rouse does not start or stop them"
    )]
    Static(String),
    #[error("{0}")]
    NothingToDo(String),
    #[error("the control plane is not running")]
    NotRunning,
}

/// A handle for sending manual commands to the control plane.
#[derive(Clone)]
pub struct ControlHandle {
    pub(super) tx: tokio::sync::mpsc::UnboundedSender<Msg>,
    /// The current table's upstream names (replaced on reload), so unknown and static names are
    /// answered without asking the loop.
    pub(super) names: Arc<RwLock<Names>>,
    /// The current supervisors (replaced on reload), for [`ControlHandle::supervisors`].
    pub(super) drivers: Arc<RwLock<super::Drivers>>,
}

#[derive(Default)]
pub(super) struct Names {
    statics: Vec<String>,
    known: Vec<String>,
}

impl Names {
    pub(super) fn of(table: &Table) -> Names {
        Names {
            statics: table
                .upstreams
                .iter()
                .filter(|u| u.is_static())
                .map(|u| u.name().to_owned())
                .collect(),
            known: table
                .upstreams
                .iter()
                .map(|u| u.name().to_owned())
                .collect(),
        }
    }
}

impl ControlHandle {
    /// See [`super::Control::reload`].
    pub async fn reload(&self, table: Arc<Table>, changes: Arc<Changes>, drivers: super::Drivers) {
        *self.names.write().unwrap_or_else(|e| e.into_inner()) = Names::of(&table);
        *self.drivers.write().unwrap_or_else(|e| e.into_inner()) = drivers.clone();
        let (reply, done) = oneshot::channel();
        if self
            .tx
            .send(Msg::Reload {
                table,
                changes,
                drivers,
                reply,
            })
            .is_ok()
        {
            // The loop applies it at once: it only rearranges its own bookkeeping.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), done).await;
        }
    }

    /// Starts (`index` None: the lowest-index stopped server) or stops (`index` None: the
    /// highest-index running one, drained first) a server. Returns what was done.
    pub async fn manual(
        &self,
        upstream: &str,
        index: Option<usize>,
        op: ManualOp,
    ) -> Result<Manual, ManualError> {
        {
            let names = self.names.read().unwrap_or_else(|e| e.into_inner());
            if !names.known.iter().any(|s| s == upstream) {
                return Err(ManualError::UnknownUpstream(upstream.to_owned()));
            }
            if names.statics.iter().any(|s| s == upstream) {
                return Err(ManualError::Static(upstream.to_owned()));
            }
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Msg::Manual {
                upstream: upstream.to_owned(),
                index,
                op,
                reply,
            })
            .map_err(|_| ManualError::NotRunning)?;
        // The loop answers at once (the action itself runs in the background).
        tokio::time::timeout(std::time::Duration::from_secs(10), answer)
            .await
            .map_err(|_| ManualError::NotRunning)?
            .map_err(|_| ManualError::NotRunning)?
    }
}

impl Reconciler {
    pub(super) fn manual(
        &mut self,
        upstream: &str,
        index: Option<usize>,
        op: ManualOp,
        now: Instant,
    ) -> Result<Manual, ManualError> {
        let Some(u) = self
            .ups
            .iter()
            .position(|c| !c.retiring && c.upstream.name() == upstream)
        else {
            return Err(ManualError::UnknownUpstream(upstream.to_owned()));
        };
        let servers = self.ups[u].servers.clone();
        let state = |i: usize| servers[i].state();
        let i = match index {
            Some(i) if i >= servers.len() => {
                return Err(ManualError::UnknownServer {
                    upstream: upstream.to_owned(),
                    index: i,
                });
            }
            Some(i) => i,
            None => {
                let pick = match op {
                    ManualOp::Start => (0..servers.len())
                        .find(|&i| matches!(state(i), ServerState::Stopped | ServerState::Failed)),
                    ManualOp::Stop => (0..servers.len()).rev().find(|&i| {
                        matches!(
                            state(i),
                            ServerState::Ready | ServerState::Starting | ServerState::Failed
                        )
                    }),
                };
                pick.ok_or_else(|| {
                    ManualError::NothingToDo(match op {
                        ManualOp::Start => format!("every server of {upstream:?} is already up"),
                        ManualOp::Stop => format!("no server of {upstream:?} is running"),
                    })
                })?
            }
        };
        let addr = servers[i].address();
        let id = servers[i].id();
        let driver = self.ups[u].drivers[i].name().to_owned();
        let blocked = self
            .busy()
            .blocks(&servers[i], &self.ups[u].lives[i], &driver);
        let done = match (op, state(i)) {
            (ManualOp::Start, ServerState::Stopped) if blocked => {
                return Err(ManualError::NothingToDo(format!(
                    "server {i} ({addr}) of {upstream:?} waits for the server a reload replaced to stop"
                )));
            }
            (ManualOp::Start, ServerState::Stopped | ServerState::Failed) => {
                self.feed(u, i, Input::Start(StartReason::Manual), now);
                format!("starting server {i} ({addr}) of {upstream:?}")
            }
            (ManualOp::Start, s) => format!("server {i} ({addr}) of {upstream:?} is already {s}"),
            (ManualOp::Stop, ServerState::Ready) => {
                // Drained first: requests in flight finish, then rule 1 stops it, or the
                // deadline does.
                self.ups[u].policy.note_drained(id.0, StopReason::Manual);
                let by = Some(rouse_core::time::deadline(now, self.table.retire_within));
                let why = StopReason::Manual;
                self.feed(u, i, Input::Drain { why, by }, now);
                format!("draining then stopping server {i} ({addr}) of {upstream:?}")
            }
            (ManualOp::Stop, ServerState::Starting | ServerState::Failed) => {
                self.feed(u, i, Input::Stop(StopReason::Manual), now);
                format!("stopping server {i} ({addr}) of {upstream:?}")
            }
            (ManualOp::Stop, s) => format!("server {i} ({addr}) of {upstream:?} is already {s}"),
        };
        Ok(Manual {
            index: i,
            message: done,
        })
    }
}
