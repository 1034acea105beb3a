//! A response body as it comes from the server, turned into what the client gets: a
//! Content-Length body copied as it is, a chunked one decoded (sizes checked) and chunked
//! again without extensions, trailers passed on when the client takes them; a body that ends
//! with the connection chunked for the client. Or, for hyper's side ([`Decoder::plain`]),
//! the body's data alone, with its trailer section kept apart.

use std::io::Write;

use super::response::Framing;

/// The longest chunk-size line, extensions included, and the trailer section.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadBody {
    #[error("bad chunk size line")]
    ChunkSize,
    #[error("chunk data not followed by CRLF")]
    ChunkEnd,
    #[error("bad trailer section")]
    Trailers,
    #[error("the server closed before the end of the body")]
    Truncated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Content-Length, or chunk data: bytes left.
    Data(u64),
    /// The size so far, its digits, where in the line, the line's length so far.
    Size {
        n: u64,
        digits: u8,
        phase: Phase,
        line: usize,
    },
    /// The size line's CR came: its LF is due.
    SizeLf(u64),
    DataCr,
    DataLf,
    /// In the trailer section: bytes of the current line, bytes of the section.
    Trailer {
        line: usize,
        total: usize,
        cr: bool,
    },
    Close,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Digits,
    /// Whitespace after the size (hyper allows it before `;` or CR).
    Space,
    Ext,
}

const NEXT_SIZE: State = State::Size {
    n: 0,
    digits: 0,
    phase: Phase::Digits,
    line: 0,
};

#[derive(Debug)]
pub(crate) struct Decoder {
    chunked: bool,
    state: State,
    /// Pass trailers on (the client sent `TE: trailers`).
    trailers: bool,
    /// Trailer bytes seen, written out once the section is whole.
    trailer_buf: Vec<u8>,
    /// Body bytes (chunk data, not its framing) passed on so far: the access log's bytes sent.
    data: u64,
    /// The data alone, not framed again for an HTTP/1.1 client; trailers kept for
    /// [`Decoder::take_trailers`].
    plain: bool,
}

impl Decoder {
    pub fn new(framing: Framing, trailers: bool) -> Decoder {
        let (chunked, state) = match framing {
            Framing::Empty | Framing::Length(0) => (false, State::Done),
            Framing::Length(n) => (false, State::Data(n)),
            Framing::Chunked => (true, NEXT_SIZE),
            Framing::Close => (false, State::Close),
        };
        Decoder {
            chunked,
            state,
            trailers,
            trailer_buf: Vec::new(),
            data: 0,
            plain: false,
        }
    }

    /// A decoder that hands on the body's data alone (for a body hyper sends on, which frames
    /// it itself); a chunked body's trailer section waits in [`Decoder::take_trailers`].
    pub fn plain(framing: Framing) -> Decoder {
        Decoder {
            plain: true,
            ..Decoder::new(framing, true)
        }
    }

