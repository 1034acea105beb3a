//! A request body as the client sends it: through hyper (HTTP/1.1 requests the fast path
//! declined) or through rouse's HTTP/2 server (`crate::http2`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::http2::H2Body;
use crate::request_body::BoxError;

#[derive(Debug)]
pub enum ClientBody {
    Hyper(Incoming),
    /// A request hyper serves alone, its connection to go back to the fast path after it
    /// (`connection::hyper_once`): `whole` is set once the body was read to its end, without
    /// which the rest of it would be read there as the next request.
    HyperOnce {
        body: Incoming,
        whole: Arc<AtomicBool>,
    },
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
            ClientBody::HyperOnce { body, whole } => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                // Trailers end an HTTP/1.1 body: hyper has read its last chunk.
                let ended = match &polled {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(frame))) => frame.is_trailers() || body.is_end_stream(),
                    _ => false,
                };
                if ended {
                    whole.store(true, Ordering::Release);
                }
                polled.map(|f| f.map(|r| r.map_err(BoxError::from)))
            }
            ClientBody::H2(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BoxError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(b) | ClientBody::HyperOnce { body: b, .. } => b.is_end_stream(),
            ClientBody::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Hyper(b) | ClientBody::HyperOnce { body: b, .. } => b.size_hint(),
            ClientBody::H2(b) => b.size_hint(),
        }
    }
}
