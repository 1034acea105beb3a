//! The body of a request on its way to a server, which tells when it has been sent in full.
//!
//! `read_timeout` is the time a server may take to answer once it has the whole request, as
//! nginx's `proxy_read_timeout`: counting it from the first byte would cut off every upload
//! that takes longer than the timeout to transfer. The upload itself may not pause for longer
//! than `client_body_timeout` between two reads, nor pass `max_request_body`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::client_body::ClientBody;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

use crate::buffer::request::{TooLarge, linger};
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
    /// The body passed `max_request_body` and was cut there.
    too_large: AtomicBool,
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

    /// Whether the upload was cut off at `max_request_body`.
    pub fn too_large(&self) -> bool {
        self.too_large.load(Ordering::Acquire)
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

/// The request body on its way to a server: streamed from the client as it comes, or
/// replayed from what rouse read beforehand (`request_buffering`).
pub struct RequestBody {
    kind: Kind,
    sent: Arc<Sent>,
    idle: IdleTimer,
    /// A streamed body stops with an error before passing this many bytes
    /// (`max_request_body`): the server never gets more.
    limit: u64,
    passed: u64,
}

enum Kind {
    Streamed(ClientBody),
    Buffered {
        frames: BoxStream<'static, std::io::Result<Frame<Bytes>>>,
        len: u64,
        exact: bool,
        done: bool,
    },
    /// Cut at the limit; the client's body went to [`linger`].
    Cut,
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Streamed(_) => "streamed",
            Kind::Buffered { .. } => "buffered",
            Kind::Cut => "cut",
        };
        f.debug_struct("RequestBody")
            .field("kind", &kind)
            .field("passed", &self.passed)
            .finish()
    }
}

impl RequestBody {
    /// The client's body as it comes, cut with [`TooLarge`] before it passes `limit` bytes.
    pub fn new(
        inner: ClientBody,
        client_body_timeout: Duration,
        limit: u64,
    ) -> (RequestBody, Arc<Sent>) {
        let sent = Arc::new(Sent::default());
        if inner.is_end_stream() {
            sent.mark();
        }
        (
            RequestBody {
                kind: Kind::Streamed(inner),
                sent: Arc::clone(&sent),
                idle: IdleTimer::new(client_body_timeout),
                limit,
                passed: 0,
            },
            sent,
        )
    }

    /// A body read whole beforehand: `len` bytes of data frames, then trailers unless
    /// `exact` (a body with trailers does not say its length: over HTTP/1.1 it must go
    /// chunked, the only framing that carries them).
    pub(crate) fn buffered(
        frames: BoxStream<'static, std::io::Result<Frame<Bytes>>>,
        len: u64,
        exact: bool,
    ) -> (RequestBody, Arc<Sent>) {
        let sent = Arc::new(Sent::default());
        (
            RequestBody {
                kind: Kind::Buffered {
                    frames,
                    len,
                    exact,
                    done: false,
                },
                sent: Arc::clone(&sent),
                // Nothing here waits on the client any more.
                idle: IdleTimer::new(Duration::MAX),
                limit: u64::MAX,
                passed: 0,
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
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Streamed(inner) => {
                let polled = Pin::new(inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => this.sent.mark(),
                    Poll::Ready(Some(Err(_))) => {
                        this.sent.client_failed.store(true, Ordering::Release)
                    }
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
                if let Poll::Ready(Some(Ok(frame))) = &polled
                    && let Some(data) = frame.data_ref()
                {
                    this.passed = this.passed.saturating_add(data.len() as u64);
                    if this.passed > this.limit {
                        this.sent.too_large.store(true, Ordering::Release);
                        if let Kind::Streamed(inner) = std::mem::replace(&mut this.kind, Kind::Cut)
                        {
                            linger(inner);
                        }
                        let limit = this.limit;
                        return Poll::Ready(Some(Err(TooLarge { limit }.into())));
                    }
                }
                polled
            }
            Kind::Buffered { frames, done, .. } => {
                let polled = frames.as_mut().poll_next(cx);
                if let Poll::Ready(None) = &polled {
                    *done = true;
                    this.sent.mark();
                }
                polled.map(|f| f.map(|r| r.map_err(BoxError::from)))
            }
            Kind::Cut => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Streamed(inner) => inner.is_end_stream(),
            Kind::Buffered { done, .. } => *done,
            Kind::Cut => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Streamed(inner) => inner.size_hint(),
            Kind::Buffered {
                len, exact: true, ..
            } => SizeHint::with_exact(*len),
            Kind::Buffered { len, .. } => {
                let mut hint = SizeHint::new();
                hint.set_lower(*len);
                hint
            }
            Kind::Cut => SizeHint::with_exact(0),
        }
    }
}