    /// For a body that is not chunked: how many of the `available` bytes at hand are its data
    /// (counted as passed on), so they can be handed on without a copy. `None` for a chunked
    /// one, which [`Decoder::decode`] must read.
    pub fn take_plain(&mut self, available: usize) -> Option<usize> {
        if self.chunked {
            return None;
        }
        let take = match self.state {
            State::Close => available,
            State::Data(left) => {
                let take = available.min(usize::try_from(left).unwrap_or(usize::MAX));
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::Done
                } else {
                    State::Data(left)
                };
                take
            }
            _ => 0,
        };
        self.data += take as u64;
        Some(take)
    }

    /// The body's data still to come, when its length says so.
    pub fn remaining(&self) -> Option<u64> {
        match (self.chunked, self.state) {
            (_, State::Done) => Some(0),
            (false, State::Data(left)) => Some(left),
            _ => None,
        }
    }

    /// The trailer section of a chunked body decoded by a [`Decoder::plain`] (its lines and
    /// the empty line that ends it), once the body is done, if it had any field.
    pub fn take_trailers(&mut self) -> Option<Vec<u8>> {
        if self.state != State::Done || self.trailer_buf.len() <= 2 {
            return None;
        }
        Some(std::mem::take(&mut self.trailer_buf))
    }

    /// Body bytes passed on so far, chunk framing not counted.
    pub fn data(&self) -> u64 {
        self.data
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `input` as belongs to the body, appending the client's bytes to
    /// `out`; returns how many bytes of `input` were used (the rest is not the body's).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, BadBody> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Close => {
                    if self.plain {
                        out.extend_from_slice(&input[i..]);
                    } else {
                        chunk(&input[i..], out);
                    }
                    self.data += (input.len() - i) as u64;
                    i = input.len();
                }
                State::Data(left) => {
                    let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    let data = &input[i..i + take];
                    if self.chunked && !self.plain {
                        chunk(data, out);
                    } else {
                        out.extend_from_slice(data);
                    }
                    i += take;
                    self.data += take as u64;
                    let left = left - take as u64;
                    self.state = match (left, self.chunked) {
                        (0, true) => State::DataCr,
                        (0, false) => State::Done,
                        (n, _) => State::Data(n),
                    };
                }
                State::Size {
                    n,
                    digits,
                    phase,
                    line,
                } => {
                    let b = input[i];
                    i += 1;
                    if line >= MAX_LINE {
                        return Err(BadBody::ChunkSize);
                    }
                    let line = line + 1;
                    let next = |phase| State::Size {
                        n,
                        digits,
                        phase,
                        line,
                    };
                    self.state = match (phase, b) {
                        // No bare LF anywhere, and a CR only after a size.
                        (_, b'\n') => return Err(BadBody::ChunkSize),
                        (_, b'\r') if digits > 0 => State::SizeLf(n),
                        (_, b'\r') => return Err(BadBody::ChunkSize),
                        (Phase::Ext, _) => next(Phase::Ext),
                        (Phase::Digits | Phase::Space, b' ' | b'\t') if digits > 0 => {
                            next(Phase::Space)
                        }
                        (Phase::Digits | Phase::Space, b';') if digits > 0 => next(Phase::Ext),
                        (Phase::Digits, _) => {
                            let d = (b as char).to_digit(16).ok_or(BadBody::ChunkSize)?;
                            // 16 hex digits fill a u64; more is an overflow or a trick.
                            if digits >= 16 {
                                return Err(BadBody::ChunkSize);
                            }
                            State::Size {
                                n: n * 16 + u64::from(d),
                                digits: digits + 1,
                                phase,
                                line,
                            }
                        }
                        (Phase::Space, _) => return Err(BadBody::ChunkSize),
                    };
                }
                State::SizeLf(size) => {
                    if input[i] != b'\n' {
                        return Err(BadBody::ChunkSize);
                    }
                    i += 1;
                    self.state = match size {
                        0 => State::Trailer {
                            line: 0,
                            total: 0,
                            cr: false,
                        },
                        n => State::Data(n),
                    };
                }
                State::DataCr => {
                    if input[i] != b'\r' {
                        return Err(BadBody::ChunkEnd);
                    }
                    i += 1;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if input[i] != b'\n' {
                        return Err(BadBody::ChunkEnd);
                    }
                    i += 1;
                    self.state = NEXT_SIZE;
                }
                State::Trailer { line, total, cr } => {
                    let b = input[i];
                    i += 1;
                    if total >= MAX_TRAILERS {
                        return Err(BadBody::Trailers);
                    }
                    self.trailer_buf.push(b);
                    self.state = match (b, cr) {
                        (b'\n', true) if line == 0 && self.plain => State::Done,
                        (b'\n', true) if line == 0 => {
                            out.extend_from_slice(b"0\r\n");
                            if self.trailers {
                                out.extend_from_slice(&self.trailer_buf);
                            } else {
                                out.extend_from_slice(b"\r\n");
                            }
                            self.trailer_buf = Vec::new();
                            State::Done
                        }
                        (b'\n', true) => State::Trailer {
                            line: 0,
                            total: total + 1,
                            cr: false,
                        },
                        (b'\n', false) | (_, true) => return Err(BadBody::Trailers),
                        (b'\r', false) => State::Trailer {
                            line,
                            total: total + 1,
                            cr: true,
                        },
                        _ => State::Trailer {
                            line: line + 1,
                            total: total + 1,
                            cr: false,
                        },
                    };
                }
            }
        }
        Ok(i)
    }

    /// The server closed its connection: the end of a close-delimited body (its last chunk
    /// goes out), else a truncated one.
    pub fn eof(&mut self, out: &mut Vec<u8>) -> Result<(), BadBody> {
        match self.state {
            State::Close => {
                if !self.plain {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                self.state = State::Done;
                Ok(())
            }
            State::Done => Ok(()),
            _ => Err(BadBody::Truncated),
        }
    }
}

