//! What one client connection is doing, and when it has waited too long for a request.
//!
//! hyper 1.12's `http1().header_read_timeout` is armed when hyper starts reading a head: for
//! the first request, only after hyper-util's auto builder has told HTTP/1 from h2 by the
//! first bytes, a read with no timeout of its own (a connection that sent nothing was never
//! closed, and one that held its first byte back got the whole timeout again from there); for
//! later ones, when the previous exchange ended. h2 has neither a head timer nor an idle
//! timeout (its keep-alive pings keep a silent client's connection open for ever). So the
//! connection's requests are counted here (a request is open from its head until hyper drops
//! its response body) and the connection's task asks [`Activity::verdict`] when to give up:
//!
//! - no request yet: its head must be whole within `client_header_timeout` of accept;
//! - HTTP/1 between requests: the next head must be whole within `client_header_timeout` of
//!   the end of the previous response, and an idle keep-alive connection waits at most
//!   `client_idle_timeout` (the shorter applies). The end is the last byte written to the
//!   socket, not the moment hyper took the body's last frame, so the tail of a response
//!   that a slow client is still reading is not cut (`send_timeout` bounds that). On h2 a
//!   client can make rouse write at will (PING, SETTINGS), so writes do not count there;
//! - h2 (known from its preface) with no open stream, before its first request too:
//!   `client_idle_timeout`, then GOAWAY.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

use rouse_core::time::deadline;

/// After GOAWAY, how long an h2 connection with no stream may take to close by itself (the
/// client answers the GOAWAY's PING) before it is dropped.
pub(crate) const GOAWAY_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header: Duration,
    pub idle: Duration,
}

#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<State>,
    accepted: Instant,
    /// When bytes last went to the client, in nanoseconds since `accepted` (lock-free: every
    /// write sets it).
    last_write: AtomicU64,
    /// Poked when a deadline may have moved earlier (the last open request ended, the client
    /// turned out to speak h2), so the connection's task re-arms its timer.
    changed: Notify,
}

#[derive(Debug)]
struct State {
    open: usize,
    /// Accept, or when the last request ended.
    since: Instant,
    served: bool,
    h2: bool,
    going_away: Option<Instant>,
    /// Set at shutdown: a request opening is news (see `can_finish`).
    watch_opens: bool,
}

/// What the connection's task should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Requests are open: other timeouts (body, read, send) bound them.
    Busy,
    /// Nothing to do before this instant.
    WaitUntil(Instant),
    /// An h2 connection idle too long: send GOAWAY.
    GoAway,
    /// Close the connection without a word.
    Close,
}

