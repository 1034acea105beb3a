//! What a connection writes: frame heads and small payloads copied into one buffer, large
//! DATA payloads queued as they are, all written with one vectored write.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncWrite;

use super::frame::{self, Head};

/// Payloads up to this size are copied (a copy costs less than a slice of its own).
const COPY_MAX: usize = 1024;
/// Slices handed to one write.
const MAX_SLICES: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct Out {
    /// Written before `buf`.
    queue: VecDeque<Bytes>,
    queued: usize,
    buf: BytesMut,
}

impl Out {
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub fn len(&self) -> usize {
        self.queued + self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A DATA frame.
    pub fn data(&mut self, stream: u32, data: Bytes, end: bool) {
        Head {
            len: data.len(),
            kind: frame::DATA,
            flags: if end { frame::END_STREAM } else { 0 },
            stream,
        }
        .write(&mut self.buf);
        if data.len() <= COPY_MAX {
            self.buf.put_slice(&data);
            return;
        }
        let head = self.buf.split().freeze();
        self.queued += head.len() + data.len();
        self.queue.push_back(head);
        self.queue.push_back(data);
    }

    /// A header block as HEADERS and as many CONTINUATION frames as `max_frame` needs.
    pub fn block(&mut self, stream: u32, block: &[u8], end_stream: bool, max_frame: usize) {
        let mut chunks = block.chunks(max_frame.max(1)).peekable();
        let mut kind = frame::HEADERS;
        let mut first_flags = if end_stream { frame::END_STREAM } else { 0 };
        if chunks.peek().is_none() {
            Head {
                len: 0,
                kind,
                flags: first_flags | frame::END_HEADERS,
                stream,
            }
            .write(&mut self.buf);
            return;
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            Head {
                len: chunk.len(),
                kind,
                flags: first_flags | if last { frame::END_HEADERS } else { 0 },
                stream,
            }
            .write(&mut self.buf);
            self.buf.put_slice(chunk);
            kind = frame::CONTINUATION;
            first_flags = 0;
        }
    }

    /// Writes until all is out or the socket would block.
    pub fn poll_flush<IO: AsyncWrite + Unpin>(
        &mut self,
        io: &mut IO,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let n = {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for b in self.queue.iter().take(MAX_SLICES - 1) {
                    slices[count] = IoSlice::new(b);
                    count += 1;
                }
                if count < MAX_SLICES - 1 && !self.buf.is_empty() {
                    slices[count] = IoSlice::new(&self.buf);
                    count += 1;
                }
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
        }
        Pin::new(io).poll_flush(cx)
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            match self.queue.front_mut() {
                Some(front) => {
                    let take = n.min(front.len());
                    front.advance(take);
                    self.queued -= take;
                    n -= take;
                    if front.is_empty() {
                        self.queue.pop_front();
                    }
                }
                None => {
                    self.buf.advance(n);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_block_is_split_into_continuations() {
        let mut out = Out::default();
        out.block(3, &[7u8; 40], true, 16);
        let b = &out.buf[..];
        // HEADERS (16, END_STREAM), CONTINUATION (16), CONTINUATION (8, END_HEADERS).
        let heads: Vec<Head> = [0, 25, 50]
            .iter()
            .map(|&at| Head::parse(b[at..at + 9].try_into().unwrap()))
            .collect();
        assert_eq!(
            heads
                .iter()
                .map(|h| (h.len, h.kind, h.flags))
                .collect::<Vec<_>>(),
            vec![
                (16, frame::HEADERS, frame::END_STREAM),
                (16, frame::CONTINUATION, 0),
                (8, frame::CONTINUATION, frame::END_HEADERS),
            ]
        );
        assert_eq!(b.len(), 3 * 9 + 40);
    }

    #[test]
    fn queued_data_is_counted_and_written_in_order() {
        let mut out = Out::default();
        out.data(1, Bytes::from(vec![1u8; 2000]), false);
        out.data(1, Bytes::from_static(b"tail"), true);
        assert_eq!(out.len(), 9 + 2000 + 9 + 4);
        out.advance(9 + 1000);
        assert_eq!(out.len(), 1000 + 13);
        out.advance(1000 + 13);
        assert!(out.is_empty());
    }
}