/// One chunk of `data` for the client.
fn chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(framing: Framing, trailers: bool, parts: &[&[u8]]) -> Result<(Vec<u8>, usize), BadBody> {
        let mut d = Decoder::new(framing, trailers);
        let mut out = Vec::new();
        let mut used = 0;
        for p in parts {
            used += d.decode(p, &mut out)?;
        }
        if !d.is_done() {
            d.eof(&mut out)?;
        }
        Ok((out, used))
    }

    #[test]
    fn a_length_body_is_copied_and_what_follows_is_left() {
        let (out, used) = run(Framing::Length(5), false, &[b"hel", b"loHTTP"]).unwrap();
        assert_eq!(out, b"hello");
        assert_eq!(used, 5);
        assert_eq!(
            run(Framing::Length(5), false, &[b"hel"]),
            Err(BadBody::Truncated)
        );
    }

    #[test]
    fn chunks_are_rechunked_without_extensions() {
        let body = b"5;ext=1\r\nhello\r\n1 \r\n!\r\n0\r\nX-Sum: 1\r\n\r\nnext";
        let (out, used) = run(Framing::Chunked, false, &[body]).unwrap();
        assert_eq!(out, b"5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n");
        assert_eq!(used, body.len() - 4);
        let (out, _) = run(Framing::Chunked, true, &[body]).unwrap();
        assert_eq!(out, b"5\r\nhello\r\n1\r\n!\r\n0\r\nX-Sum: 1\r\n\r\n");
    }

    #[test]
    fn bad_chunks_are_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello",
            b"5\r\nhelloX",
            b"1 2\r\n",
            b"11111111111111111\r\n",
            b"0\r\nX: y\n\r\n",
        ] {
            assert!(run(Framing::Chunked, true, &[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_close_delimited_body_is_chunked_and_ended_at_eof() {
        let (out, _) = run(Framing::Close, false, &[b"ab", b"c"]).unwrap();
        assert_eq!(out, b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n");
    }

    #[test]
    fn a_plain_decoder_hands_on_the_data_and_keeps_the_trailers_apart() {
        let body = b"5;ext=1\r\nhello\r\n1 \r\n!\r\n0\r\nX-Sum: 1\r\n\r\nnext";
        let mut d = Decoder::plain(Framing::Chunked);
        let mut out = Vec::new();
        let used = d.decode(body, &mut out).unwrap();
        assert_eq!(out, b"hello!");
        assert_eq!(used, body.len() - 4);
        assert!(d.is_done());
        assert_eq!(d.data(), 6);
        assert_eq!(d.take_trailers().as_deref(), Some(&b"X-Sum: 1\r\n\r\n"[..]));
        assert_eq!(d.take_trailers(), None);

        let mut d = Decoder::plain(Framing::Chunked);
        d.decode(b"2\r\nab\r\n0\r\n\r\n", &mut out).unwrap();
        assert!(d.is_done());
        assert_eq!(d.take_trailers(), None, "no trailer field: nothing to send");
    }

    #[test]
    fn a_plain_decoder_takes_a_length_or_close_body_without_copying() {
        let mut d = Decoder::plain(Framing::Length(5));
        assert_eq!(d.remaining(), Some(5));
        assert_eq!(d.take_plain(3), Some(3));
        assert_eq!(d.remaining(), Some(2));
        assert_eq!(
            d.take_plain(10),
            Some(2),
            "what follows the body is not its"
        );
        assert!(d.is_done());
        assert_eq!(d.data(), 5);

        let mut d = Decoder::plain(Framing::Close);
        assert_eq!(d.take_plain(7), Some(7));
        assert_eq!(d.remaining(), None);
        let mut out = Vec::new();
        d.eof(&mut out).unwrap();
        assert!(out.is_empty() && d.is_done());

        let mut d = Decoder::plain(Framing::Length(5));
        d.take_plain(4);
        assert_eq!(d.eof(&mut out), Err(BadBody::Truncated));
        assert_eq!(Decoder::plain(Framing::Chunked).take_plain(3), None);
        assert!(Decoder::plain(Framing::Empty).is_done());
    }

    fn chunked(pieces: &[Vec<u8>]) -> Vec<u8> {
        let mut wire = Vec::new();
        for p in pieces.iter().filter(|p| !p.is_empty()) {
            wire.extend_from_slice(format!("{:X}\r\n", p.len()).as_bytes());
            wire.extend_from_slice(p);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        wire
    }

    /// Decoding `out` again gives the same data, wherever the reads split the wire.
    fn data_of(client: &[u8]) -> Vec<u8> {
        let mut d = Decoder::new(Framing::Chunked, false);
        let mut out = Vec::new();
        d.decode(client, &mut out).unwrap();
        assert!(d.is_done());
        let mut data = Vec::new();
        let mut rest = client;
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap(), 16).unwrap();
            if n == 0 {
                return data;
            }
            data.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 2 + n + 2..];
        }
    }

    proptest! {
        #[test]
        fn any_chunking_and_any_split_give_the_same_data(
            pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8),
            cuts in prop::collection::vec(0usize..400, 0..10),
        ) {
            let wire = chunked(&pieces);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut at = 0;
            for c in cuts {
                parts.push(&wire[at..c]);
                at = c;
            }
            parts.push(&wire[at..]);
            let (out, used) = run(Framing::Chunked, false, &parts).unwrap();
            prop_assert_eq!(used, wire.len());
            prop_assert_eq!(data_of(&out), pieces.concat());
            let mut plain = Decoder::plain(Framing::Chunked);
            let mut data = Vec::new();
            for p in &parts {
                plain.decode(p, &mut data).unwrap();
            }
            prop_assert!(plain.is_done());
            prop_assert_eq!(data, pieces.concat());
        }
    }
}
