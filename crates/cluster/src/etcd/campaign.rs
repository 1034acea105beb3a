//! Becoming leader: `leader` is created only if absent, under this replica's lease, so there
//! is one at a time and it goes with its holder's lease (a revoke on leave, the TTL on a
//! crash), when everyone left campaigns again.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::error::{Error, bounded};
use super::keys::Keys;

/// A transaction: if `leader` has never been created since its last delete
/// (`create_revision == 0`), put this replica's id there; else read who holds it. Returns the
/// holder; None when it went again in between (its delete event brings another campaign).
pub(crate) async fn campaign(
    client: &mut Client,
    keys: &Keys,
    lease: i64,
    timeout: Duration,
) -> Result<Option<String>, Error> {
    let leader = keys.leader();
    let txn = Txn::new()
        .when([Compare::create_revision(
            leader.clone(),
            CompareOp::Equal,
            0,
        )])
        .and_then([TxnOp::put(
            leader.clone(),
            keys.id(),
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(leader, None)]);
    let answer = bounded(timeout, "campaign", client.txn(txn)).await?;
    if answer.succeeded() {
        tracing::info!(id = keys.id(), "cluster: this replica leads");
        return Ok(Some(keys.id().to_owned()));
    }
    let holder = answer.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(got) => got
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
        _ => None,
    });
    Ok(holder)
}
