//! The body of a response sent to a client: streamed from a server, read from a server by a
//! pump and buffered for a slow client (`crate::buffer::response`), or made by rouse.
//! A server's body comes through hyper's client (HTTP/2 servers, and requests with a body)
//! or straight from a raw pooled connection (`crate::h1::raw_body`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use rouse_state::InFlightGuard;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::buffer::response::Item;
use crate::h1::raw_body::RawBody;
use crate::idle::{IdleTimer, Quiet};
use crate::pool::{Pool, Sender};
use crate::request_body::BoxError;

/// What happens when a streamed response ends: the server's connection goes back to its pool
/// and the request stops counting as in flight.
#[derive(Debug)]
pub struct Completion {
    pub guard: InFlightGuard,
    pub reuse: Option<(Sender, Arc<Pool>)>,
}

impl Completion {
    pub(crate) fn finish(self) {
        if let Some((sender, pool)) = self.reuse {
            pool.put(sender, Instant::now());
        }
        drop(self.guard);
    }
}

/// A server's response body, as hyper's client or the raw path reads it.
#[derive(Debug)]
pub enum UpstreamBody {
    Hyper(Incoming),
    Raw(RawBody),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Hyper(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BoxError::from))),
            UpstreamBody::Raw(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Hyper(b) => b.is_end_stream(),
            UpstreamBody::Raw(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Hyper(b) => b.size_hint(),
            UpstreamBody::Raw(b) => b.size_hint(),
        }
    }
}

pin_project_lite::pin_project! {
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        Upstream {
            #[pin]
            inner: UpstreamBody,
            done: Option<Completion>,
            idle: IdleTimer,
        },
        Local {
            data: Option<Bytes>,
        },
        Buffered {
            rx: mpsc::Receiver<Item>,
            hint: SizeHint,
            ended: bool,
        },
        /// Any of the above, with the access-log line written when it ends.
        Logged {
            inner: Pin<Box<ProxyBody>>,
            ending: Box<Ending>,
        },
    }

    impl PinnedDrop for ProxyBody {
        fn drop(this: Pin<&mut Self>) {
            if let ProxyBodyProj::Upstream { inner, done, .. } = this.project()
                && let Some(mut c) = done.take()
            {
                    // hyper never polls a body that says it is empty (HEAD, 204, 304), so its
                    // clean end shows only here; anything else was cut short and the
                    // connection is not reusable.
                    if !inner.is_end_stream() {
                        c.reuse = None;
                    }
                    c.finish();
            }
        }
    }
}

impl ProxyBody {
    /// A server's response body, which may pause for at most `read_timeout` between reads.
    pub fn upstream(inner: UpstreamBody, done: Completion, read_timeout: Duration) -> ProxyBody {
        ProxyBody::Upstream {
            inner,
            done: Some(done),
            idle: IdleTimer::new(read_timeout),
        }
    }

    /// What a response pump hands over; `hint` is the server's body's (its length, if known).
    pub(crate) fn buffered(rx: mpsc::Receiver<Item>, hint: SizeHint) -> ProxyBody {
        ProxyBody::Buffered {
            rx,
            hint,
            ended: false,
        }
    }

    pub fn local(data: impl Into<Bytes>) -> ProxyBody {
        let data: Bytes = data.into();
        ProxyBody::Local {
            data: (!data.is_empty()).then_some(data),
        }
    }

    pub fn empty() -> ProxyBody {
        ProxyBody::Local { data: None }
    }

    /// `body`, whose access-log line `ending` writes once hyper is done with it.
    pub(crate) fn logged(body: ProxyBody, ending: Ending) -> ProxyBody {
        ProxyBody::Logged {
            inner: Box::pin(body),
            ending: Box::new(ending),
        }
    }
}

/// A streamed answer's access-log line, written when hyper drops its body: after the last
/// byte, or when the answer is cut (then with the bytes that went out), as nginx logs a
/// request when it is over. Made only when the line is to be written.
pub struct Ending {
    pub(crate) proxy: Arc<crate::proxy::Proxy>,
    pub(crate) captured: Option<crate::access::Captured>,
    pub(crate) request_id: http::HeaderValue,
    pub(crate) upstream: String,
    pub(crate) server: Option<Arc<rouse_state::Server>>,
    pub(crate) client: std::net::IpAddr,
    pub(crate) status: u16,
    pub(crate) held_us: u64,
    pub(crate) upstream_us: Option<u64>,
    pub(crate) started: Instant,
    pub(crate) arrived: Instant,
    /// Body bytes handed to hyper so far.
    pub(crate) sent: u64,
}

impl Drop for Ending {
    fn drop(&mut self) {
        let done = crate::forward::Done {
            started: self.started,
            status: self.status,
            client: self.client,
            held_us: self.held_us,
            arrived: self.arrived,
            sent: Some(self.sent),
            request_id: self.request_id.as_bytes(),
            seen: crate::access::Seen::Hyper(self.captured.as_ref()),
        };
        let server = self.server.as_ref().map(|s| s.address());
        self.proxy.log_line(
            Some(&self.upstream),
            server,
            &done,
            Some(self.sent),
            self.upstream_us,
        );
    }
}

impl std::fmt::Debug for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ending")
            .field("status", &self.status)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ProxyBodyProj::Upstream { inner, done, idle } => {
                let polled = inner.poll_frame(cx);
                if idle.expired(&polled, cx) {
                    // The response cannot be completed: the client's connection is cut, as
                    // nginx does, so it sees a truncated answer rather than waiting forever.
                    if let Some(mut c) = done.take() {
                        tracing::warn!(
                            server = %c.guard.server().address(),
                            "the server stopped sending its response for {:?} (read_timeout)",
                            idle.limit()
                        );
                        c.reuse = None;
                        c.finish();
                    }
                    let quiet = Quiet {
                        what: "the server",
                        after: idle.limit(),
                    };
                    return Poll::Ready(Some(Err(quiet.into())));
                }
                match &polled {
                    Poll::Ready(None) => {
                        if let Some(c) = done.take() {
                            c.finish();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        if let Some(mut c) = done.take() {
                            c.reuse = None;
                            c.finish();
                        }
                    }
                    _ => {}
                }
                polled
            }
            ProxyBodyProj::Local { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBodyProj::Buffered { rx, ended, .. } => {
                let polled = rx.poll_recv(cx);
                if let Poll::Ready(None) = polled {
                    *ended = true;
                }
                polled
            }
            ProxyBodyProj::Logged { inner, ending } => {
                let polled = inner.as_mut().poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled
                    && let Some(data) = frame.data_ref()
                {
                    ending.sent += data.len() as u64;
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
            ProxyBody::Local { data } => data.is_none(),
            ProxyBody::Buffered { ended, .. } => *ended,
            ProxyBody::Logged { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
            ProxyBody::Local { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Buffered { hint, .. } => *hint,
            ProxyBody::Logged { inner, .. } => inner.size_hint(),
        }
    }
}
