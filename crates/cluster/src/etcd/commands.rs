//! The leader's drains: `drain/UPSTREAM/INDEX` under the leader's own lease, so a dead
//! leader's drains vanish with it and its servers are routed to again.

use std::time::Duration;

use etcd_client::{Client, PutOptions};

use super::error::{Error, bounded};
use super::keys::Keys;
use crate::handle::Command;

/// Carries `command` out. A drain is put only while `leading`: a replica that lost the lead
/// since the control plane decided must not drain for the cluster. An undrain deletes the key
/// whoever put it.
pub(crate) async fn carry_out(
    client: &mut Client,
    keys: &Keys,
    lease: i64,
    command: Command,
    leading: bool,
    timeout: Duration,
) -> Result<(), Error> {
    match command {
        Command::Drain {
            upstream,
            index,
            reason,
        } => {
            if !leading {
                tracing::debug!(upstream, index, "cluster: not leading, drain not put");
                return Ok(());
            }
            let options = PutOptions::new().with_lease(lease);
            bounded(
                timeout,
                "put drain",
                client.put(keys.drain(&upstream, index), reason, Some(options)),
            )
            .await?;
        }
        Command::Undrain { upstream, index } => {
            bounded(
                timeout,
                "delete drain",
                client.delete(keys.drain(&upstream, index), None),
            )
            .await?;
        }
    }
    Ok(())
}
