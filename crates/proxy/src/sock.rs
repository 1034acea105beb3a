//! Socket reads and writes of the HTTP/1.1 fast path, made with the system calls themselves
//! (rustix) rather than through libc.
//!
//! tokio (through mio and std) reads a socket with glibc's `recv` and writes with `send`, and
//! glibc makes both cancellation points: around each system call it sets the thread's
//! asynchronous-cancel state and then clears it, each with an atomic compare-and-swap
//! (`__pthread_enable_asynccancel`, `__pthread_disable_asynccancel`). rouse cancels no thread.
//! A proxied request makes four such calls: 230 instructions of a request's 8,600 (callgrind,
//! `bench/instructions.sh`) and eight locked operations. rustix's Linux backend makes the
//! system call directly.
//!
//! Readiness stays tokio's: a call is made only when tokio says the socket is ready, and
//! `try_io` clears that when the call would block. As tokio's own reads and writes do, it is
//! also cleared when a call took less than it was offered room for: the socket's buffer was
//! drained (or filled), and asking again would only cost a system call that would block.

use std::io;
use std::os::fd::AsFd;
use std::task::{Context, Poll, ready};

use rustix::buffer::spare_capacity;
use rustix::net::{RecvFlags, SendFlags};
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

/// A socket registered with tokio's reactor.
pub(crate) trait Socket: AsFd {
    fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>>;

    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

// tokio's two stream types have the same methods under the same names, and no trait for them.
macro_rules! socket {
    ($stream:ty) => {
        impl Socket for $stream {
            fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
                if interest.is_writable() {
                    self.poll_write_ready(cx)
                } else {
                    self.poll_read_ready(cx)
                }
            }

            fn try_io<R>(
                &self,
                interest: Interest,
                f: impl FnOnce() -> io::Result<R>,
            ) -> io::Result<R> {
                <$stream>::try_io(self, interest, f)
            }
        }
    };
}

socket!(TcpStream);
socket!(UnixStream);

/// Reads what `s` has into `buf`'s spare room (64 bytes more are made when it has none, as
/// tokio's `read_buf` does): how many bytes came, 0 at the peer's end.
pub(crate) fn poll_recv(
    s: &impl Socket,
    cx: &mut Context<'_>,
    buf: &mut Vec<u8>,
) -> Poll<io::Result<usize>> {
    if buf.len() == buf.capacity() {
        buf.reserve(64);
    }
    let room = buf.capacity() - buf.len();
    poll_io(s, cx, Interest::READABLE, room, || {
        let (got, _) = rustix::net::recv(s, spare_capacity(buf), RecvFlags::empty())?;
        Ok(got)
    })
}

/// Writes what of `data` `s` takes now.
pub(crate) fn poll_send(
    s: &impl Socket,
    cx: &mut Context<'_>,
    data: &[u8],
) -> Poll<io::Result<usize>> {
    // NOSIGNAL: a peer gone is an error to handle, not a SIGPIPE (std's `send` passes it too).
    poll_io(s, cx, Interest::WRITABLE, data.len(), || {
        Ok(rustix::net::send(s, data, SendFlags::NOSIGNAL)?)
    })
}