impl Activity {
    pub fn new(accepted: Instant) -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(State {
                open: 0,
                since: accepted,
                served: false,
                h2: false,
                going_away: None,
                watch_opens: false,
            }),
            accepted,
            last_write: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    /// Bytes went to the client.
    pub fn wrote(&self) {
        let nanos = self.accepted.elapsed().as_nanos();
        self.last_write
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn last_write(&self) -> Instant {
        let since = Duration::from_nanos(self.last_write.load(Ordering::Relaxed));
        deadline(self.accepted, since)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent between statements; a panic elsewhere must not stop
        // connections from being timed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client spoke h2 (its first bytes were the preface).
    pub fn set_h2(&self) {
        self.lock().h2 = true;
        self.changed.notify_one();
    }

    /// A request head arrived; the request is open until the guard is dropped.
    pub fn open(self: &Arc<Self>) -> Open {
        let mut s = self.lock();
        s.open += 1;
        s.served = true;
        if s.watch_opens {
            self.changed.notify_one();
        }
        Open(Arc::clone(self))
    }

    /// At shutdown: whether the connection can be told to finish without a race, because a
    /// request is open (its answer then says `Connection: close`) or it speaks h2 (GOAWAY).
    /// Until it can, the next request opening pokes [`Activity::changed`].
    pub fn can_finish(&self) -> bool {
        let mut s = self.lock();
        s.watch_opens = true;
        s.open > 0 || s.h2
    }

    /// No request is open: every answer's body is done with.
    pub fn none_open(&self) -> bool {
        self.lock().open == 0
    }

    pub fn going_away(&self, now: Instant) {
        self.lock().going_away = Some(now);
    }

    /// Resolves when the verdict may have changed other than by time passing (or already has
    /// since the last call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    pub fn verdict(&self, now: Instant, limits: Limits) -> Verdict {
        let s = self.lock();
        if s.open > 0 {
            return Verdict::Busy;
        }
        if let Some(at) = s.going_away {
            let due = deadline(s.since.max(at), GOAWAY_GRACE);
            return if now >= due {
                Verdict::Close
            } else {
                Verdict::WaitUntil(due)
            };
        }
        let (since, limit) = if s.h2 {
            (s.since, limits.idle)
        } else if s.served {
            (
                s.since.max(self.last_write()),
                limits.header.min(limits.idle),
            )
        } else {
            (s.since, limits.header)
        };
        let due = deadline(since, limit);
        match now >= due {
            false => Verdict::WaitUntil(due),
            true if s.h2 => Verdict::GoAway,
            true => Verdict::Close,
        }
    }
}

/// One open request of a connection.
#[derive(Debug)]
pub(crate) struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.open = s.open.saturating_sub(1);
        if s.open == 0 {
            s.since = Instant::now();
            drop(s);
            self.0.changed.notify_one();
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request open until hyper is done with it (sent, or the
    /// stream reset).
    pub(crate) struct Tracked<B> {
        #[pin]
        inner: B,
        _open: Open,
    }
}

impl<B> Tracked<B> {
    pub fn new(inner: B, open: Open) -> Tracked<B> {
        Tracked { inner, _open: open }
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        header: Duration::from_secs(60),
        idle: Duration::from_secs(75),
    };

    #[tokio::test(start_paused = true)]
    async fn a_first_head_is_due_from_accept() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        assert_eq!(
            a.verdict(t0, LIMITS),
            Verdict::WaitUntil(t0 + LIMITS.header)
        );
        assert_eq!(a.verdict(t0 + LIMITS.header, LIMITS), Verdict::Close);
    }

    #[tokio::test(start_paused = true)]
    async fn http1_between_requests_the_shorter_limit_counts_from_the_end_of_the_response() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        let open = a.open();
        tokio::time::advance(Duration::from_secs(500)).await;
        assert_eq!(a.verdict(Instant::now(), LIMITS), Verdict::Busy);
        drop(open);
        let end = Instant::now();
        assert_eq!(
            a.verdict(end, LIMITS),
            Verdict::WaitUntil(end + Duration::from_secs(60))
        );
        let short_idle = Limits {
            idle: Duration::from_secs(2),
            ..LIMITS
        };
        assert_eq!(
            a.verdict(end, short_idle),
            Verdict::WaitUntil(end + Duration::from_secs(2))
        );
        // The end was announced, so a waiting task re-arms.
        tokio::time::timeout(Duration::from_millis(1), a.changed())
            .await
            .expect("notified");
    }

    #[tokio::test(start_paused = true)]
    async fn http1_counts_from_the_last_byte_written_not_from_the_body_s_end() {
        let a = Activity::new(Instant::now());
        drop(a.open());
        let end = Instant::now();
        tokio::time::advance(Duration::from_secs(50)).await;
        // A slow reader took the response's tail 50 s after hyper took its last frame.
        a.wrote();
        let flushed = Instant::now();
        assert_eq!(
            a.verdict(end + Duration::from_secs(60), LIMITS),
            Verdict::WaitUntil(flushed + Duration::from_secs(60))
        );
        // On h2 writes do not count: a client can make rouse write PING acks at will.
        a.set_h2();
        assert_eq!(
            a.verdict(flushed, LIMITS),
            Verdict::WaitUntil(end + LIMITS.idle)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_h2_connection_gets_goaway_then_is_dropped_after_a_grace() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        a.set_h2();
        drop(a.open());
        let end = Instant::now();
        assert_eq!(
            a.verdict(end, LIMITS),
            Verdict::WaitUntil(end + LIMITS.idle)
        );
        let later = end + LIMITS.idle;
        assert_eq!(a.verdict(later, LIMITS), Verdict::GoAway);
        a.going_away(later);
        assert_eq!(
            a.verdict(later, LIMITS),
            Verdict::WaitUntil(later + GOAWAY_GRACE)
        );
        assert_eq!(a.verdict(later + GOAWAY_GRACE, LIMITS), Verdict::Close);
    }

    #[tokio::test(start_paused = true)]
    async fn huge_limits_do_not_overflow() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        let huge = Limits {
            header: Duration::MAX,
            idle: Duration::MAX,
        };
        assert!(matches!(a.verdict(t0, huge), Verdict::WaitUntil(_)));
    }
}
