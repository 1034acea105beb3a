//! Idle raw connections to one server for the fast path: the same LIFO list, bounds and idle
//! timeout as the pool's hyper connections, holding the socket itself (`connect::Stream`:
//! TCP, unix or TLS), so a request is written and its response read with no task or channel
//! in between.

use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

use crate::connect::Stream;

#[derive(Debug, Default)]
pub struct Idle {
    list: Mutex<Vec<(Stream, Instant)>>,
}

impl Idle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Stream, Instant)>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used connection that is younger than `idle_timeout` and still open.
    pub fn checkout(&self, now: Instant, idle_timeout: Duration) -> Option<Stream> {
        loop {
            let (mut stream, since) = self.lock().pop()?;
            if now.saturating_duration_since(since) < idle_timeout && still_open(&mut stream) {
                return Some(stream);
            }
        }
    }

    pub fn put(&self, stream: Stream, now: Instant, max_idle: usize) {
        if max_idle == 0 {
            return;
        }
        let mut list = self.lock();
        if list.len() >= max_idle {
            // The oldest is the least likely to be needed again.
            list.remove(0);
        }
        list.push((stream, now));
    }

    pub fn evict_expired(&self, now: Instant, idle_timeout: Duration) {
        self.lock()
            .retain(|(_, since)| now.saturating_duration_since(*since) < idle_timeout);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Whether an idle connection can carry a request: a read that would block says so; EOF (the
/// server closed it while idle), an error or bytes nobody asked for say it cannot.
fn still_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let mut cx = Context::from_waker(Waker::noop());
    matches!(
        std::pin::Pin::new(stream).poll_read(&mut cx, &mut buf),
        Poll::Pending
    )
}
