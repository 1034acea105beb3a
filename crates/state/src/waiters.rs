//! The requests held for an upstream, as its servers see them: a count and a line.
//!
//! A held request waits for room as well as for a start: room appears whenever a request ends
//! on one of the upstream's servers, so [`crate::InFlightGuard`]'s drop rings the first one in
//! line. One `Waiters` is shared by every generation of an upstream (a reload's successor takes
//! its predecessor's), because a server kept by a reload keeps its `Waiters`: its requests
//! ending must wake the requests held for the upstream it belongs to now.
//!
//! A request keeps its place until it is served or gives up: only the first in line takes room,
//! and a wake-up that finds no room (one slot freed, taken by the one ahead) leaves it where it
//! was. (A queue of wake-ups, such as one `Notify` that held requests register with again after
//! each look, sent every request that lost such a race to the back: under `max_conns` some
//! waited several times longer than the rest, and timed out.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Waiters {
    /// Requests held, across generations. SeqCst, paired with the servers' in-flight counters:
    /// a held request counts itself here before it reads a counter, and an ending request
    /// lowers its counter before it reads this, so at least one of the two sees the other.
    waiting: AtomicUsize,
    next_ticket: AtomicU64,
    /// In arrival order: each held request's ticket and its own bell.
    line: Mutex<VecDeque<(u64, Arc<Notify>)>>,
}

impl Waiters {
    /// Takes a place at the end of the line (and counts the request as waiting).
    pub(crate) fn join(self: &Arc<Self>) -> Place {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let bell = Arc::new(Notify::new());
        self.line().push_back((ticket, Arc::clone(&bell)));
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Place {
            waiters: Arc::clone(self),
            ticket,
            bell,
        }
    }

    /// Room may have appeared: ring the first request in line, if any waits. The test is one
    /// load, so a request ending while nothing is held pays no more than that.
    #[inline]
    pub fn wake_one(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.ring_first();
        }
    }

    fn ring_first(&self) {
        if let Some((_, bell)) = self.line().front() {
            // `notify_one` keeps a permit when the first is not waiting yet (it is looking
            // for room): the wake-up is not lost.
            bell.notify_one();
        }
    }

    fn line(&self) -> MutexGuard<'_, VecDeque<(u64, Arc<Notify>)>> {
        // A poisoned lock only means a panic elsewhere mid-push or mid-remove of plain data.
        self.line.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A held request's place in line, given up when dropped (served, answered, or gone).
#[derive(Debug)]
pub struct Place {
    waiters: Arc<Waiters>,
    ticket: u64,
    bell: Arc<Notify>,
}

impl Place {
    /// Whether this request is the first in line: the one that may take room.
    pub fn is_first(&self) -> bool {
        self.waiters
            .line()
            .front()
            .is_some_and(|(t, _)| *t == self.ticket)
    }

    /// Resolves when this request is rung: room may have appeared while it is first in line.
    pub async fn rung(&self) {
        self.bell.notified().await;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let was_first = {
            let mut line = self.waiters.line();
            let was_first = line.front().is_some_and(|(t, _)| *t == self.ticket);
            line.retain(|(t, _)| *t != self.ticket);
            was_first
        };
        self.waiters.waiting.fetch_sub(1, Ordering::SeqCst);
        if was_first {
            // The next one is first now; the room this one was rung for may still be there
            // (it gave up, or more than one slot was free).
            self.waiters.ring_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_are_kept_in_arrival_order_until_given_up() {
        let w = Arc::new(Waiters::default());
        let a = w.join();
        let b = w.join();
        let c = w.join();
        assert!(a.is_first() && !b.is_first() && !c.is_first());
        // A wake-up rings the first, and only it; the others keep waiting where they are.
        w.wake_one();
        tokio::time::timeout(std::time::Duration::from_secs(1), a.rung())
            .await
            .expect("the first is rung");
        drop(b);
        assert!(a.is_first());
        // The first served: the next in line is first, and rung for what may be left.
        drop(a);
        assert!(c.is_first());
        tokio::time::timeout(std::time::Duration::from_secs(1), c.rung())
            .await
            .expect("rung when it became first");
        drop(c);
        assert_eq!(w.waiting.load(Ordering::SeqCst), 0);
        assert!(w.line().is_empty());
    }
}
