//! A response body from the server to the client, in one task with no channel: the server is
//! read as fast as it sends when `response_buffering` is on (what the client cannot take yet
//! waits in a [`Spool`], memory then a temp file, as `buffer::response`'s pump does), else in
//! step with the client. The server's connection goes back to its pool, and its in-flight
//! slot is freed, the moment the body's last byte is read, however far behind the client is.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes};
use rouse_state::InFlightGuard;
use tokio::time::{Instant, Sleep};

use super::conn::ClientStream;
use super::decode::Decoder;
use crate::buffer::spool::Spool;
use crate::connect::Stream;
use crate::pool::Pool;
use crate::signal::{Signal, Watch};

/// Bytes asked of the server per read.
const READ: usize = 64 * 1024;

/// The server's side of an exchange.
pub(crate) struct Upstream {
    pub stream: Stream,
    pub pool: Arc<Pool>,
    pub guard: InFlightGuard,
}

impl Upstream {
    /// Ends the exchange with the server: its connection back to the pool if `reuse`.
    pub fn release(self, reuse: bool) {
        self.release_idle_since(reuse.then(Instant::now));
    }

    /// As `release`: back to the pool, idle since the instant given (one read already, which
    /// also ends the request on its server), if there is one.
    pub fn release_idle_since(self, idle_since: Option<Instant>) {
        match idle_since {
            Some(now) => {
                self.pool.raw_put(self.stream, now);
                self.guard.end_at(now);
            }
            None => drop(self.guard),
        }
    }
}

pub(crate) struct Timeouts {
    pub read: Duration,
    pub send: Duration,
}

/// Why a body could not be passed on whole: the client's connection is cut.
#[derive(Debug)]
pub(crate) struct Cut;

/// Sends `first` (the head and what of the body came with it), then the rest of the body as
/// `dec` reads it from the server. `reuse`: the server's connection may carry another request
/// once the body is read (the exchange's leftovers aside).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn body<W: ClientStream>(
    client: &mut W,
    up: Upstream,
    reuse: bool,
    dec: &mut Decoder,
    rbuf: &mut Vec<u8>,
    first: &[u8],
    mut spool: Option<Spool>,
    t: Timeouts,
    kill: &Signal,
) -> Result<(), Cut> {
    let killed = std::pin::pin!(kill.cancelled());
    let mut kill = Watch::new(kill, killed);
    let mut up = Some(up);
    let mut writing: Option<Bytes> = (!first.is_empty()).then(|| Bytes::copy_from_slice(first));
    let mut read_deadline = after(t.read);
    let mut send_deadline = after(t.send);
    let cut = |up: Option<Upstream>| {
        if let Some(up) = up {
            up.release(false);
        }
        Err(Cut)
    };
    loop {
        if writing.is_none()
            && let Some(s) = spool.as_mut()
            && !s.is_empty()
        {
            match s.pop().await {
                Ok(data) => writing = data,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read back a buffered response; cutting it");
                    return cut(up);
                }
            }
            send_deadline = after(t.send);
        }
        if up.is_none() && writing.is_none() {
            return Ok(());
        }
        let idle = writing.is_none() && spool.as_ref().is_none_or(Spool::is_empty);
        let reading = up.is_some()
            && match &spool {
                Some(s) => idle || s.has_room(READ),
                None => idle,
            };
        let event = tokio::select! {
            biased;
            () = kill.wait() => Event::Killed,
            r = poll_fn(|cx| client.poll_send(cx, writing.as_deref().unwrap_or(&[]))), if writing.is_some() => {
                Event::Wrote(r)
            }
            r = read_some(up.as_mut(), rbuf), if reading => Event::Read(r),
            () = tokio::time::sleep_until(send_deadline), if writing.is_some() => Event::SendLate,
            () = tokio::time::sleep_until(read_deadline), if reading => Event::ReadLate,
        };
        match event {
            Event::Killed => return cut(up),
            Event::Wrote(Ok(n)) if n > 0 => {
                if let Some(w) = writing.as_mut() {
                    w.advance(n);
                    if w.is_empty() {
                        writing = None;
                    }
                }
                send_deadline = after(t.send);
            }
            Event::Wrote(_) => return cut(up),
            Event::SendLate => {
                tracing::debug!("the client read nothing for {:?} (send_timeout)", t.send);
                return cut(up);
            }
            Event::ReadLate => {
                if let Some(u) = &up {
                    tracing::warn!(
                        server = %u.guard.server().address(),
                        "the server stopped sending its response for {:?} (read_timeout)",
                        t.read
                    );
                }
                return cut(up);
            }
            Event::Read(r) => {
                read_deadline = after(t.read);
                let mut data = Vec::new();
                match r {
                    Ok(0) => {
                        if let Err(e) = dec.eof(&mut data) {
                            tracing::debug!(error = %e, "a response body was cut short");
                            return cut(up);
                        }
                        if let Some(u) = up.take() {
                            u.release(false);
                        }
                    }
                    Ok(_) => {
                        let got = rbuf.len();
                        let used = match as_it_came(dec, got) {
                            // What was read goes out as it is: the read buffer itself is
                            // handed on (the next read takes a new one), not copied.
                            Some(take) => {
                                data = std::mem::take(rbuf);
                                data.truncate(take);
                                take
                            }
                            None => match dec.decode(rbuf, &mut data) {
                                Ok(used) => used,
                                Err(e) => {
                                    tracing::warn!(error = %e, "malformed response body");
                                    return cut(up);
                                }
                            },
                        };
                        if dec.is_done()
                            && let Some(u) = up.take()
                        {
                            u.release(reuse && used == got);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "reading a response body");
                        return cut(up);
                    }
                }
                rbuf.clear();
                if data.is_empty() {
                    continue;
                }
                let data = Bytes::from(data);
                match spool.as_mut() {
                    Some(s) if writing.is_some() || !s.is_empty() => {
                        if let Err(e) = s.push(data).await {
                            tracing::warn!(error = %e, "cannot spill a response to a temp file (temp_dir)");
                        }
                    }
                    _ => writing = Some(data),
                }
            }
        }
    }
}

