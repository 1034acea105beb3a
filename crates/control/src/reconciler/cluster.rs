//! The loop as one replica of a cluster (`[cluster]`): every replica runs the policy over the
//! cluster's summed load, carries out only what `rouse_cluster::permitted` lets it, applies the
//! leader's drain keys to its own servers, and publishes its own load about every second.

use std::time::Duration;

use rouse_cluster::{
    ClusterHandle, DrainBook, Follow, Report, ServerLoad, Snapshot, UpstreamLoad, fingerprint,
};

use super::*;

/// How often this replica's load is handed to the shell (which puts it to etcd).
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// How long a drain the leader asked for may go unseen before the server is taken back.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Coordination {
    handle: ClusterHandle,
    book: DrainBook,
    /// The snapshot this pass decides on, and whether it leads in it.
    snapshot: Arc<Snapshot>,
    leading: bool,
    /// `rouse_cluster::fingerprint` of this replica's upstreams, set with each table.
    fingerprint: u64,
    /// Members whose servers differ from this replica's, when last looked at (logged once).
    disagreeing: Vec<String>,
    /// The revision of the drains applied in the last pass: what the next report says it has
    /// seen.
    applied: i64,
    last_report: Option<Instant>,
}

impl Coordination {
    pub(super) fn new(handle: ClusterHandle) -> Coordination {
        let snapshot = handle.snapshot();
        Coordination {
            handle,
            book: DrainBook::new(ASK_TIMEOUT),
            snapshot,
            leading: false,
            fingerprint: 0,
            disagreeing: Vec::new(),
            applied: 0,
            last_report: None,
        }
    }

    /// The other replicas' load on server `i` of `upstream`, added to this one's view.
    pub(super) fn view(&self, upstream: &str, i: usize, own: ServerView) -> ServerView {
        let remote = self.snapshot.remote(upstream, i);
        ServerView {
            in_flight: own.in_flight.saturating_add(remote.in_flight),
            last_active: remote
                .last_active
                .map_or(own.last_active, |t| t.max(own.last_active)),
            ..own
        }
    }

    /// Requests held and requests/s for `upstream` elsewhere.
    pub(super) fn upstream(&self, upstream: &str) -> (usize, f64) {
        let (held, rps) = self.snapshot.remote_upstream(upstream);
        (usize::try_from(held).unwrap_or(usize::MAX), rps)
    }

    /// Whether this replica may carry out `action` on server `i` of `upstream`.
    pub(super) fn permitted(&self, upstream: &str, i: usize, action: Action) -> bool {
        let drained = || self.snapshot.drained_everywhere(upstream, i);
        let everywhere = matches!(action, Action::Stop(..)) && drained();
        rouse_cluster::permitted(action, self.leading, everywhere)
    }

    /// A stop of server `i` of `upstream` that may not be made yet: whether it never will,
    /// because another replica took the server back (see `Snapshot::reclaimed`); the leader
    /// then takes it back too, and its key goes.
    pub(super) fn reclaimed(&self, upstream: &str, i: usize) -> bool {
        let reclaimed = self.leading && self.snapshot.reclaimed(upstream, i);
        if reclaimed {
            self.handle.undrain(upstream, i);
        }
        reclaimed
    }

    /// The leader carried out `action` on server `i` of `upstream`: the cluster hears of it.
    pub(super) fn carried_out(&mut self, upstream: &str, i: usize, action: Action, now: Instant) {
        if !self.leading {
            return;
        }
        match action {
            Action::Drain(_, why) if rouse_cluster::for_the_cluster(why) => {
                self.handle.drain(upstream, i, why.as_str());
                self.book.asked((upstream.to_owned(), i), now);
            }
            Action::Undrain(_) => self.handle.undrain(upstream, i),
            _ => {}
        }
    }
}

impl Reconciler {
    /// A new table: the fingerprint of its servers, which every report carries, is taken
    /// once here rather than with each report (10,000 addresses formatted every second).
    pub(super) fn cluster_servers_changed(&mut self) {
        if let Some(c) = self.cluster.as_mut() {
            c.fingerprint = servers_fingerprint(&self.ups);
        }
    }

