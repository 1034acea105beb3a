//! A request body on its way from the connection's task (which reads the DATA frames) to
//! whoever reads the body: the request's own future, or hyper's client sending it on to an
//! HTTP/2 server from another task. What the reader takes is given back to the client's
//! flow-control window then, so a client can have at most a window's worth waiting here.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::frame::Reason;
use super::shared::Shared;

/// One stream's body in transit.
#[derive(Debug, Default)]
pub(crate) struct Recv {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    data: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    end: bool,
    /// The stream was reset (by the client, or by rouse for a protocol error).
    reset: Option<Reason>,
    waker: Option<Waker>,
    /// The reader dropped the body: the connection gives what comes back at once.
    gone: bool,
    /// The client sent `expect: 100-continue` and waits for a 100 before its body: asked of
    /// the connection when the reader first waits for data (as hyper's server does), never
    /// if the answer comes without reading the body.
    continue_wanted: bool,
}

impl Recv {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A body whose client waits for `100 Continue` before sending it.
    pub fn waiting_for_continue() -> Recv {
        let recv = Recv::default();
        recv.lock().continue_wanted = true;
        recv
    }

    /// Hands `data` to the reader; false when the reader is gone (the caller gives the
    /// window back itself).
    pub fn push(&self, data: Bytes) -> bool {
        let mut s = self.lock();
        if s.gone {
            return false;
        }
        s.data.push_back(data);
        wake(&mut s);
        true
    }

    pub fn end(&self, trailers: Option<HeaderMap>) {
        let mut s = self.lock();
        s.trailers = trailers;
        s.end = true;
        wake(&mut s);
    }

    pub fn reset(&self, reason: Reason) {
        let mut s = self.lock();
        if !s.end {
            s.reset = Some(reason);
        }
        wake(&mut s);
    }
}

fn wake(s: &mut State) {
    if let Some(w) = s.waker.take() {
        w.wake();
    }
}

/// The error a reset stream's body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the client reset the stream ({0})")]
pub struct Reset(pub(crate) Reason);

/// The reader's end: an HTTP/2 request's body.
#[derive(Debug)]
pub struct H2Body {
    id: u32,
    recv: Option<Arc<Recv>>,
    shared: Arc<Shared>,
    /// What the client's Content-Length announces and is still to come (the connection
    /// refuses a body that does not match it); `Some(0)` once it is all in.
    remaining: Option<u64>,
}

impl H2Body {
    /// `recv` is `None` for a request that ended with its head.
    pub(crate) fn new(
        id: u32,
        recv: Option<Arc<Recv>>,
        shared: Arc<Shared>,
        content_length: Option<u64>,
    ) -> H2Body {
        let remaining = if recv.is_none() {
            Some(0)
        } else {
            content_length
        };
        H2Body {
            id,
            recv,
            shared,
            remaining,
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = Reset;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Reset>>> {
        let this = self.get_mut();
        let Some(recv) = &this.recv else {
            return Poll::Ready(None);
        };
        let mut s = recv.lock();
        if let Some(data) = s.data.pop_front() {
            // The client sent it without waiting.
            s.continue_wanted = false;
            drop(s);
            this.shared.released(this.id, data.len());
            if let Some(left) = &mut this.remaining {
                *left = left.saturating_sub(data.len() as u64);
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if s.end {
            let trailers = s.trailers.take();
            drop(s);
            this.recv = None;
            return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
        }
        match s.reset {
            // A reset with NO_ERROR is an early answer's way to stop an upload (RFC 9113
            // §8.1): the body ends there, without an error.
            Some(Reason::NO_ERROR) => Poll::Ready(None),
            Some(reason) => Poll::Ready(Some(Err(Reset(reason)))),
            None => {
                s.waker = Some(cx.waker().clone());
                if std::mem::take(&mut s.continue_wanted) {
                    drop(s);
                    this.shared.continue_wanted(this.id);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.recv {
            None => true,
            Some(recv) => {
                let s = recv.lock();
                s.end && s.data.is_empty() && s.trailers.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}

impl Drop for H2Body {
    fn drop(&mut self) {
        let Some(recv) = &self.recv else { return };
        let mut s = recv.lock();
        s.gone = true;
        let unread: usize = s.data.drain(..).map(|d| d.len()).sum();
        drop(s);
        if unread > 0 {
            self.shared.released(self.id, unread);
        }
    }
}
