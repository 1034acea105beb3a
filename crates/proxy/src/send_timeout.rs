//! A client connection whose writes may not stall for longer than `send_timeout` (nginx's key
//! of that name): a client that stops reading a response (or a WebSocket's messages) would
//! otherwise hold its connection, the server's in-flight slot and any drain of that server
//! for ever. hyper's server has no write timer, so the socket itself carries one.
//!
//! The timer is armed only when the socket cannot take more bytes (`Pending`), so writes that
//! go straight into the kernel's buffer cost nothing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::idle::IdleTimer;

pin_project_lite::pin_project! {
    #[derive(Debug)]
    pub(crate) struct SendTimeout<T> {
        #[pin]
        inner: T,
        timer: IdleTimer,
    }
}

impl<T> SendTimeout<T> {
    pub fn new(inner: T, limit: Duration) -> SendTimeout<T> {
        SendTimeout {
            inner,
            timer: IdleTimer::new(limit),
        }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T> SendTimeout<T> {
    /// `polled`, or a timeout error once the socket has refused bytes for too long.
    fn bounded<R>(
        timer: &mut IdleTimer,
        polled: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        if timer.expired(&polled, cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {:?} (send_timeout)",
                    timer.limit()
                ),
            )));
        }
        polled
    }
}

impl<T: AsyncRead> AsyncRead for SendTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for SendTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write(cx, buf);
        Self::bounded(this.timer, polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write_vectored(cx, bufs);
        Self::bounded(this.timer, polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let polled = this.inner.poll_flush(cx);
        Self::bounded(this.timer, polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let polled = this.inner.poll_shutdown(cx);
        Self::bounded(this.timer, polled, cx)
    }
}
