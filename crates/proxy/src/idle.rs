//! A body that may not go quiet for longer than a limit: nginx's `client_body_timeout` on the
//! way in, its `proxy_read_timeout` between reads of a response on the way out. Without it a
//! client that stops sending mid-upload, or a server that stops mid-response, would hold a
//! connection, a server slot and a drain forever.
//!
//! The timer is armed only when the inner body has nothing to give (`Pending`) and dropped
//! when data comes, so a body that arrives without waiting costs no timer at all.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

#[derive(Debug)]
pub(crate) struct IdleTimer {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    pub fn new(limit: Duration) -> IdleTimer {
        IdleTimer { limit, sleep: None }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// After the inner body answered `polled`: whether it has now been quiet for too long.
    /// Registers for a wake-up at the deadline while it waits.
    pub fn expired<T>(&mut self, polled: &Poll<T>, cx: &mut Context<'_>) -> bool {
        if polled.is_ready() {
            self.sleep = None;
            return false;
        }
        let limit = self.limit;
        self.sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)))
            .as_mut()
            .poll(cx)
            .is_ready()
    }
}

/// The error a body ends with when it went quiet for too long.
#[derive(Debug, thiserror::Error)]
#[error("{what} sent nothing for {after:?}")]
pub(crate) struct Quiet {
    pub what: &'static str,
    pub after: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_only_after_the_limit_of_quiet() {
        let mut t = IdleTimer::new(Duration::from_secs(5));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let pending: Poll<()> = Poll::Pending;
        assert!(!t.expired(&pending, &mut cx));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!t.expired(&pending, &mut cx));
        // Data came: the count starts again at the next wait.
        assert!(!t.expired(&Poll::Ready(()), &mut cx));
        assert!(!t.expired(&pending, &mut cx));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!t.expired(&pending, &mut cx));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(t.expired(&pending, &mut cx));
    }
}
