//! What wakes a connection's task: its streams' futures and bodies (each polled with a waker
//! that names its stream), and the readers of request bodies, which give flow-control window
//! back as they take data. The connection polls only the streams named, so a connection with
//! hundreds of streams in flight does not poll them all on every wake-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Wake, Waker};

use futures_util::task::AtomicWaker;

#[derive(Debug, Default)]
pub(crate) struct Shared {
    waker: AtomicWaker,
    events: Mutex<Events>,
}

#[derive(Debug, Default)]
pub(crate) struct Events {
    /// Streams to poll.
    pub ready: Vec<u32>,
    /// Bytes of request bodies taken by their readers: (stream, bytes).
    pub released: Vec<(u32, usize)>,
    /// Streams whose body's reader waits for data the client holds back for a 100.
    pub continues: Vec<u32>,
}

impl Shared {
    /// Called at each poll of the connection, before it looks at the events.
    pub fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }

    /// Takes what happened since the last call (swapping in `spare`, the connection's empty
    /// vectors, so neither side allocates once both have grown).
    pub fn take(&self, spare: &mut Events) {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *events, spare);
    }

    pub fn released(&self, stream: u32, bytes: usize) {
        self.event(|e| e.released.push((stream, bytes)));
    }

    pub fn continue_wanted(&self, stream: u32) {
        self.event(|e| e.continues.push(stream));
    }

    fn ready(&self, stream: u32) {
        self.event(|e| e.ready.push(stream));
    }

    /// Records an event and wakes the connection's task.
    fn event(&self, add: impl FnOnce(&mut Events)) {
        add(&mut self.events.lock().unwrap_or_else(PoisonError::into_inner));
        self.waker.wake();
    }
}

/// The waker a stream's future and body are polled with.
#[derive(Debug)]
pub(crate) struct StreamWaker {
    id: u32,
    /// Already in `ready`, not yet polled: a second wake adds nothing.
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl StreamWaker {
    pub fn new(id: u32, shared: &Arc<Shared>) -> Arc<StreamWaker> {
        Arc::new(StreamWaker {
            id,
            queued: AtomicBool::new(false),
            shared: Arc::clone(shared),
        })
    }

    /// Called just before the stream is polled: a wake from now on queues it again.
    pub fn polling(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl Wake for StreamWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.shared.ready(self.id);
        }
    }
}
