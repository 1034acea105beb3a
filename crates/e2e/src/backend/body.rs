//! Response bodies.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

use super::stats::InFlight;
use crate::pattern;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response's body type.
pub(crate) type RespBody = UnsyncBoxBody<Bytes, BoxError>;

pub(crate) fn full(data: impl Into<Bytes>) -> RespBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn empty() -> RespBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Keeps a request counted as in flight until its body is done, not just until the handler
/// returns: a streamed response is still load on the backend.
pub(crate) struct Tracked {
    inner: RespBody,
    guard: Option<InFlight>,
}

impl Tracked {
    pub(crate) fn wrap(inner: RespBody, guard: InFlight) -> RespBody {
        Self {
            inner,
            guard: Some(guard),
        }
        .boxed_unsync()
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            // Release as soon as the end is known; hyper may hold the body a while longer.
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `len` bytes of [`crate::pattern`], generated a chunk at a time.
pub(crate) struct PatternBody {
    offset: u64,
    len: u64,
}

impl PatternBody {
    pub(crate) fn new(len: u64) -> Self {
        Self { offset: 0, len }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let left = self.len - self.offset;
        if left == 0 {
            return Poll::Ready(None);
        }
        let n = left.min(pattern::CHUNK as u64) as usize;
        let chunk = pattern::pattern(self.offset, n);
        self.offset += n as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.offset == self.len
    }

    // The default (unknown length) is what makes HTTP/1.1 use chunked encoding, which is the
    // point: tests see a body with no content-length.
}
