//! One HTTP/2 stream: its request answered by [`Proxy::handle`], the answer sent back, its
//! body piped into h2 as the client's flow control allows. A reset from the client drops
//! whatever is in progress (the server's exchange with it).

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, Bytes};
use http::header::{CONTENT_LENGTH, DATE};
use http::{HeaderValue, Request, Response};
use http_body::Body;

use super::Streams;
use crate::activity::Open;
use crate::body::ProxyBody;
use crate::client_body::{ClientBody, H2Body};
use crate::headers::{self, Https};
use crate::request_body::BoxError;

/// Serves one stream. `_open` counts it as a request of its connection until its answer is
/// sent (or the stream reset).
pub(super) async fn serve(
    streams: Arc<Streams>,
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    _open: Open,
) {
    let (parts, recv) = req.into_parts();
    let body = H2Body::new(recv, &parts.headers);
    let mut req = Request::from_parts(parts, ClientBody::H2(body));
    if streams.https {
        req.extensions_mut().insert(Https);
    }
    // Boxed: a stream's task would otherwise be sized for all of `handle`'s state, and
    // spawning it copies the whole task several times (a third of an h2c request's
    // instructions went to those copies).
    let mut handling = Box::pin(streams.proxy.handle(req, streams.peer));
    // The answer, unless the client resets the stream first.
    let answered = poll_fn(|cx| {
        if let Poll::Ready(resp) = handling.as_mut().poll(cx) {
            return Poll::Ready(Some(resp));
        }
        match respond.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    let Some(resp) = answered else {
        tracing::debug!(client = %streams.peer, "the client reset a stream before its answer");
        return;
    };
    let (mut parts, body) = resp.into_parts();
    // h2 refuses connection-specific fields; a server's answer has had them removed already.
    headers::strip_hop_by_hop(&mut parts.headers, false);
    if !parts.headers.contains_key(DATE) {
        parts.headers.insert(DATE, crate::h1::date::value());
    }
    let end = body.is_end_stream();
    if !end
        && let Some(len) = body.size_hint().exact()
        && !parts.headers.contains_key(CONTENT_LENGTH)
    {
        parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    let mut send = match respond.send_response(Response::from_parts(parts, ()), end) {
        Ok(send) => send,
        Err(e) => {
            tracing::debug!(error = %e, client = %streams.peer, "cannot send an answer's head");
            return;
        }
    };
    if !end && let Err(e) = pipe(body, &mut send).await {
        tracing::debug!(error = %e, client = %streams.peer, "an answer's body ended early");
    }
}

/// Sends `body` on `send`, a frame at a time, each DATA frame when the client's window has
/// room for it (as hyper's `PipeToSendStream` does: capacity is asked for once a chunk is in
/// hand, so a body that produces nothing pins none of the connection's window).
async fn pipe(body: ProxyBody, send: &mut h2::SendStream<Bytes>) -> Result<(), BoxError> {
    let mut body = pin!(body);
    let mut waiting: Option<(Bytes, bool)> = None;
    poll_fn(|cx| {
        loop {
            if let Poll::Ready(reason) = send.poll_reset(cx) {
                let reason = reason?;
                return Poll::Ready(Err(h2::Error::from(reason).into()));
            }
            if let Some((data, end)) = waiting.take() {
                while send.capacity() == 0 {
                    match send.poll_capacity(cx) {
                        Poll::Pending => {
                            waiting = Some((data, end));
                            return Poll::Pending;
                        }
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.into())),
                        Poll::Ready(None) => {
                            return Poll::Ready(Err("the stream closed while sending".into()));
                        }
                    }
                }
                send.send_data(data, end)?;
                if end {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let frame = match body.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    // Neither an end-of-stream DATA frame nor trailers went out yet.
                    send.send_data(Bytes::new(), true)?;
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Err(e))) => {
                    send.send_reset(h2::Reason::INTERNAL_ERROR);
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    if !data.has_remaining() {
                        send.send_data(data, end)?;
                        if end {
                            return Poll::Ready(Ok(()));
                        }
                        continue;
                    }
                    send.reserve_capacity(1);
                    waiting = Some((data, end));
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        send.reserve_capacity(0);
                        send.send_trailers(trailers)?;
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    })
    .await
}
