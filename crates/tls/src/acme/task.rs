//! The loop that keeps a certificate: order when there is none or it is due, look again at
//! least daily, back off after failures. Whatever fails is logged and tried again later; the
//! certificate being served is never taken away.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Status;
use super::policy::{self, Backoff, Next};

/// Gets a certificate and installs it; answers its validity (`not_before`, `not_after`).
pub trait Issue: Send + Sync + 'static {
    fn issue(&self) -> impl Future<Output = Result<(SystemTime, SystemTime), String>> + Send;
}

pub struct Loop<I> {
    pub issuer: I,
    pub renew_before: Duration,
    /// When the certificate served at start is due (`None`: nothing served).
    pub due: Option<SystemTime>,
    pub backoff: Backoff,
    pub status: Arc<Mutex<Status>>,
    /// Look now (a reload), whatever the plan said.
    pub wake: Arc<Notify>,
    pub cancel: CancellationToken,
    /// The wall clock, for certificate dates (tests move it).
    pub now: fn() -> SystemTime,
    /// What the log calls this certificate.
    pub what: String,
}

impl<I: Issue> Loop<I> {
    pub async fn run(mut self) {
        loop {
            update(&self.status, |s| s.checks += 1);
            let wait = match policy::next((self.now)(), self.due) {
                Next::Wait(wait) => wait,
                Next::Order => {
                    update(&self.status, |s| s.orders += 1);
                    tracing::info!(domains = %self.what, "acme: ordering a certificate");
                    let Some(result) = self.cancel.run_until_cancelled(self.issuer.issue()).await
                    else {
                        return;
                    };
                    match result {
                        Ok((not_before, not_after)) => {
                            self.backoff.succeeded();
                            let due = policy::renew_at(not_before, not_after, self.renew_before);
                            self.due = Some(due);
                            update(&self.status, |s| {
                                s.issued += 1;
                                s.failures = 0;
                                s.last_error = None;
                                s.retry_in = None;
                                s.renew_at = Some(due);
                            });
                            tracing::info!(
                                domains = %self.what,
                                expires_in_days = days_until(not_after, (self.now)()),
                                "acme: certificate obtained and installed"
                            );
                            continue;
                        }
                        Err(error) => {
                            let wait = self.backoff.failed();
                            // Logged before the status says so, for whoever watches both.
                            tracing::warn!(
                                domains = %self.what,
                                %error,
                                retry_in = ?wait,
                                served = if self.due.is_some() { "the current certificate" } else { "nothing yet" },
                                "acme: could not obtain a certificate; trying again later"
                            );
                            update(&self.status, |s| {
                                s.failures += 1;
                                s.last_error = Some(error.clone());
                                s.retry_in = Some(wait);
                            });
                            wait
                        }
                    }
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                // A reload looks again at once; after failures, that is a retry now.
                _ = self.wake.notified() => {}
            }
        }
    }
}

fn update<T>(status: &Mutex<Status>, f: impl FnOnce(&mut Status) -> T) -> T {
    f(&mut status.lock().unwrap_or_else(|e| e.into_inner()))
}

fn days_until(t: SystemTime, now: SystemTime) -> u64 {
    t.duration_since(now).unwrap_or_default().as_secs() / 86_400
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const DAY: Duration = Duration::from_secs(86_400);

    /// Fails `failures` times, then issues 90-day certificates from "now".
    struct Fake {
        failures: usize,
        calls: Arc<AtomicUsize>,
        times: Arc<Mutex<Vec<tokio::time::Instant>>>,
    }

    impl Issue for Fake {
        async fn issue(&self) -> Result<(SystemTime, SystemTime), String> {
            self.times.lock().unwrap().push(tokio::time::Instant::now());
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                return Err(format!("refused #{n}"));
            }
            let now = SystemTime::UNIX_EPOCH + DAY * 1000;
            Ok((now, now + 90 * DAY))
        }
    }

    fn start(
        failures: usize,
        due: Option<SystemTime>,
    ) -> (Loop<Fake>, Arc<Mutex<Vec<tokio::time::Instant>>>) {
        let times = Arc::new(Mutex::new(Vec::new()));
        let looped = Loop {
            issuer: Fake {
                failures,
                calls: Arc::default(),
                times: Arc::clone(&times),
            },
            renew_before: 30 * DAY,
            due,
            backoff: Backoff::default(),
            status: Arc::default(),
            wake: Arc::new(Notify::new()),
            cancel: CancellationToken::new(),
            // The wall clock stands still: only the loop's own sleeps pass (paused tokio time).
            now: || SystemTime::UNIX_EPOCH + DAY * 1000,
            what: "a.example".into(),
        };
        (looped, times)
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_with_doubling_waits_then_it_settles() {
        let (looped, times) = start(3, None);
        let status = Arc::clone(&looped.status);
        let cancel = looped.cancel.clone();
        let task = tokio::spawn(looped.run());
        // Long enough for 1 + 2 + 4 minutes of backoff, and a day of checks after.
        tokio::time::sleep(2 * DAY).await;
        let times = times.lock().unwrap().clone();
        let gaps: Vec<u64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        assert_eq!(
            gaps,
            [60, 120, 240],
            "one order per failure, then one success"
        );
        let s = status.lock().unwrap().clone();
        assert_eq!((s.orders, s.issued, s.failures), (4, 1, 0));
        assert_eq!(s.renew_at, Some(SystemTime::UNIX_EPOCH + DAY * 1060));
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_certificate_not_due_is_kept_without_ordering() {
        let (looped, times) = start(0, Some(SystemTime::UNIX_EPOCH + DAY * 1030));
        let cancel = looped.cancel.clone();
        let task = tokio::spawn(looped.run());
        tokio::time::sleep(10 * DAY).await;
        assert!(times.lock().unwrap().is_empty());
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_retries_at_once_after_a_failure() {
        let (looped, times) = start(1, None);
        let wake = Arc::clone(&looped.wake);
        let cancel = looped.cancel.clone();
        let task = tokio::spawn(looped.run());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(times.lock().unwrap().len(), 1);
        wake.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            times.lock().unwrap().len(),
            2,
            "ordered again before the minute"
        );
        cancel.cancel();
        task.await.unwrap();
    }
}
