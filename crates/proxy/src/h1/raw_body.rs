//! A server's response body read from a raw pooled connection for hyper's side of the proxy
//! (HTTP/2 clients, and the HTTP/1.1 requests the fast path declines): the data handed on as
//! hyper frames, a chunked body decoded and its trailers passed as a trailers frame. The
//! connection goes back to the raw pool the moment the body's last byte is read, if the
//! server may take another request on it; a body not read to its end closes it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use super::decode::{BadBody, Decoder};
use super::response::Framing;
use crate::connect::Stream;
use crate::pool::Pool;
use crate::request_body::BoxError;

/// Bytes asked of the server per read.
const READ: usize = 16 * 1024;

/// Trailer fields a server may send (its head's limit).
const MAX_TRAILER_FIELDS: usize = 100;

pub struct RawBody {
    /// The connection while the body is being read; taken when it ends.
    conn: Option<(Stream, Arc<Pool>)>,
    /// Read from the server, not handed on yet.
    buf: BytesMut,
    dec: Decoder,
    /// The server may take another request on this connection once the body is read.
    keep: bool,
    /// A chunked body's trailers, sent after its data (boxed: rare, and a map is large).
    trailers: Option<Box<HeaderMap>>,
}

impl std::fmt::Debug for RawBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBody")
            .field("reading", &self.conn.is_some())
            .field("buffered", &self.buf.len())
            .field("data", &self.dec.data())
            .finish_non_exhaustive()
    }
}

impl RawBody {
    /// The body that follows a response head with `framing` on `stream`; `rest` is what was
    /// read past the head. `keep`: the server did not say it closes the connection.
    pub(crate) fn new(
        stream: Stream,
        pool: Arc<Pool>,
        framing: Framing,
        rest: BytesMut,
        keep: bool,
    ) -> RawBody {
        let mut body = RawBody {
            conn: Some((stream, pool)),
            buf: rest,
            dec: Decoder::plain(framing),
            keep,
            trailers: None,
        };
        // hyper never polls a body that is empty from the start (HEAD, 204, 304, a zero
        // length): its connection is free now.
        body.release_if_done();
        body
    }

    /// Once the body is whole, the connection goes back to its pool, unless the server said
    /// it closes it or sent bytes past the body nobody asked for.
    fn release_if_done(&mut self) {
        if !self.dec.is_done() {
            return;
        }
        if let Some((stream, pool)) = self.conn.take()
            && self.keep
            && self.buf.is_empty()
        {
            pool.raw_put(stream, Instant::now());
        }
    }

    /// The next piece of data from what was read, if any.
    fn decode(&mut self) -> Result<Option<Bytes>, BadBody> {
        if let Some(n) = self.dec.take_plain(self.buf.len()) {
            let data = self.buf.split_to(n).freeze();
            return Ok((!data.is_empty()).then_some(data));
        }
        let mut out = Vec::new();
        let used = self.dec.decode(&self.buf, &mut out)?;
        self.buf.advance(used);
        if let Some(section) = self.dec.take_trailers() {
            self.trailers = Some(Box::new(trailers(&section)?));
        }
        Ok((!out.is_empty()).then(|| Bytes::from(out)))
    }
}

/// A trailer section's fields (its lines and the empty line that ends it).
fn trailers(section: &[u8]) -> Result<HeaderMap, BadBody> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    let Ok(httparse::Status::Complete((_, fields))) = httparse::parse_headers(section, &mut fields)
    else {
        return Err(BadBody::Trailers);
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| BadBody::Trailers)?;
        let value = HeaderValue::from_bytes(f.value).map_err(|_| BadBody::Trailers)?;
        map.append(name, value);
    }
    Ok(map)
}

impl Body for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.dec.is_done() {
                this.release_if_done();
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(*t))));
            }
            if !this.buf.is_empty() {
                match this.decode() {
                    Ok(Some(data)) => {
                        this.release_if_done();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        this.conn = None;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
            }
            let Some((stream, _)) = &mut this.conn else {
                return Poll::Ready(Some(Err(BadBody::Truncated.into())));
            };
            this.buf.reserve(READ);
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(stream),
                cx,
                &mut this.buf
            )) {
                Ok(0) => {
                    this.conn = None;
                    if let Err(e) = this.dec.eof(&mut Vec::new()) {
                        return Poll::Ready(Some(Err(e.into())));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.dec.is_done() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.dec.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
