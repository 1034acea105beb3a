//! A client's socket as hyper sees it: it holds the connection's `max_connections` slot for as
//! long as the socket lives (an upgraded connection outlives its HTTP task), and tells the
//! connection's [`Activity`] whether the client opened with the h2 preface, which decides how
//! an idle connection is timed and closed (GOAWAY for h2), and when bytes last went out.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::activity::Activity;
use crate::conn_limit::Slot;

/// The first bytes of the h2 connection preface: the method `PRI` means it (RFC 9113 §3.4).
const H2_START: &[u8] = b"PRI ";

pin_project_lite::pin_project! {
    #[derive(Debug)]
    pub(crate) struct ClientIo<T> {
        #[pin]
        inner: T,
        slot: Slot,
        activity: Arc<Activity>,
        sniffed: bool,
    }
}

impl<T> ClientIo<T> {
    pub fn new(inner: T, slot: Slot, activity: Arc<Activity>) -> ClientIo<T> {
        ClientIo {
            inner,
            slot,
            activity,
            sniffed: false,
        }
    }

    /// The socket and its slot, for the fast path to serve again.
    pub fn into_parts(self) -> (T, Slot) {
        (self.inner, self.slot)
    }
}

impl<T: AsyncRead> AsyncRead for ClientIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        let got = &buf.filled()[before..];
        if !got.is_empty() && !*this.sniffed {
            *this.sniffed = true;
            if got.starts_with(H2_START) {
                this.activity.set_h2();
            }
        }
        polled
    }
}

impl<T: AsyncWrite> AsyncWrite for ClientIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write(cx, buf);
        noted(this.activity, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write_vectored(cx, bufs);
        noted(this.activity, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

fn noted(activity: &Activity, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
    if let Poll::Ready(Ok(n)) = &polled
        && *n > 0
    {
        activity.wrote();
    }
    polled
}
