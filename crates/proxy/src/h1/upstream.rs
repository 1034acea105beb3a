//! Idle raw connections to one server for the fast path: the same LIFO list, bounds and idle
//! timeout as the pool's hyper connections, holding the socket itself (`connect::Stream`:
//! TCP, unix or TLS), so a request is written and its response read with no task or channel
//! in between.
//!
//! One list per data-plane thread (`workers::current`): a socket's readiness comes through the
//! reactor of the runtime it was registered with, so a connection taken up on another thread
//! would have every read and write woken across threads (the other runtime's reactor first,
//! then a cross-thread wake-up). As nginx's `keepalive`, the bound holds per thread.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

use crate::connect::Stream;

type List = Vec<(Stream, Instant)>;

#[derive(Debug, Default)]
pub struct Idle {
    /// By data-plane thread; made by the first put (a pool never used holds none).
    lists: OnceLock<Box<[Slot]>>,
}

/// One thread's list, alone on its cache lines: a lock over every thread's lists made each
/// request's checkout and put move that lock's line between the cores (128 bytes: x86's
/// prefetcher fetches lines in pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(Mutex<List>);

impl Slot {
    fn lock(&self) -> MutexGuard<'_, List> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Idle {
    /// This thread's list. A thread past those counted when the lists were made (workers
    /// started later, in tests) shares one, which stays correct.
    fn here(lists: &[Slot]) -> &Slot {
        &lists[crate::workers::current() % lists.len()]
    }

    /// The connection this thread used last that is younger than `idle_timeout` and still
    /// open.
    pub fn checkout(&self, now: Instant, idle_timeout: Duration) -> Option<Stream> {
        let slot = Self::here(self.lists.get()?);
        loop {
            let (mut stream, since) = slot.lock().pop()?;
            if now.saturating_duration_since(since) < idle_timeout && still_open(&mut stream) {
                return Some(stream);
            }
        }
    }

    /// Keeps `stream` for this thread's next request; past `max_idle` this thread's oldest
    /// goes (closed once the lock is let go).
    pub fn put(&self, stream: Stream, now: Instant, max_idle: usize) {
        if max_idle == 0 {
            return;
        }
        let lists = self.lists.get_or_init(|| {
            let n = crate::workers::count().max(crate::workers::current() + 1);
            (0..n).map(|_| Slot::default()).collect()
        });
        let oldest = {
            let mut list = Self::here(lists).lock();
            // The oldest is the least likely to be needed again.
            let oldest = (list.len() >= max_idle).then(|| list.remove(0));
            list.push((stream, now));
            oldest
        };
        drop(oldest);
    }

    fn slots(&self) -> &[Slot] {
        self.lists.get().map_or(&[], |l| l)
    }

    pub fn evict_expired(&self, now: Instant, idle_timeout: Duration) {
        for slot in self.slots() {
            slot.lock()
                .retain(|(_, since)| now.saturating_duration_since(*since) < idle_timeout);
        }
    }

    pub fn len(&self) -> usize {
        self.slots().iter().map(|s| s.lock().len()).sum()
    }
}

/// Whether an idle connection can carry a request: a read that would block says so; EOF (the
/// server closed it while idle), an error or bytes nobody asked for say it cannot.
fn still_open(stream: &mut Stream) -> bool {
    match stream {
        Stream::Tcp(s) => crate::sock::quiet(s),
        Stream::Unix(s) => crate::sock::quiet(s),
        Stream::Tls(_) => {
            let mut byte = [0u8; 1];
            let mut buf = ReadBuf::new(&mut byte);
            let mut cx = Context::from_waker(Waker::noop());
            matches!(
                std::pin::Pin::new(stream).poll_read(&mut cx, &mut buf),
                Poll::Pending
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workers::Workers;

    /// A connection to a listener on 127.0.0.1:0 (the listener kept, so it stays open).
    async fn connection() -> (Stream, tokio::net::TcpListener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (Stream::Tcp(stream), listener)
    }

    /// Runs `f` on the next worker `pick` gives; its thread's index and `f`'s answer.
    async fn on<T: Send + 'static>(
        workers: &Workers,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> (usize, T) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        workers.pick().spawn(async move {
            let _ = tx.send((crate::workers::current(), f()));
        });
        rx.await.unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_taken_up_again_only_on_the_thread_that_kept_it() {
        let workers = Workers::start(2).unwrap();
        let idle = std::sync::Arc::new(Idle::default());
        let limit = Duration::from_secs(60);
        let (stream, _listener) = connection().await;
        let (keeper, ()) = {
            let idle = std::sync::Arc::clone(&idle);
            on(&workers, move || idle.put(stream, Instant::now(), 8)).await
        };
        // Ask from each thread (picks go round; bounded): the other thread finds none and
        // leaves it kept; the keeper's thread gets it.
        let mut asked = [false; 2];
        for _ in 0..8 {
            let checkout = {
                let idle = std::sync::Arc::clone(&idle);
                move || idle.checkout(Instant::now(), limit).is_some()
            };
            let (thread, found) = on(&workers, checkout).await;
            if thread == keeper {
                assert!(found, "the thread that kept it finds it");
                assert_eq!(idle.len(), 0);
                asked[thread] = true;
                break;
            }
            assert!(!found, "thread {thread} found thread {keeper}'s connection");
            assert_eq!(idle.len(), 1);
            asked[thread] = true;
        }
        assert_eq!(asked, [true, true], "both threads asked");
    }
}
