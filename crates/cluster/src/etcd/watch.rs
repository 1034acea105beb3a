//! From etcd to the snapshot: the prefix read once, then watched from the revision after the
//! read, each key and event applied to the [`Snapshot`].

use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchResponse, WatchStream};
use tokio::time::Instant;

use super::error::{Error, bounded};
use super::keys::{Key, Keys};
use crate::report::Report;
use crate::snapshot::{Drain, Received, Snapshot};

/// Reads every key of the cluster into `snap`, replacing what it knew of members, reports,
/// leader and drains; returns the read's revision (to watch from the next one).
pub(crate) async fn read(
    client: &mut Client,
    keys: &Keys,
    snap: &mut Snapshot,
    timeout: Duration,
) -> Result<i64, Error> {
    let answer = bounded(
        timeout,
        "read",
        client.get(keys.prefix(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let now = Instant::now();
    snap.members.clear();
    snap.reports.clear();
    snap.drains.clear();
    snap.leader = None;
    for kv in answer.kvs() {
        if let Some(key) = keys.parse(kv.key()) {
            put(snap, key, kv.value(), kv.mod_revision(), now);
        }
    }
    snap.revision = answer.header().map_or(0, |h| h.revision());
    Ok(snap.revision)
}

/// Watches the prefix from `revision + 1`; returns once etcd has created the watch.
pub(crate) async fn watch(
    client: &mut Client,
    keys: &Keys,
    revision: i64,
    timeout: Duration,
) -> Result<WatchStream, Error> {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = bounded(timeout, "watch", client.watch(keys.prefix(), Some(options))).await?;
    match bounded(timeout, "watch", stream.message()).await? {
        Some(created) if created.created() && !created.canceled() => Ok(stream),
        Some(answer) => Err(Error::WatchCancelled(answer.cancel_reason().to_owned())),
        None => Err(Error::StreamEnded("watch")),
    }
}

/// Applies one watch answer; returns whether the `leader` key was deleted (time to campaign).
/// A cancelled watch (its revision compacted away, etcd shutting down) ends the session.
pub(crate) fn apply(
    snap: &mut Snapshot,
    keys: &Keys,
    answer: &WatchResponse,
    now: Instant,
) -> Result<bool, Error> {
    if answer.canceled() {
        return Err(Error::WatchCancelled(answer.cancel_reason().to_owned()));
    }
    let mut leader_deleted = false;
    for event in answer.events() {
        let Some(kv) = event.kv() else { continue };
        let Some(key) = keys.parse(kv.key()) else {
            continue;
        };
        match event.event_type() {
            EventType::Put => put(snap, key, kv.value(), kv.mod_revision(), now),
            EventType::Delete => {
                leader_deleted |= key == Key::Leader;
                delete(snap, key);
            }
        }
    }
    if let Some(header) = answer.header() {
        snap.revision = snap.revision.max(header.revision());
    }
    Ok(leader_deleted)
}

/// A key's value as of `mod_revision`, learnt at `now`.
pub(crate) fn put(
    snap: &mut Snapshot,
    key: Key<'_>,
    value: &[u8],
    mod_revision: i64,
    now: Instant,
) {
    match key {
        Key::Member(id) => {
            snap.members.insert(id.to_owned());
        }
        // This replica's own report is not "remote" load: the control plane has it first hand.
        Key::Load(id) if id == snap.id => {}
        Key::Load(id) => match Report::from_json(value) {
            Ok(report) => {
                snap.reports
                    .insert(id.to_owned(), Received { report, at: now });
            }
            Err(e) => tracing::warn!(member = id, "cluster: unreadable load report: {e}"),
        },
        Key::Leader => snap.leader = Some(String::from_utf8_lossy(value).into_owned()),
        Key::Drain(upstream, index) => {
            snap.drains.insert(
                (upstream.to_owned(), index),
                Drain {
                    reason: String::from_utf8_lossy(value).into_owned(),
                    revision: mod_revision,
                },
            );
        }
    }
}

/// A key deleted, or expired with its lease: `members/ID` or `load/ID` going means that
/// replica is gone (both share its lease).
pub(crate) fn delete(snap: &mut Snapshot, key: Key<'_>) {
    match key {
        Key::Member(id) | Key::Load(id) => {
            snap.members.remove(id);
            snap.reports.remove(id);
        }
        Key::Leader => snap.leader = None,
        Key::Drain(upstream, index) => {
            snap.drains.remove(&(upstream.to_owned(), index));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::UpstreamLoad;
    use crate::snapshot::EtcdState;

    fn snapshot() -> (Snapshot, Keys) {
        let mut snap = Snapshot::new("web", "a");
        snap.etcd = EtcdState::Ok;
        (snap, Keys::new("web", "a"))
    }

    #[test]
    fn members_reports_leader_and_drains_follow_puts_and_deletes() {
        let (mut snap, keys) = snapshot();
        let now = Instant::now();
        let mut report = Report {
            seen: 7,
            ..Report::default()
        };
        report
            .upstreams
            .insert("app".into(), UpstreamLoad::default());
        let b = Keys::new("web", "b");

        for key in [keys.member(), b.member()] {
            put(
                &mut snap,
                keys.parse(key.as_bytes()).unwrap(),
                b"{}",
                3,
                now,
            );
        }
        put(&mut snap, Key::Load("b"), &report.to_json(), 4, now);
        put(&mut snap, Key::Load("a"), &report.to_json(), 4, now);
        put(&mut snap, Key::Leader, b"b", 5, now);
        put(&mut snap, Key::Drain("app", 1), b"idle", 6, now);

        assert_eq!(snap.members.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(snap.reports.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(snap.reports["b"].report, report);
        assert_eq!(snap.reports["b"].at, now);
        assert_eq!(snap.leader.as_deref(), Some("b"));
        assert_eq!(
            snap.drains[&("app".to_owned(), 1)],
            Drain {
                reason: "idle".into(),
                revision: 6
            }
        );

        delete(&mut snap, Key::Load("b"));
        delete(&mut snap, Key::Leader);
        delete(&mut snap, Key::Drain("app", 1));
        assert_eq!(snap.members.iter().collect::<Vec<_>>(), ["a"]);
        assert!(snap.reports.is_empty() && snap.drains.is_empty());
        assert_eq!(snap.leader, None);
    }

    #[test]
    fn an_unreadable_report_is_skipped() {
        let (mut snap, _) = snapshot();
        put(&mut snap, Key::Load("b"), b"not json", 4, Instant::now());
        assert!(snap.reports.is_empty());
    }
}
