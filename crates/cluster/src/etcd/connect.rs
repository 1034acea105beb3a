//! Connecting to etcd and holding this replica's lease: every key it writes is tied to the
//! lease, so when it stops refreshing it (a crash, a partition) the others see it gone after
//! `lease_ttl`, and its leadership and drains with it.

use std::path::Path;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, Identity, LeaseKeepAliveStream, LeaseKeeper, TlsOptions,
};
use rouse_config::ClusterConfig;
use tokio::time::Instant;

use super::error::{Error, bounded};

/// A new client for `config`'s endpoints. A client per session: a fresh start after any
/// failure, nothing carried over from a connection that went bad.
pub(crate) async fn connect(config: &ClusterConfig) -> Result<Client, Error> {
    let mut options = ConnectOptions::new()
        .with_timeout(config.timeout)
        .with_connect_timeout(config.timeout);
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.with_user(user, password);
    }
    if config.etcd.iter().any(|url| url.starts_with("https://")) {
        options = options.with_tls(tls(config)?);
    }
    // With a user, connecting authenticates: a call like any other.
    bounded(
        config.timeout,
        "connect",
        Client::connect(&config.etcd, Some(options)),
    )
    .await
}

/// The CA (`ca_file`, else the web PKI roots) and the client certificate, if any. Read at
/// each connect, so renewed files are picked up on the next reconnection.
fn tls(config: &ClusterConfig) -> Result<TlsOptions, Error> {
    let mut tls = TlsOptions::new();
    tls = match &config.ca_file {
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca)?)),
        None => tls.with_webpki_roots(),
    };
    if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(tls)
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::File {
        path: path.to_owned(),
        source,
    })
}

/// A granted lease and its keep-alive stream.
pub(crate) struct Lease {
    pub(crate) id: i64,
    keeper: LeaseKeeper,
    answers: LeaseKeepAliveStream,
}

impl Lease {
    /// Grants a lease of `ttl` and opens its keep-alive stream; returns it with the instant
    /// until which it surely holds.
    pub(crate) async fn grant(
        client: &mut Client,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<(Lease, Instant), Error> {
        let sent_at = Instant::now();
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let granted = bounded(timeout, "lease grant", client.lease_grant(seconds, None)).await?;
        let (keeper, answers) = bounded(
            timeout,
            "lease keep-alive",
            client.lease_keep_alive(granted.id()),
        )
        .await?;
        let lease = Lease {
            id: granted.id(),
            keeper,
            answers,
        };
        Ok((lease, surely_until(sent_at, granted.ttl(), timeout)?))
    }

    /// One keep-alive and its answer; returns the instant until which the lease surely holds.
    pub(crate) async fn keep_alive(&mut self, timeout: Duration) -> Result<Instant, Error> {
        let sent_at = Instant::now();
        let (keeper, answers) = (&mut self.keeper, &mut self.answers);
        let answer = bounded(timeout, "lease keep-alive", async move {
            keeper.keep_alive().await?;
            answers.message().await
        })
        .await?
        .ok_or(Error::StreamEnded("lease keep-alive"))?;
        surely_until(sent_at, answer.ttl(), timeout)
    }
}

/// `sent_at + ttl - margin`: etcd counts the TTL from when it got the request, some time after
/// `sent_at`, so this is never later than the real expiry; the margin (one call's timeout)
/// leaves a leader time to notice before it runs out. A TTL of 0 or less: the lease is gone.
fn surely_until(sent_at: Instant, ttl_seconds: i64, margin: Duration) -> Result<Instant, Error> {
    let ttl = u64::try_from(ttl_seconds)
        .ok()
        .filter(|&s| s > 0)
        .ok_or(Error::LeaseExpired)?;
    Ok(sent_at + Duration::from_secs(ttl).saturating_sub(margin))
}

/// Revokes lease `id`: every key under it goes at once, so the others see this replica gone
/// (and its leadership and drains) without waiting for the TTL.
pub(crate) async fn revoke(client: &mut Client, id: i64, timeout: Duration) -> Result<(), Error> {
    bounded(timeout, "lease revoke", client.lease_revoke(id)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_surely_holds_until_the_ttl_less_the_margin_from_the_send() {
        let sent = Instant::now();
        let margin = Duration::from_millis(500);
        assert_eq!(
            surely_until(sent, 5, margin).unwrap(),
            sent + Duration::from_millis(4500)
        );
        assert_eq!(surely_until(sent, 1, Duration::from_secs(2)).unwrap(), sent);
        assert!(matches!(
            surely_until(sent, 0, margin),
            Err(Error::LeaseExpired)
        ));
        assert!(matches!(
            surely_until(sent, -1, margin),
            Err(Error::LeaseExpired)
        ));
    }
}
