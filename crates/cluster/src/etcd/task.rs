//! The shell's one task: sessions with etcd, one after the other, for as long as the replica
//! runs. A session connects, takes a lease, puts `members/ID`, reads and watches the prefix,
//! campaigns when `leader` is absent, and then keeps the lease, the report and the snapshot
//! current and carries out the leader's commands. Any failure (a call without an answer
//! within `timeout`, a keep-alive refused, the watch ending) loses the lease: the snapshot
//! says `Unreachable`, not leading, no drains, and a new session starts after a backoff.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, WatchStream};
use rouse_config::ClusterConfig;
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, sleep_until};

use super::connect::{self, Lease};
use super::error::Error;
use super::keys::Keys;
use super::{campaign, commands, publish, watch};
use crate::handle::Shell;
use crate::snapshot::{EtcdState, Snapshot};

/// The wait before the first retry; it doubles up to [`MAX_BACKOFF`] while etcd stays away.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) struct Task {
    config: ClusterConfig,
    keys: Keys,
    shell: Shell,
    snap: Snapshot,
    /// The lease of a session that failed: revoked at the next connection, so that nothing of
    /// it (an old `leader`, old drains) outlives the session, as it would for its TTL after
    /// an etcd restart (etcd renews every lease when it comes back).
    stale_lease: Option<i64>,
}

/// A session's connection, lease and watch, once set up.
struct Open {
    client: Client,
    lease: Lease,
    watch: WatchStream,
}

impl Task {
    pub(crate) fn new(config: ClusterConfig, id: &str, shell: Shell) -> Task {
        Task {
            keys: Keys::new(&config.name, id),
            snap: Snapshot::new(&config.name, id),
            config,
            shell,
            stale_lease: None,
        }
    }

    /// Sessions until `leave` fires (or its sender is dropped).
    pub(crate) async fn run(mut self, mut leave: oneshot::Receiver<()>) {
        let mut backoff = FIRST_BACKOFF;
        // A replica that never gets through (a wrong password, no client certificate) must
        // say why at the default level once, not only at debug.
        let mut warned = false;
        loop {
            let mut opened = false;
            let Err(e) = self.session(&mut leave, &mut opened).await else {
                return;
            };
            if self.snap.etcd == EtcdState::Ok {
                tracing::warn!("cluster: etcd lost ({e}); nothing is stopped until it is back");
            } else if !warned {
                tracing::warn!("cluster: cannot reach etcd ({e}); trying again with backoff");
            } else {
                tracing::debug!("cluster: etcd still unreachable: {e}");
            }
            warned = true;
            self.lost();
            if opened {
                backoff = FIRST_BACKOFF;
            }
            tokio::select! {
                () = sleep(backoff) => {}
                _ = &mut leave => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One session; Ok once this replica has left.
    async fn session(
        &mut self,
        leave: &mut oneshot::Receiver<()>,
        opened: &mut bool,
    ) -> Result<(), Error> {
        let timeout = self.config.timeout;
        let Open {
            mut client,
            mut lease,
            mut watch,
        } = tokio::select! {
            open = self.open() => open?,
            // Whatever it had granted expires with its TTL.
            _ = &mut *leave => return Ok(()),
        };
        *opened = true;
        let period = self.config.lease_ttl / 3;
        let mut keep_alive = interval_at(Instant::now() + period, period);
        keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pace = publish::Pace::new(Instant::now());
        let (mut reports_open, mut commands_open) = (true, true);
        loop {
            tokio::select! {
                _ = &mut *leave => {
                    if let Err(e) = connect::revoke(&mut client, lease.id, timeout).await {
                        tracing::warn!(
                            "cluster: leaving: {e}; the others see this replica gone after lease_ttl"
                        );
                    }
                    self.lost();
                    return Ok(());
                }
                _ = keep_alive.tick() => {
                    self.snap.lease_until = Some(lease.keep_alive(timeout).await?);
                    self.publish();
                }
                answer = watch.message() => {
                    let answer = answer
                        .map_err(|source| Error::Call { what: "watch", source })?
                        .ok_or(Error::StreamEnded("watch"))?;
                    let leader_deleted =
                        watch::apply(&mut self.snap, &self.keys, &answer, Instant::now())?;
                    if leader_deleted {
                        self.campaign(&mut client, lease.id).await?;
                    }
                    self.publish();
                }
                () = sleep_until(pace.next()) => {
                    let report = Arc::clone(&self.shell.report.borrow_and_update());
                    publish::put_report(&mut client, &self.keys, lease.id, &report, timeout)
                        .await?;
                    pace.put_at(Instant::now());
                }
                changed = self.shell.report.changed(), if reports_open => match changed {
                    Ok(()) => pace.changed(Instant::now()),
                    // Every handle is gone: the last report stays the one put.
                    Err(_) => reports_open = false,
                },
                command = self.shell.commands.recv(), if commands_open => match command {
                    Some(command) => {
                        let leading = self.snap.leading(Instant::now());
                        commands::carry_out(
                            &mut client, &self.keys, lease.id, command, leading, timeout,
                        )
                        .await?;
                    }
                    None => commands_open = false,
                },
            }
        }
    }

    /// Steps 1 and 2: connect, revoke the stale lease, take a new one, put `members/ID`, read
    /// the prefix, watch it from there, campaign if no one leads; then etcd is `Ok`.
    async fn open(&mut self) -> Result<Open, Error> {
        let timeout = self.config.timeout;
        let mut client = connect::connect(&self.config).await?;
        if let Some(stale) = self.stale_lease {
            match connect::revoke(&mut client, stale, timeout).await {
                Ok(()) => {}
                // Gone already (expired, or etcd lost it) is as good.
                Err(e) if e.not_found() => {}
                // Kept for the next session: etcd is likely still away.
                Err(e) => return Err(e),
            }
            self.stale_lease = None;
        }
        let (lease, until) = Lease::grant(&mut client, self.config.lease_ttl, timeout).await?;
        self.stale_lease = Some(lease.id);
        publish::put_member(&mut client, &self.keys, lease.id, timeout).await?;
        let revision = watch::read(&mut client, &self.keys, &mut self.snap, timeout).await?;
        let watch = watch::watch(&mut client, &self.keys, revision, timeout).await?;
        if self.snap.leader.is_none() {
            self.campaign(&mut client, lease.id).await?;
        }
        self.snap.lease_until = Some(until);
        self.snap.etcd = EtcdState::Ok;
        self.publish();
        Ok(Open {
            client,
            lease,
            watch,
        })
    }

    async fn campaign(&mut self, client: &mut Client, lease: i64) -> Result<(), Error> {
        let holder = campaign::campaign(client, &self.keys, lease, self.config.timeout).await?;
        self.snap.leader = holder;
        Ok(())
    }

    /// The lease is lost (or given up): not leading, no drains apply, until a new session.
    fn lost(&mut self) {
        let snap = &mut self.snap;
        snap.etcd = EtcdState::Unreachable;
        if snap.leader.as_deref() == Some(snap.id.as_str()) {
            snap.leader = None;
        }
        snap.lease_until = None;
        snap.drains.clear();
        self.publish();
    }

    fn publish(&self) {
        self.shell.snapshot.send_if_modified(|current| {
            if **current == self.snap {
                return false;
            }
            *current = Arc::new(self.snap.clone());
            true
        });
    }
}
