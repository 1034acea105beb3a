//! The deterministic byte pattern served by `/bytes/{n}` and the checksum reported by
//! `/count`, shared so tests can check multi-GiB transfers chunk by chunk.
//!
//! Byte `i` of the pattern is `(i % 251) as u8`: 251 is prime and not a power of two, so a
//! chunk that is dropped, duplicated or reordered shifts the pattern and is caught by a
//! position-aware comparison, whatever the chunk sizes.

use std::sync::OnceLock;

use bytes::Bytes;

/// The pattern's period.
pub const PERIOD: u64 = 251;

/// How much `/bytes` sends per frame.
pub const CHUNK: usize = 64 * 1024;

/// Byte `i` of the pattern.
pub fn byte_at(i: u64) -> u8 {
    // The remainder is below 251, so it fits.
    (i % PERIOD) as u8
}

/// `len` bytes of the pattern starting at absolute position `offset`.
///
/// Up to [`CHUNK`] bytes this is a zero-copy slice of a shared buffer.
pub fn pattern(offset: u64, len: usize) -> Bytes {
    let start = (offset % PERIOD) as usize;
    if len <= CHUNK {
        return source().slice(start..start + len);
    }
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let start = ((offset + out.len() as u64) % PERIOD) as usize;
        let n = (len - out.len()).min(CHUNK);
        out.extend_from_slice(&source()[start..start + n]);
    }
    out.into()
}

/// The first `len` bytes of the pattern as a stream of `chunk`-sized pieces (the last may be
/// shorter; 0 means [`CHUNK`]), for streamed uploads such as `reqwest::Body::wrap_stream`.
pub fn stream(
    len: u64,
    chunk: usize,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let chunk = if chunk == 0 { CHUNK } else { chunk } as u64;
    futures_util::stream::unfold(0u64, move |offset| async move {
        (offset < len).then(|| {
            let n = (len - offset).min(chunk);
            (Ok(pattern(offset, n as usize)), offset + n)
        })
    })
}

/// What `/count` reports as `checksum` for the first `len` bytes of the pattern; same as
/// [`Checksum::of_pattern`].
pub fn checksum(len: u64) -> u64 {
    Checksum::of_pattern(len)
}

/// Whether `data` equals the pattern at `offset`.
pub fn matches(offset: u64, data: &[u8]) -> bool {
    data.iter()
        .enumerate()
        .all(|(i, &b)| b == byte_at(offset + i as u64))
}

// One chunk plus one period, so any chunk-sized window at any phase is a slice of it.
fn source() -> &'static Bytes {
    static SOURCE: OnceLock<Bytes> = OnceLock::new();
    SOURCE.get_or_init(|| {
        (0..(CHUNK as u64 + PERIOD))
            .map(byte_at)
            .collect::<Vec<u8>>()
            .into()
    })
}

/// An order-sensitive, streaming, non-cryptographic checksum.
///
/// It works a 64-bit word at a time (not byte by byte) because tests run unoptimised and push
/// hundreds of MiB through it; chunk boundaries do not affect the result.
#[derive(Debug, Clone)]
pub struct Checksum {
    state: u64,
    len: u64,
    tail: [u8; 8],
    tail_len: usize,
}

const SEED: u64 = 0xcbf2_9ce4_8422_2325;
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(state: u64, word: u64) -> u64 {
    (state ^ word).wrapping_mul(MUL).rotate_left(29)
}

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

impl Checksum {
    /// An empty checksum.
    pub fn new() -> Self {
        Self {
            state: SEED,
            len: 0,
            tail: [0; 8],
            tail_len: 0,
        }
    }

    /// The checksum of `data` in one go.
    pub fn of(data: &[u8]) -> u64 {
        let mut sum = Self::new();
        sum.update(data);
        sum.finish()
    }

    /// The checksum of `len` bytes of the pattern from position 0, i.e. what `/count`
    /// reports for an upload of the body `/bytes/{len}` serves.
    pub fn of_pattern(len: u64) -> u64 {
        let mut sum = Self::new();
        let mut offset = 0;
        while offset < len {
            let n = (len - offset).min(CHUNK as u64) as usize;
            sum.update(&pattern(offset, n));
            offset += n as u64;
        }
        sum.finish()
    }

    /// Adds `data`, which follows everything added so far.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.tail_len > 0 {
            let take = (8 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < 8 {
                return;
            }
            self.state = mix(self.state, u64::from_le_bytes(self.tail));
            self.tail_len = 0;
        }
        let mut words = data.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0; 8];
            buf.copy_from_slice(word);
            self.state = mix(self.state, u64::from_le_bytes(buf));
        }
        let rest = words.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    /// How many bytes were added.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The checksum of everything added so far.
    pub fn finish(&self) -> u64 {
        let mut state = self.state;
        if self.tail_len > 0 {
            let mut buf = [0; 8];
            buf[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            state = mix(state, u64::from_le_bytes(buf));
        }
        // Folding the length in keeps trailing zero bytes from going unnoticed.
        mix(state, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_continuous_across_calls() {
        let whole = pattern(0, 3 * CHUNK + 17);
        let mut pieces = Vec::new();
        let mut offset = 0u64;
        for n in [1usize, CHUNK, 250, CHUNK - 3, 5000, CHUNK] {
            let n = n.min(whole.len() - offset as usize);
            pieces.extend_from_slice(&pattern(offset, n));
            offset += n as u64;
        }
        assert_eq!(&whole[..pieces.len()], &pieces[..]);
        assert_eq!(
            pattern(5, 3 * CHUNK + 1),
            pattern(0, 3 * CHUNK + 6).slice(5..)
        );
        assert!(matches(0, &whole));
        assert!(!matches(1, &whole[..10]));
    }

    #[test]
    fn checksum_ignores_chunking_but_not_order() {
        let data = pattern(7, 10_000);
        let whole = Checksum::of(&data);
        let mut split = Checksum::new();
        for piece in data.chunks(13) {
            split.update(piece);
        }
        assert_eq!(split.finish(), whole);
        assert_eq!(split.len(), 10_000);

        let mut swapped = data.to_vec();
        swapped.swap(0, 8);
        assert_ne!(Checksum::of(&swapped), whole);
        assert_ne!(Checksum::of(&[0]), Checksum::of(&[0, 0]));
        assert_eq!(
            Checksum::of_pattern(200_000),
            Checksum::of(&pattern(0, 200_000))
        );
    }
}
