//! Polling instead of sleeping.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What a [`wait_until`] probe can return: `bool` (done when `true`) or `Option<T>` (done
/// when `Some`, and the `T` is handed back).
pub trait Ready {
    /// What [`wait_until`] returns.
    type Output;
    /// `Some` when the wait is over.
    fn ready(self) -> Option<Self::Output>;
}

impl Ready for bool {
    type Output = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Output = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Calls `probe` every 20 ms until it reports ready, and returns what it reported.
///
/// Panics naming `what` if `timeout` passes first. The probe runs at least once, even with a
/// zero timeout, and a slow probe is not cut short: keep probes bounded themselves.
///
/// ```no_run
/// # async fn f(addr: std::net::SocketAddr) {
/// use std::time::Duration;
/// rouse_e2e::wait_until("backend idle", Duration::from_secs(5), || async move {
///     rouse_e2e::stats(addr).await.in_flight == 0
/// })
/// .await;
/// # }
/// ```
pub async fn wait_until<F, Fut, R>(what: &str, timeout: Duration, mut probe: F) -> R::Output
where
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
    R: Ready,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(out) = probe().await.ready() {
            return out;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
