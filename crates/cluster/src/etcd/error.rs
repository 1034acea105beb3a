//! Why a session with etcd ended, and the bound every call to it runs under.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// Any of these ends the session: the lease counts as lost and the shell starts over.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{what}: {source}")]
    Call {
        what: &'static str,
        source: etcd_client::Error,
    },
    #[error("{0}: no answer within the timeout")]
    Timeout(&'static str),
    #[error("the lease expired")]
    LeaseExpired,
    #[error("the {0} stream ended")]
    StreamEnded(&'static str),
    #[error("the watch was cancelled: {0}")]
    WatchCancelled(String),
    #[error("cannot read {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// etcd answered that the thing asked about does not exist (a lease already revoked or
    /// expired).
    pub(crate) fn not_found(&self) -> bool {
        matches!(
            self,
            Error::Call {
                source: etcd_client::Error::GRpcStatus(status),
                ..
            } if status.code() == tonic::Code::NotFound
        )
    }
}

/// `call`, failing with [`Error::Timeout`] after `limit`: a call to an etcd that does not
/// answer must not hold the shell (and so the snapshot's `Unreachable`) back.
pub(crate) async fn bounded<T>(
    limit: Duration,
    what: &'static str,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(source)) => Err(Error::Call { what, source }),
        Err(_) => Err(Error::Timeout(what)),
    }
}
