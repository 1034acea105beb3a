//! The body of a request on its way to a server, which tells when it has been sent in full.
//!
//! `read_timeout` is the time a server may take to answer once it has the whole request, as
//! nginx's `proxy_read_timeout`: counting it from the first byte would cut off every upload
//! that takes longer than the timeout to transfer. The upload itself may not pause for longer
//! than `client_body_timeout` between two reads.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;

use crate::idle::{IdleTimer, Quiet};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Set once the request body has been handed over entirely.
#[derive(Debug, Default)]
pub struct Sent {
    done: AtomicBool,
    notify: Notify,
    /// The client stopped sending for longer than `client_body_timeout`.
    client_quiet: AtomicBool,
    /// Reading the body from the client failed: bad framing (a chunk size that is not hex),
    /// or the connection ended early. The client's fault, whatever the server then says.
    client_failed: AtomicBool,
}

impl Sent {
    /// Whether the upload was cut off because the client went quiet.
    pub fn client_went_quiet(&self) -> bool {
        self.client_quiet.load(Ordering::Acquire)
    }

    /// Whether the upload failed on the client's side.
    pub fn client_failed(&self) -> bool {
        self.client_failed.load(Ordering::Acquire)
    }

    fn mark(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }

    /// Resolves once the whole body was sent.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

pin_project_lite::pin_project! {
    #[derive(Debug)]
    pub struct RequestBody {
        #[pin]
        inner: Incoming,
        sent: Arc<Sent>,
        idle: IdleTimer,
    }
}

impl RequestBody {
    pub fn new(inner: Incoming, client_body_timeout: Duration) -> (RequestBody, Arc<Sent>) {
        let sent = Arc::new(Sent::default());
        if inner.is_end_stream() {
            sent.mark();
        }
        (
            RequestBody {
                inner,
                sent: Arc::clone(&sent),
                idle: IdleTimer::new(client_body_timeout),
            },
            sent,
        )
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.sent.mark(),
            Poll::Ready(Some(Err(_))) => this.sent.client_failed.store(true, Ordering::Release),
            _ => {}
        }
        if this.idle.expired(&polled, cx) {
            this.sent.client_quiet.store(true, Ordering::Release);
            let quiet = Quiet {
                what: "the client",
                after: this.idle.limit(),
            };
            return Poll::Ready(Some(Err(quiet.into())));
        }
        polled.map(|f| f.map(|r| r.map_err(BoxError::from)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
