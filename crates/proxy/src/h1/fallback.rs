//! Handing a connection to hyper: the bytes the fast path read are read again first; and
//! taking it back (hyper's shutdown of the socket is then only a flush).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::request::tokens;

pin_project_lite::pin_project! {
    /// `prefix`, then the stream.
    #[derive(Debug)]
    pub(crate) struct Rewind<T> {
        prefix: Vec<u8>,
        at: usize,
        // A shutdown only flushes: see `keeping_open`.
        keep_open: bool,
        #[pin]
        inner: T,
    }
}

impl<T> Rewind<T> {
    pub fn new(inner: T, prefix: Vec<u8>) -> Rewind<T> {
        Rewind {
            prefix,
            at: 0,
            keep_open: false,
            inner,
        }
    }

    /// For a hyper connection that ends after one request and gives the socket back
    /// (`connection::hyper_once`): its shutdown of the socket only flushes it.
    pub fn keeping_open(mut self) -> Rewind<T> {
        self.keep_open = true;
        self
    }

    /// The stream, and what of the prefix was not read yet.
    pub fn into_parts(mut self) -> (T, Vec<u8>) {
        self.prefix.drain(..self.at);
        (self.inner, self.prefix)
    }
}

impl<T: AsyncRead> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if *this.at < this.prefix.len() {
            let n = (this.prefix.len() - *this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[*this.at..*this.at + n]);
            *this.at += n;
            if *this.at == this.prefix.len() {
                *this.prefix = Vec::new();
                *this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        if *this.keep_open {
            return this.inner.poll_flush(cx);
        }
        this.inner.poll_shutdown(cx)
    }
}

/// Whether hyper, having answered the request whose head starts `read`, would keep the
/// connection for another, so that the fast path may have it back: HTTP/1.1, or HTTP/1.0
/// with `Connection: keep-alive` and no Transfer-Encoding (RFC 9112 §6.1: faulty framing, the
/// connection closes after it); no `Connection: close`, not framed by both Transfer-Encoding
/// and Content-Length (§6.1 again: what a Content-Length reader took for its body would be
/// read as a request), and no Upgrade (`connection::hyper_once` serves none). These are
/// hyper's own rules (`role.rs`: `keep_alive`), read again here because hyper does not say
/// what it decided; a head not whole in `read` (or past `max_headers`) stays with hyper.
pub(crate) fn may_come_back(read: &[u8], max_headers: usize) -> bool {
    let mut fields = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut fields);
    let Ok(httparse::Status::Complete(_)) = req.parse(read) else {
        return false;
    };
    let http10 = req.version == Some(0);
    let (mut te, mut cl, mut keep_alive) = (false, false, false);
    for f in req.headers.iter() {
        let is = |name: &str| f.name.eq_ignore_ascii_case(name);
        let says = |token: &[u8]| {
            is("connection") && tokens(f.value).any(|t| t.eq_ignore_ascii_case(token))
        };
        if is("upgrade") || says(b"close") {
            return false;
        }
        keep_alive |= says(b"keep-alive");
        te |= is("transfer-encoding");
        cl |= is("content-length");
    }
    !(te && cl) && (!http10 || (keep_alive && !te))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_prefix_is_read_before_the_stream() {
        let mut r = Rewind::new(&b" world"[..], b"hello".to_vec());
        let mut all = String::new();
        r.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }

    #[tokio::test]
    async fn what_of_the_prefix_was_not_read_is_given_back() {
        let mut r = Rewind::new(&b"!"[..], b"hello".to_vec());
        let mut two = [0u8; 2];
        r.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"he");
        let (rest, prefix) = r.into_parts();
        assert_eq!((prefix.as_slice(), rest), (&b"llo"[..], &b"!"[..]));
        let (_, prefix) = Rewind::new(&b""[..], b"all".to_vec()).into_parts();
        assert_eq!(prefix, b"all");
    }

    #[test]
    fn a_connection_comes_back_only_where_hyper_would_keep_it() {
        let back = |head: &str| may_come_back(head.as_bytes(), 100);
        for head in [
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-closed\r\n\r\nGET /next",
            "POST / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\nabc",
        ] {
            assert!(back(head), "{head:?}");
        }
        for head in [
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 4\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: Close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: te , close\r\n\r\n",
            "POST / HTTP/1.0\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
            "POST / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n",
            "POST / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n",
        ] {
            let fields = if head.contains("X: 1") { 2 } else { 100 };
            assert!(!may_come_back(head.as_bytes(), fields), "{head:?}");
        }
    }

    #[tokio::test]
    async fn a_kept_open_socket_is_flushed_not_shut() {
        use tokio::io::AsyncWriteExt;
        let (a, mut b) = tokio::io::duplex(64);
        let mut kept = Rewind::new(a, Vec::new()).keeping_open();
        kept.write_all(b"one").await.unwrap();
        kept.shutdown().await.unwrap();
        let (mut a, _) = kept.into_parts();
        a.write_all(b" two").await.unwrap();
        drop(a);
        let mut all = String::new();
        b.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "one two");
    }
}
