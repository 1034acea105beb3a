//! The requests held for an upstream, as its servers see them: a count and a queue to wake.
//!
//! A held request waits for room as well as for a start: room appears whenever a request ends
//! on one of the upstream's servers, so [`crate::InFlightGuard`]'s drop wakes the next one in
//! line. One `Waiters` is shared by every generation of an upstream (a reload's successor takes
//! its predecessor's), because a server kept by a reload keeps its `Waiters`: its requests
//! ending must wake the requests held for the upstream it belongs to now.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

#[derive(Debug, Default)]
pub struct Waiters {
    /// Requests held, across generations. SeqCst, paired with the servers' in-flight counters:
    /// a held request counts itself here before it reads a counter, and an ending request
    /// lowers its counter before it reads this, so at least one of the two sees the other.
    waiting: AtomicUsize,
    /// `notify_one` wakes held requests one at a time in arrival order (tokio's `Notify` is
    /// FIFO), and hands a wake-up on to the next waiter if the woken one gave up meanwhile.
    room: Notify,
}

impl Waiters {
    pub(crate) fn enter(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn leave(&self) {
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Room may have appeared: wake the first request in line, if any waits. The test is one
    /// load, so a request ending while nothing is held pays no more than that.
    #[inline]
    pub fn wake_one(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.room.notify_one();
        }
    }

    /// Resolves at the next [`Waiters::wake_one`]. Enable it (`Notified::enable`) before
    /// looking for room, so a wake-up between the look and the wait is not lost.
    pub fn room(&self) -> Notified<'_> {
        self.room.notified()
    }
}