/// Whether an idle connection is still open and quiet: a read would block, rather than find
/// the peer's end (it closed the connection while idle) or bytes nobody asked for. tokio's
/// readiness is asked first, so a quiet socket costs no system call, and no waker is left
/// behind: a poll with a no-op waker, as this was, registered one under a lock, and the next
/// real wait had to clone the task's waker back in.
pub(crate) fn quiet(s: &impl Socket) -> bool {
    let mut byte = [0u8; 1];
    let read = s.try_io(Interest::READABLE, || {
        Ok(rustix::net::recv(s, &mut byte[..], RecvFlags::empty())?.0)
    });
    matches!(read, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// `call` (a read or write offered `room` bytes) when `s` is ready for `interest`, again
/// until it would not block. A call that moved fewer than `room` bytes (but some) answers
/// `WouldBlock` to `try_io`, so that it clears the readiness the call was made on (tokio's
/// `try_io` has no other way to), and its count is kept aside.
fn poll_io(
    s: &impl Socket,
    cx: &mut Context<'_>,
    interest: Interest,
    room: usize,
    mut call: impl FnMut() -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(s.poll_ready(cx, interest))?;
        let mut short = None;
        let done = s.try_io(interest, || match call()? {
            n if n > 0 && n < room => {
                short = Some(n);
                Err(io::ErrorKind::WouldBlock.into())
            }
            n => Ok(n),
        });
        match (done, short) {
            (_, Some(n)) => return Poll::Ready(Ok(n)),
            (Err(e), None)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            (done, None) => return Poll::Ready(done),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Every test's waits, bounded: a socket that never becomes ready fails the test.
    async fn bounded<T>(test: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(30), test)
            .await
            .expect("within 30 s")
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn reads_append_to_the_buffer_and_writes_reach_the_peer_until_its_end() {
        bounded(async {
            let (mut a, b) = pair().await;
            a.write_all(b"hello ").await.unwrap();
            let mut buf = b"> ".to_vec();
            let n = poll_fn(|cx| poll_recv(&b, cx, &mut buf)).await.unwrap();
            assert_eq!((n, buf.as_slice()), (6, &b"> hello "[..]));
            // A read that waits for the peer, into a buffer with no room left.
            buf.shrink_to_fit();
            let (read, ()) = tokio::join!(poll_fn(|cx| poll_recv(&b, cx, &mut buf)), async {
                tokio::task::yield_now().await;
                a.write_all(b"world").await.unwrap();
            });
            assert_eq!(read.unwrap(), 5);
            assert_eq!(buf, b"> hello world");

            let sent = poll_fn(|cx| poll_send(&b, cx, b"back")).await.unwrap();
            assert_eq!(sent, 4);
            let mut got = [0u8; 4];
            a.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"back");

            drop(a);
            assert_eq!(
                poll_fn(|cx| poll_recv(&b, cx, &mut buf)).await.unwrap(),
                0,
                "the peer's end"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_read_that_drains_the_socket_leaves_it_not_ready_and_the_next_waits() {
        bounded(async {
            let (mut a, b) = pair().await;
            a.write_all(b"12345").await.unwrap();
            let mut buf = Vec::with_capacity(4096);
            assert_eq!(poll_fn(|cx| poll_recv(&b, cx, &mut buf)).await.unwrap(), 5);
            // Fewer bytes than there was room for: drained. Not ready any more, so the next read
            // waits for the reactor instead of asking the kernel for what is not there.
            let mut cx = Context::from_waker(std::task::Waker::noop());
            assert!(b.poll_read_ready(&mut cx).is_pending());
            let (read, ()) = tokio::join!(poll_fn(|cx| poll_recv(&b, cx, &mut buf)), async {
                tokio::task::yield_now().await;
                a.write_all(b"678").await.unwrap();
            });
            assert_eq!(read.unwrap(), 3);
            assert_eq!(buf, b"12345678");
        })
        .await;
    }

    #[tokio::test]
    async fn an_idle_connection_is_quiet_until_bytes_or_its_end_come() {
        bounded(async {
            let (mut a, b) = pair().await;
            assert!(quiet(&b));
            a.write_all(b"?").await.unwrap();
            b.readable().await.unwrap();
            assert!(!quiet(&b), "bytes nobody asked for");

            let (a, b) = pair().await;
            assert!(quiet(&b));
            drop(a);
            b.readable().await.unwrap();
            assert!(!quiet(&b), "the peer's end");
        })
        .await;
    }

    #[tokio::test]
    async fn a_write_to_a_full_socket_waits_until_the_peer_reads() {
        const ALL: usize = 64 << 20;
        bounded(async {
            let (mut a, b) = pair().await;
            let chunk = vec![7u8; 1 << 20];
            // More than the socket holds: the writes wait for the reader.
            let writer = async {
                let mut sent = 0usize;
                while sent < ALL {
                    let part = &chunk[..chunk.len().min(ALL - sent)];
                    sent += poll_fn(|cx| poll_send(&b, cx, part)).await.unwrap();
                }
                sent
            };
            let reader = async {
                let mut total = 0usize;
                let mut buf = vec![0u8; 1 << 16];
                while total < ALL {
                    let n = a.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the writer's end before all came");
                    assert!(buf[..n].iter().all(|&b| b == 7));
                    total += n;
                }
                total
            };
            let (w, r) = tokio::join!(writer, reader);
            assert_eq!((w, r), (ALL, ALL), "64 MiB through one socket");
        })
        .await;
    }

    #[tokio::test]
    async fn a_peer_gone_is_an_error_not_a_signal() {
        bounded(async {
            let (a, b) = pair().await;
            drop(a);
            // The first writes may still be taken; the reset that follows must come back as an
            // error (without NOSIGNAL, SIGPIPE would end the test process).
            let mut last = Ok(0);
            for _ in 0..100 {
                last = poll_fn(|cx| poll_send(&b, cx, b"x")).await;
                if last.is_err() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            assert!(last.is_err(), "{last:?}");
        })
        .await;
    }
}
