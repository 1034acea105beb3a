//! A one-way signal to every client connection (shutdown began; its deadline passed), which
//! each connection checks at every one of its wake-ups.
//!
//! A `CancellationToken` alone costs a lock at each check (`is_cancelled` takes the token's
//! mutex, and so does every poll of `cancelled()`), and one token shared by the connections of
//! every data-plane thread moves that lock's cache line from core to core, several times per
//! request. Here the check reads a flag that is written once, when the signal fires, and so
//! stays in every core's cache; the token is only for waking whoever waits.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

#[derive(Debug, Default)]
pub(crate) struct Signal {
    fired: AtomicBool,
    token: CancellationToken,
}

impl Signal {
    /// The flag is set before the token wakes anyone, so every task it wakes reads it set.
    pub fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.token.cancel();
    }

    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Ready once the signal fired: for a single wait; a task that checks at each of many
    /// wake-ups takes a [`Watch`].
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// A token cancelled with the signal, for a task that keeps its own.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

/// One task's watch on a [`Signal`]: its first poll puts the task on the token's list (a lock,
/// once), later polls read the flag. A task's waker does not change, so the one registration
/// keeps waking it.
pub(crate) struct Watch<'a, 'b> {
    signal: &'a Signal,
    wait: Pin<&'b mut WaitForCancellationFuture<'a>>,
    registered: bool,
}

impl<'a, 'b> Watch<'a, 'b> {
    /// `wait` is `signal.cancelled()`, pinned where the task keeps it.
    pub fn new(signal: &'a Signal, wait: Pin<&'b mut WaitForCancellationFuture<'a>>) -> Self {
        Watch {
            signal,
            wait,
            registered: false,
        }
    }

    /// Ready once the signal fired.
    pub fn wait(&mut self) -> impl Future<Output = ()> + '_ {
        poll_fn(|cx| {
            if self.signal.fired() {
                return Poll::Ready(());
            }
            if !self.registered {
                self.registered = true;
                return self.wait.as_mut().poll(cx);
            }
            Poll::Pending
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn fired_is_seen_by_every_check_after_it() {
        let s = Signal::default();
        assert!(!s.fired());
        s.fire();
        assert!(s.fired());
        assert!(s.token().is_cancelled());
    }

    /// A task polled many times before the signal (as a connection's select is, once per
    /// wake-up) is still woken when it fires, on another thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_polled_many_times_is_woken_when_the_signal_fires() {
        let signal = Arc::new(Signal::default());
        let (tick, mut ticks) = tokio::sync::mpsc::channel::<()>(1);
        let watcher = {
            let signal = Arc::clone(&signal);
            tokio::spawn(async move {
                let wait = std::pin::pin!(signal.cancelled());
                let mut watch = Watch::new(&signal, wait);
                let mut woken = 0u32;
                loop {
                    tokio::select! {
                        biased;
                        () = watch.wait() => return woken,
                        Some(()) = ticks.recv() => woken += 1,
                    }
                }
            })
        };
        for _ in 0..50 {
            tick.send(()).await.unwrap();
        }
        // Room again (capacity 1): the task took the last tick, and counted it in that poll.
        tokio::time::timeout(Duration::from_secs(5), tick.reserve())
            .await
            .expect("the task takes every tick")
            .unwrap();
        std::thread::spawn({
            let signal = Arc::clone(&signal);
            move || signal.fire()
        })
        .join()
        .unwrap();
        let woken = tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .expect("the watching task ended once the signal fired")
            .unwrap();
        assert_eq!(woken, 50, "the task was woken by every tick first");
    }

    #[tokio::test]
    async fn a_watch_made_after_the_signal_is_ready_at_once() {
        let s = Signal::default();
        s.fire();
        let wait = std::pin::pin!(s.cancelled());
        let mut watch = Watch::new(&s, wait);
        tokio::time::timeout(Duration::from_secs(5), watch.wait())
            .await
            .expect("ready at once");
    }
}
