//! What this replica writes about itself: `members/ID` once per lease, and `load/ID` (its
//! latest [`Report`]) about every second, sooner when the report changes.

use std::time::Duration;

use etcd_client::{Client, PutOptions};
use tokio::time::Instant;

use super::error::{Error, bounded};
use super::keys::Keys;
use crate::report::Report;

/// A report is put at least this often, so a replica's idle times stay fresh elsewhere.
const PERIOD: Duration = Duration::from_secs(1);
/// ... and at most this often, however fast the control plane hands new ones over.
const MIN_GAP: Duration = Duration::from_millis(200);

/// `members/ID` under the lease: `{"id","version"}`.
pub(crate) async fn put_member(
    client: &mut Client,
    keys: &Keys,
    lease: i64,
    timeout: Duration,
) -> Result<(), Error> {
    let value = serde_json::json!({
        "id": keys.id(),
        "version": env!("CARGO_PKG_VERSION"),
    })
    .to_string();
    let options = PutOptions::new().with_lease(lease);
    bounded(
        timeout,
        "put member",
        client.put(keys.member(), value, Some(options)),
    )
    .await?;
    Ok(())
}

/// `load/ID` = `report` under the lease, its `seen` as the control plane set it.
pub(crate) async fn put_report(
    client: &mut Client,
    keys: &Keys,
    lease: i64,
    report: &Report,
    timeout: Duration,
) -> Result<(), Error> {
    let options = PutOptions::new().with_lease(lease);
    bounded(
        timeout,
        "put load",
        client.put(keys.load(), report.to_json(), Some(options)),
    )
    .await?;
    Ok(())
}

/// When the next report is due.
#[derive(Debug)]
pub(crate) struct Pace {
    last: Option<Instant>,
    next: Instant,
}

impl Pace {
    /// The first report is due at once.
    pub(crate) fn new(now: Instant) -> Pace {
        Pace {
            last: None,
            next: now,
        }
    }

    pub(crate) fn next(&self) -> Instant {
        self.next
    }

    pub(crate) fn put_at(&mut self, now: Instant) {
        self.last = Some(now);
        self.next = now + PERIOD;
    }

    /// A new report: due now, or as soon as the gap since the last put allows.
    pub(crate) fn changed(&mut self, now: Instant) {
        let allowed = self.last.map_or(now, |last| (last + MIN_GAP).max(now));
        self.next = self.next.min(allowed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_go_every_second_and_changes_sooner_but_not_too_often() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut pace = Pace::new(t0);
        assert_eq!(pace.next(), t0);
        pace.put_at(t0);
        assert_eq!(pace.next(), t0 + PERIOD);

        pace.changed(t0 + ms(50));
        assert_eq!(pace.next(), t0 + MIN_GAP);
        pace.put_at(t0 + MIN_GAP);
        pace.changed(t0 + ms(700));
        assert_eq!(pace.next(), t0 + ms(700));
        pace.put_at(t0 + ms(700));
        pace.changed(t0 + ms(800));
        pace.changed(t0 + ms(850));
        assert_eq!(pace.next(), t0 + ms(900));
    }
}
