//! The data plane's threads: one current-thread runtime per thread, each client connection
//! served its whole life on one of them.
//!
//! A multi-thread runtime's work-stealing scheduler pays cross-thread bookkeeping on every
//! wake-up, and a connection's tasks migrate between cores with their caches; a current-thread
//! runtime pays neither (about 6% more requests/s at one thread, more at two:
//! docs/benchmarks.md). The acceptor thread (accept.rs) gives each new connection to the
//! runtime with the fewest live tasks, which splits a burst of connects evenly and steers new
//! ones away from a runtime still busy with long-lived ones. What a connection spawns (h2
//! streams, upstream connections, upgraded splices) stays on its runtime.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

thread_local! {
    /// This thread's index among the workers; 0 on any other thread.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the data-plane thread this runs on (0 off the workers' threads): what is kept
/// per thread, such as idle raw connections (`h1::upstream`), is found by it.
pub(crate) fn current() -> usize {
    INDEX.with(Cell::get)
}

/// The most data-plane threads any [`Workers`] started: what is kept per thread is sized by it.
static THREADS: AtomicUsize = AtomicUsize::new(1);

/// How many data-plane threads there are (at least one).
pub(crate) fn count() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// N current-thread runtimes, each on a thread of its own, running until dropped.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    /// Where the search for the least loaded runtime starts, so ties go round-robin.
    next: AtomicUsize,
    stop: CancellationToken,
}

impl Workers {
    /// Starts `n` (at least one) threads named `rouse-worker-I`, each running a runtime that
    /// serves whatever is spawned on it until [`Workers`] is dropped.
    pub fn start(n: usize) -> std::io::Result<Arc<Workers>> {
        let stop = CancellationToken::new();
        THREADS.fetch_max(n.max(1), Ordering::Relaxed);
        let mut handles = Vec::with_capacity(n.max(1));
        let started = (0..n.max(1)).try_for_each(|i| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let until = stop.clone();
            std::thread::Builder::new()
                .name(format!("rouse-worker-{i}"))
                .spawn(move || {
                    INDEX.with(|index| index.set(i));
                    runtime.block_on(until.cancelled())
                })?;
            handles.push(handle);
            Ok::<(), std::io::Error>(())
        });
        if let Err(e) = started {
            // The runtimes already started end with `stop`.
            stop.cancel();
            return Err(e);
        }
        Ok(Arc::new(Workers {
            handles,
            next: AtomicUsize::new(0),
            stop,
        }))
    }

    /// How many runtimes there are.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Never: [`Workers::start`] starts at least one.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The runtime with the fewest live tasks (a connection's task and what it spawned: its
    /// upstream connections, h2 streams), ties taken in turn.
    pub(crate) fn pick(&self) -> &Handle {
        let n = self.handles.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = &self.handles[start];
        let mut least = best.metrics().num_alive_tasks();
        for i in 1..n {
            let h = &self.handles[(start + i) % n];
            let alive = h.metrics().num_alive_tasks();
            if alive < least {
                best = h;
                least = alive;
            }
        }
        best
    }
}

impl Drop for Workers {
    /// Each runtime stops its thread; tasks still on it are dropped (serve's shutdown has
    /// drained them by then).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_workers_threads_and_spread_over_them() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.len(), 2);
        let (release, hold) = tokio::sync::watch::channel(false);
        let mut names = Vec::new();
        for _ in 0..4 {
            let mut hold = hold.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            workers.pick().spawn(async move {
                let name = std::thread::current().name().map(str::to_owned);
                // The thread knows its index (what per-thread pools are found by).
                assert_eq!(name, Some(format!("rouse-worker-{}", current())));
                let _ = tx.send(name);
                // Alive until released, so the next pick sees this one's load.
                let _ = hold.wait_for(|r| *r).await;
            });
            names.push(rx.await.unwrap().unwrap());
        }
        release.send(true).unwrap();
        names.sort();
        assert_eq!(
            names,
            [
                "rouse-worker-0",
                "rouse-worker-0",
                "rouse-worker-1",
                "rouse-worker-1"
            ]
        );
    }

    #[test]
    fn off_the_workers_the_index_is_0() {
        assert_eq!(current(), 0);
        let index = std::thread::spawn(current).join().unwrap();
        assert_eq!(index, 0);
    }

    #[test]
    fn the_threads_end_once_dropped() {
        let workers = Workers::start(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        workers.pick().spawn(async move {
            // Dropped with its runtime, which drops `tx`.
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(workers);
        // Disconnected: the task was dropped with its runtime, its sender with it.
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(10)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