/// For a Content-Length body, which the client gets byte for byte: how many of the `got`
/// bytes just read are its (counted as passed on), to hand the read buffer on as it is.
/// `None` when the decoder must rewrite them (chunked, or ended by the close and chunked for
/// the client), or when they fill too little of the buffer to hand it on: a server sending a
/// few bytes at a time would have each spooled chunk hold a whole read buffer, where the
/// spool counts only the bytes (its 1 MiB of memory could then hold 64 MiB).
fn as_it_came(dec: &mut Decoder, got: usize) -> Option<usize> {
    let body = dec.remaining()?.min(got as u64);
    if body < (READ / 4) as u64 {
        return None;
    }
    dec.take_plain(got)
}

enum Event {
    Killed,
    Wrote(io::Result<usize>),
    Read(io::Result<usize>),
    SendLate,
    ReadLate,
}

async fn read_some(up: Option<&mut Upstream>, rbuf: &mut Vec<u8>) -> io::Result<usize> {
    match up {
        Some(u) => {
            rbuf.clear();
            rbuf.reserve(READ);
            poll_fn(|cx| u.stream.poll_recv(cx, rbuf)).await
        }
        None => std::future::pending().await,
    }
}

/// Writes all of `data` to the client, each write within `send` of the last one's progress.
/// The timer (the client connection's own, see `h1::timer`) is armed only when the
/// socket is full, as `SendTimeout` does: a write that goes straight into the kernel's buffer
/// costs none. A poll function, not an `async fn` holding a write's future and a timer of its
/// own: it is awaited in every request's future, allocated per request, and kept small.
pub(crate) fn write_all<'a, W: ClientStream>(
    client: &'a mut W,
    mut data: &'a [u8],
    send: Duration,
    mut timer: Pin<&'a mut Sleep>,
) -> impl Future<Output = Result<(), Cut>> + 'a {
    let mut armed: Option<Instant> = None;
    poll_fn(move |cx| {
        while !data.is_empty() {
            match client.poll_send(cx, data) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    data = &data[n..];
                    armed = None;
                }
                Poll::Ready(_) => return Poll::Ready(Err(Cut)),
                Poll::Pending => {
                    let deadline = *armed.get_or_insert_with(|| {
                        let at = after(send);
                        super::timer::arm(timer.as_mut(), at);
                        at
                    });
                    return super::timer::poll_until(timer.as_mut(), deadline, cx)
                        .map(|()| Err(Cut));
                }
            }
        }
        Poll::Ready(Ok(()))
    })
}

/// Reads what the client sends next into `buf`, within `limit` (on the connection's timer):
/// `None` past it.
pub(crate) fn read_within<'a, R: ClientStream>(
    client: &'a mut R,
    buf: &'a mut Vec<u8>,
    limit: Duration,
    timer: Pin<&'a mut Sleep>,
) -> impl Future<Output = Option<io::Result<usize>>> + 'a {
    let read = poll_fn(move |cx| client.poll_recv(cx, buf).map(Some));
    super::timer::within(timer, after(limit), read, || None)
}

fn after(d: Duration) -> Instant {
    rouse_core::time::deadline(Instant::now(), d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::response::Framing;

    #[test]
    fn a_full_read_of_a_length_body_is_handed_on_and_counted() {
        let mut dec = Decoder::new(Framing::Length(100_000), false);
        assert_eq!(as_it_came(&mut dec, READ), Some(READ));
        assert_eq!(dec.data(), READ as u64);
        // The body's end, with bytes past it: only the body's are taken.
        let left = 100_000 - READ;
        assert_eq!(as_it_came(&mut dec, left + 7), Some(left));
        assert!(dec.is_done());
    }

    #[test]
    fn a_trickle_a_chunked_body_and_a_close_delimited_one_are_decoded() {
        // A few bytes would hold a whole read buffer: copied instead, the decoder untouched.
        let mut dec = Decoder::new(Framing::Length(100_000), false);
        assert_eq!(as_it_came(&mut dec, 10), None);
        assert_eq!(dec.data(), 0);
        // The body's last 10 bytes, in a full read: still too few of the buffer's.
        let mut dec = Decoder::new(Framing::Length(10), false);
        assert_eq!(as_it_came(&mut dec, READ), None);
        assert_eq!(dec.data(), 0);
        for framing in [Framing::Chunked, Framing::Close] {
            let mut dec = Decoder::new(framing, false);
            assert_eq!(as_it_came(&mut dec, READ), None);
        }
    }
}
