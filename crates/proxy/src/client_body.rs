//! A request body as the client sends it: through hyper (HTTP/1.1 requests the fast path
//! declined) or through rouse's HTTP/2 server (`crate::http2`), which reads h2's stream
//! itself.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::request_body::BoxError;

#[derive(Debug)]
pub enum ClientBody {
    Hyper(Incoming),
    H2(H2Body),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Hyper(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BoxError::from))),
            ClientBody::H2(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BoxError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(b) => b.is_end_stream(),
            ClientBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Hyper(b) => b.size_hint(),
            ClientBody::H2(b) => b.size_hint(),
        }
    }
}

/// An HTTP/2 request's body: its DATA frames, then its trailers. What is read is given back
/// to the client's flow-control window at once (rouse's own buffering, `request_buffering`
/// and the spool, bounds what it holds), as hyper's server does.
#[derive(Debug)]
pub struct H2Body {
    recv: h2::RecvStream,
    data_done: bool,
    /// What the client's Content-Length announces and is still to come (h2 refuses a body
    /// that does not match it); `Some(0)` for a request that ended with its head.
    remaining: Option<u64>,
}

impl H2Body {
    pub(crate) fn new(recv: h2::RecvStream, headers: &HeaderMap) -> H2Body {
        let remaining = if recv.is_end_stream() {
            Some(0)
        } else {
            content_length(headers)
        };
        H2Body {
            recv,
            data_done: false,
            remaining,
        }
    }
}

/// The one length all of a request's Content-Length fields agree on, if any.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut len = None;
    for v in headers.get_all(CONTENT_LENGTH) {
        let this = std::str::from_utf8(v.as_bytes())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if len.is_some_and(|l| l != this) {
            return None;
        }
        len = Some(this);
    }
    len
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut this.remaining {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // A reset with NO_ERROR is an early answer's way to stop an upload (RFC 9113
                // §8.1): the body ends there, without an error.
                Some(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => {
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(t) => Poll::Ready(t.map(|t| Ok(Frame::trailers(t)))),
            Err(e) if e.reason() == Some(h2::Reason::NO_ERROR) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(lengths: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lengths {
            h.append(CONTENT_LENGTH, HeaderValue::from_static(l));
        }
        h
    }

    #[test]
    fn content_length_is_known_only_when_all_fields_agree() {
        assert_eq!(content_length(&with(&[])), None);
        assert_eq!(content_length(&with(&["12"])), Some(12));
        assert_eq!(content_length(&with(&["12", " 12 "])), Some(12));
        assert_eq!(content_length(&with(&["12", "13"])), None);
        assert_eq!(content_length(&with(&["twelve"])), None);
        assert_eq!(content_length(&with(&["-1"])), None);
    }
}