    /// A new pass: the latest snapshot, and the leader's drains applied here.
    pub(super) fn cluster_begin(&mut self, now: Instant) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        c.snapshot = c.handle.snapshot();
        // A leader that names servers by an index meaning other servers elsewhere would drain
        // and stop the wrong ones: while the replicas' configs differ, nothing is removed.
        let disagreeing: Vec<String> = c
            .snapshot
            .disagreeing(c.fingerprint)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if disagreeing != c.disagreeing {
            if disagreeing.is_empty() {
                tracing::info!("cluster: every replica has the same upstreams and servers again");
            } else {
                tracing::warn!(
                    replicas = ?disagreeing,
                    "cluster: these replicas have other upstreams or servers (or another order): \
                     nothing is drained or stopped for idleness or load until every replica has \
                     the same ones"
                );
            }
            c.disagreeing = disagreeing;
        }
        c.leading = c.snapshot.leading(now) && c.disagreeing.is_empty();
        let snapshot = Arc::clone(&c.snapshot);
        let leading = c.leading;
        let ups = &self.ups;
        let state = |upstream: &str, i: usize| {
            live_entry(ups, upstream)
                .and_then(|u| ups[u].lives.get(i))
                .map(|l| l.lifecycle.state())
        };
        let follows = c.book.follow(&snapshot, leading, state, now);
        c.applied = snapshot.revision;
        for ((upstream, i), follow) in follows {
            let Some(u) = live_entry(&self.ups, &upstream) else {
                continue;
            };
            if i >= self.ups[u].servers.len() {
                continue;
            }
            match follow {
                Follow::Drain(why) => {
                    tracing::info!(
                        upstream,
                        server = %self.ups[u].servers[i].address(),
                        reason = %why,
                        "the cluster's leader drains this server"
                    );
                    let id = self.ups[u].servers[i].id().0;
                    self.ups[u].policy.note_drained(id, why);
                    self.feed(u, i, Input::Drain { why, by: None }, now);
                }
                Follow::Undrain => self.feed(u, i, Input::Undrain, now),
                Follow::Forget => {
                    if let Some(c) = &self.cluster {
                        c.handle.undrain(&upstream, i);
                    }
                }
            }
        }
    }

    /// Hands this replica's load to the shell, about every second.
    pub(super) fn cluster_publish(&mut self, now: Instant) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if c.last_report
            .is_some_and(|t| now.saturating_duration_since(t) < PUBLISH_EVERY)
        {
            return;
        }
        c.last_report = Some(now);
        let mut report = Report {
            seen: c.applied,
            servers: c.fingerprint,
            ..Report::default()
        };
        for ctl in self.ups.iter().filter(|c| !c.retiring) {
            let mut load = UpstreamLoad {
                held: ctl.upstream.held() as u64,
                rps: ctl.rps,
                ..UpstreamLoad::default()
            };
            for (i, (s, life)) in ctl.servers.iter().zip(&ctl.lives).enumerate() {
                let state = life.lifecycle.state();
                let in_flight = s.in_flight();
                if in_flight == 0 && matches!(state, ServerState::Stopped | ServerState::Failed) {
                    continue;
                }
                let idle = now.saturating_duration_since(s.last_active());
                load.servers.insert(
                    i,
                    ServerLoad {
                        in_flight,
                        idle_ms: u64::try_from(idle.as_millis()).unwrap_or(u64::MAX),
                        draining: state == ServerState::Draining,
                    },
                );
            }
            if load.held > 0 || load.rps > 0.0 || !load.servers.is_empty() {
                report
                    .upstreams
                    .insert(ctl.upstream.name().to_owned(), load);
            }
        }
        c.handle.publish(report);
    }
}

/// `rouse_cluster::fingerprint` of the live upstreams.
fn servers_fingerprint(ups: &[UpCtl]) -> u64 {
    fingerprint(ups.iter().filter(|u| !u.retiring).map(|u| {
        let servers = u
            .servers
            .iter()
            .map(|s| (s.address().to_string(), s.config.program.as_str()))
            .collect();
        (u.upstream.name(), servers)
    }))
}

/// Where the live upstream `name` is in `ups`.
fn live_entry(ups: &[UpCtl], name: &str) -> Option<usize> {
    ups.iter()
        .position(|c| !c.retiring && c.upstream.name() == name)
}
