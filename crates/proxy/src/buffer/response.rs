//! Response bodies read from the server at the server's speed, whatever the client's.
//!
//! A task of its own (the pump) reads the server's body and hands it to the client's side
//! through a short channel; what the client is not ready for waits in a spool (memory up to
//! `response_buffer_size`, then a temp file, at most `max_response_buffer` held). So a slow
//! client reads from rouse while the server's worker, its connection (back in the pool) and
//! its in-flight slot are free as soon as the server has sent everything. Nothing is held
//! back: a chunk goes on to the client the moment it arrives if the client can take it, so
//! streams (SSE, chunked progress) flow as before. With the spool full, the pump stops
//! reading the server until the client catches up, as nginx does at
//! `proxy_max_temp_file_size`.
//!
//! `read_timeout` bounds the server's pauses while the pump reads; `send_timeout` (on the
//! client's socket) bounds the client's. A client that goes away ends the pump, and the
//! server's connection is closed rather than pooled, its response unfinished.

use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Limits;
use super::spool::Spool;
use crate::body::{Completion, ProxyBody, UpstreamBody};
use crate::idle::Quiet;
use crate::request_body::BoxError;

/// Frames in flight between the pump and the client's side, beyond the spool.
const CHANNEL: usize = 2;

/// A body of known length up to this passes straight, without a pump: hyper's own write
/// buffer (16 pieces, ~400 KiB) and the socket's take it whole at once, so it never waits on
/// the client anyway, and a task per response would cost the many small answers a fifth of
/// their throughput.
const PASS_STRAIGHT: u64 = 32 * 1024;

/// Whether the server's `body` is worth a pump: buffering is on and the body is neither known
/// empty (HEAD, 204, 304) nor known small.
pub(crate) fn wanted(body: &UpstreamBody, limits: Limits<'_>) -> bool {
    limits.response_buffering
        && !body.is_end_stream()
        && body.size_hint().exact().is_none_or(|n| n > PASS_STRAIGHT)
}

pub(crate) type Item = Result<Frame<Bytes>, BoxError>;

/// The body the client gets; the server's is read by a pump task from now on.
pub(crate) fn buffered(
    inner: UpstreamBody,
    done: Completion,
    read_timeout: Duration,
    limits: Limits<'_>,
) -> ProxyBody {
    let hint = inner.size_hint();
    let (tx, rx) = mpsc::channel(CHANNEL);
    let file_cap = limits
        .max_response_buffer
        .saturating_sub(limits.response_buffer_size as u64);
    let spool = Spool::new(limits.response_buffer_size, file_cap, limits.temp_dir);
    tokio::spawn(pump(inner, done, tx, spool, read_timeout));
    ProxyBody::buffered(rx, hint)
}

/// Where the server's side is.
enum Server {
    Reading,
    /// Read to its end (or its error): the trailers or error to send after the data, if any.
    Done(Option<Item>),
}

async fn pump(
    mut inner: UpstreamBody,
    done: Completion,
    tx: mpsc::Sender<Item>,
    mut spool: Spool,
    read_timeout: Duration,
) {
    let server = done.guard.server().address().clone();
    let mut done = Some(done);
    let mut state = Server::Reading;
    // A chunk read from the server that has no room yet: reading waits until it has.
    let mut waiting: Option<Bytes> = None;
    let mut deadline = after(read_timeout);
    loop {
        if let Some(data) = waiting.take() {
            if spool.has_room(data.len()) {
                if let Err(e) = spool.push(data).await {
                    // The chunk is kept in memory; from now on the client's pace is the
                    // server's again beyond response_buffer_size.
                    tracing::warn!(error = %e, "cannot spill a response to a temp file (temp_dir)");
                }
                // The server was not being read: its pause was rouse's.
                deadline = after(read_timeout);
            } else {
                waiting = Some(data);
            }
        }
        let reading = matches!(state, Server::Reading) && waiting.is_none();
        if let Server::Done(tail) = &mut state
            && spool.is_empty()
            && waiting.is_none()
        {
            if let Some(item) = tail.take() {
                let _ = tx.send(item).await;
            }
            return;
        }
        tokio::select! {
            biased;
            () = tx.closed() => return,
            permit = tx.reserve(), if !spool.is_empty() => {
                let Ok(permit) = permit else { return };
                match spool.pop().await {
                    Ok(Some(data)) => permit.send(Ok(Frame::data(data))),
                    Ok(None) => {}
                    Err(e) => {
                        // Dropping the sender ends the client's body short, and the server's
                        // connection with the pump: the response cannot be completed.
                        tracing::error!(error = %e, "cannot read back a buffered response; cutting it");
                        return;
                    }
                }
            }
            frame = inner.frame(), if reading => {
                deadline = after(read_timeout);
                match frame {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => {
                            // The client keeps up: straight through, no spool.
                            if spool.is_empty() {
                                match tx.try_reserve() {
                                    Ok(permit) => {
                                        permit.send(Ok(Frame::data(data)));
                                        continue;
                                    }
                                    Err(mpsc::error::TrySendError::Closed(())) => return,
                                    Err(mpsc::error::TrySendError::Full(())) => {}
                                }
                            }
                            waiting = Some(data);
                        }
                        Err(trailers) => {
                            // Trailers end a body; a server that says otherwise is not reused.
                            if let Some(mut c) = done.take() {
                                if !inner.is_end_stream() {
                                    c.reuse = None;
                                }
                                c.finish();
                            }
                            state = Server::Done(Some(Ok(trailers)));
                        }
                    },
                    None => {
                        if let Some(c) = done.take() {
                            c.finish();
                        }
                        if !matches!(state, Server::Done(_)) {
                            state = Server::Done(None);
                        }
                    }
                    Some(Err(e)) => {
                        if let Some(mut c) = done.take() {
                            c.reuse = None;
                            c.finish();
                        }
                        state = Server::Done(Some(Err(e)));
                    }
                }
            }
            () = tokio::time::sleep_until(deadline), if reading => {
                tracing::warn!(
                    %server,
                    "the server stopped sending its response for {read_timeout:?} (read_timeout)"
                );
                if let Some(mut c) = done.take() {
                    c.reuse = None;
                    c.finish();
                }
                let quiet = Quiet { what: "the server", after: read_timeout };
                state = Server::Done(Some(Err(quiet.into())));
            }
        }
    }
}

/// `read_timeout` from now, or as far as the clock goes.
fn after(d: Duration) -> Instant {
    rouse_core::time::deadline(Instant::now(), d)
}
