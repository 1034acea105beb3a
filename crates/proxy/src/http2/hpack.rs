//! HPACK (RFC 7541): the request fields a client sends, decoded against the connection's
//! dynamic table; the answers' fields encoded without one (each field a literal "without
//! indexing", its name by static index where it has one), so the encoder keeps no state and a
//! client's table size does not matter (HAProxy encodes the same way).

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::VecDeque;

use super::huffman;

/// RFC 7541 Appendix A.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("via", ""),
    ("vary", ""),
    ("www-authenticate", ""),
];

/// An entry's size as the table counts it (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// What a header block cannot be decoded for: a COMPRESSION_ERROR, fatal to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("a header block ends inside a field")]
    Truncated,
    #[error("an integer past its limit")]
    Overflow,
    #[error("index {0} is in neither table")]
    BadIndex(usize),
    #[error("a bad Huffman string")]
    Huffman,
    #[error("a table size update past the limit or after the first field")]
    BadSizeUpdate,
}

/// The decoding side of one connection.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// Newest first.
    table: VecDeque<(Bytes, Bytes)>,
    size: usize,
    /// The size the client last set (at most `limit`).
    max: usize,
    /// What rouse announced (SETTINGS_HEADER_TABLE_SIZE: the protocol's default, 4096).
    limit: usize,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max: 4096,
            limit: 4096,
        }
    }
}

impl Decoder {
    /// Decodes one whole header block, calling `field` with each name and value in order.
    pub fn decode(
        &mut self,
        block: &Bytes,
        mut field: impl FnMut(Bytes, Bytes),
    ) -> Result<(), DecodeError> {
        let mut at = 0usize;
        let mut first = true;
        while at < block.len() {
            let b = block[at];
            if b & 0x80 != 0 {
                // Indexed field.
                let index = integer(block, &mut at, 7)?;
                let (name, value) = self.get(index)?;
                field(name, value);
            } else if b & 0x40 != 0 {
                // Literal with incremental indexing.
                let (name, value) = self.literal(block, &mut at, 6)?;
                self.insert(name.clone(), value.clone());
                field(name, value);
            } else if b & 0x20 != 0 {
                // Dynamic table size update: only before the first field.
                let size = integer(block, &mut at, 5)?;
                if !first || size > self.limit {
                    return Err(DecodeError::BadSizeUpdate);
                }
                self.max = size;
                self.evict(0);
                continue;
            } else {
                // Literal without indexing (0000) or never indexed (0001).
                let (name, value) = self.literal(block, &mut at, 4)?;
                field(name, value);
            }
            first = false;
        }
        Ok(())
    }

    fn get(&self, index: usize) -> Result<(Bytes, Bytes), DecodeError> {
        match index {
            0 => Err(DecodeError::BadIndex(0)),
            i if i <= STATIC.len() => {
                let (n, v) = STATIC[i - 1];
                Ok((
                    Bytes::from_static(n.as_bytes()),
                    Bytes::from_static(v.as_bytes()),
                ))
            }
            i => self
                .table
                .get(i - STATIC.len() - 1)
                .cloned()
                .ok_or(DecodeError::BadIndex(i)),
        }
    }

    fn literal(
        &self,
        block: &Bytes,
        at: &mut usize,
        prefix: u8,
    ) -> Result<(Bytes, Bytes), DecodeError> {
        let index = integer(block, at, prefix)?;
        let name = if index == 0 {
            string(block, at)?
        } else {
            self.get(index)?.0
        };
        let value = string(block, at)?;
        Ok((name, value))
    }

    fn insert(&mut self, name: Bytes, value: Bytes) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        self.evict(size);
        // An entry larger than the whole table empties it and is not added (§4.4).
        if size <= self.max {
            self.size += size;
            self.table.push_front((name, value));
        }
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
    }
}

/// An integer with an N-bit prefix (§5.1), at most 2^28: beyond any size or index rouse takes.
fn integer(block: &[u8], at: &mut usize, prefix: u8) -> Result<usize, DecodeError> {
    let mask = (1u16 << prefix) as usize - 1;
    let first = *block.get(*at).ok_or(DecodeError::Truncated)? as usize & mask;
    *at += 1;
    if first < mask {
        return Ok(first);
    }
    let mut value = mask;
    let mut shift = 0u32;
    loop {
        let b = *block.get(*at).ok_or(DecodeError::Truncated)?;
        *at += 1;
        value += ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return if value > 1 << 28 {
                Err(DecodeError::Overflow)
            } else {
                Ok(value)
            };
        }
        shift += 7;
        if shift > 28 {
            return Err(DecodeError::Overflow);
        }
    }
}

/// A string literal (§5.2): raw, a slice of the block; or Huffman-coded, decoded.
fn string(block: &Bytes, at: &mut usize) -> Result<Bytes, DecodeError> {
    let huffman = *block.get(*at).ok_or(DecodeError::Truncated)? & 0x80 != 0;
    let len = integer(block, at, 7)?;
    let end = at.checked_add(len).ok_or(DecodeError::Truncated)?;
    if end > block.len() {
        return Err(DecodeError::Truncated);
    }
    let raw = block.slice(*at..end);
    *at = end;
    if !huffman {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(len * 8 / 5 + 1);
    huffman::decode(&raw, &mut out).map_err(|_| DecodeError::Huffman)?;
    Ok(Bytes::from(out))
}

/// Appends `:status` to an answer's block.
pub(crate) fn encode_status(status: u16, out: &mut BytesMut) {
    let indexed = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if indexed != 0 {
        out.put_u8(0x80 | indexed);
        return;
    }
    // Literal without indexing, name :status (index 8).
    out.put_u8(0x08);
    let digits = [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    put_string(&digits, out);
}

/// Appends one field (its name lowercase, as `http::HeaderName` keeps it) to a block.
pub(crate) fn encode_field(name: &str, value: &[u8], out: &mut BytesMut) {
    match static_name(name) {
        Some(index) => put_integer(index, 4, 0x00, out),
        None => {
            out.put_u8(0x00);
            put_string(name.as_bytes(), out);
        }
    }
    put_string(value, out);
}

/// The static table's index of a field name (RFC 7541 Appendix A, 15 to 61). A `match`:
/// compiled to a switch on the length and a comparison or two, where a search of the table
/// compares every name.
fn static_name(name: &str) -> Option<usize> {
    Some(match name {
        "accept-charset" => 15,
        "accept-encoding" => 16,
        "accept-language" => 17,
        "accept-ranges" => 18,
        "accept" => 19,
        "access-control-allow-origin" => 20,
        "age" => 21,
        "allow" => 22,
        "authorization" => 23,
        "cache-control" => 24,
        "content-disposition" => 25,
        "content-encoding" => 26,
        "content-language" => 27,
        "content-length" => 28,
        "content-location" => 29,
        "content-range" => 30,
        "content-type" => 31,
        "cookie" => 32,
        "date" => 33,
        "etag" => 34,
        "expect" => 35,
        "expires" => 36,
        "from" => 37,
        "host" => 38,
        "if-match" => 39,
        "if-modified-since" => 40,
        "if-none-match" => 41,
        "if-range" => 42,
        "if-unmodified-since" => 43,
        "last-modified" => 44,
        "link" => 45,
        "location" => 46,
        "max-forwards" => 47,
        "proxy-authenticate" => 48,
        "proxy-authorization" => 49,
        "range" => 50,
        "referer" => 51,
        "refresh" => 52,
        "retry-after" => 53,
        "server" => 54,
        "set-cookie" => 55,
        "strict-transport-security" => 56,
        "transfer-encoding" => 57,
        "user-agent" => 58,
        "via" => 59,
        "vary" => 60,
        "www-authenticate" => 61,
        _ => return None,
    })
}

fn put_string(s: &[u8], out: &mut BytesMut) {
    put_integer(s.len(), 7, 0x00, out);
    out.put_slice(s);
}

fn put_integer(mut value: usize, prefix: u8, flags: u8, out: &mut BytesMut) {
    let mask = (1usize << prefix) - 1;
    if value < mask {
        out.put_u8(flags | value as u8);
        return;
    }
    out.put_u8(flags | mask as u8);
    value -= mask;
    while value >= 0x80 {
        out.put_u8((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(dec: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
        let mut fields = Vec::new();
        dec.decode(&Bytes::copy_from_slice(block), |n, v| {
            fields.push((
                String::from_utf8(n.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            ))
        })?;
        Ok(fields)
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 7541 C.4: three requests with Huffman coding, one table between them.
    #[test]
    fn the_rfc_s_requests_with_huffman_decode_in_turn() {
        let mut dec = Decoder::default();
        let first = hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff");
        assert_eq!(
            decode_all(&mut dec, &first).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ])
        );
        assert_eq!(dec.size, 57);
        let second = hex("8286 84be 5886 a8eb 1064 9cbf");
        assert_eq!(
            decode_all(&mut dec, &second).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ])
        );
        let third = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
        assert_eq!(
            decode_all(&mut dec, &third).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ])
        );
        assert_eq!(dec.size, 164);
        assert_eq!(dec.table.len(), 3);
    }

    /// RFC 7541 C.2.1-C.2.4: each representation alone.
    #[test]
    fn each_representation_decodes() {
        let mut dec = Decoder::default();
        let with_indexing = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        assert_eq!(
            decode_all(&mut dec, &with_indexing).unwrap(),
            pairs(&[("custom-key", "custom-header")])
        );
        assert_eq!(dec.size, 55);
        let without = hex("040c 2f73 616d 706c 652f 7061 7468");
        assert_eq!(
            decode_all(&mut dec, &without).unwrap(),
            pairs(&[(":path", "/sample/path")])
        );
        let never = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
        assert_eq!(
            decode_all(&mut dec, &never).unwrap(),
            pairs(&[("password", "secret")])
        );
        assert_eq!(dec.table.len(), 1, "only the first adds to the table");
        assert_eq!(
            decode_all(&mut dec, &[0x82]).unwrap(),
            pairs(&[(":method", "GET")])
        );
        // Index 62 is the dynamic table's newest entry.
        assert_eq!(
            decode_all(&mut dec, &[0xbe]).unwrap(),
            pairs(&[("custom-key", "custom-header")])
        );
    }

    #[test]
    fn static_names_are_the_table_s() {
        for (i, (name, _)) in STATIC.iter().enumerate().skip(14) {
            assert_eq!(static_name(name), Some(i + 1), "{name}");
        }
        assert_eq!(static_name("x-request-id"), None);
        assert_eq!(static_name(":status"), None);
    }

    #[test]
    fn bad_blocks_are_compression_errors() {
        let mut dec = Decoder::default();
        assert_eq!(decode_all(&mut dec, &[0x80]), Err(DecodeError::BadIndex(0)));
        assert_eq!(
            decode_all(&mut dec, &[0xbe]),
            Err(DecodeError::BadIndex(62))
        );
        // A literal whose value runs past the block.
        assert_eq!(
            decode_all(&mut dec, &[0x04, 0x05, b'/']),
            Err(DecodeError::Truncated)
        );
        // An integer that never ends, and one too large.
        assert_eq!(
            decode_all(&mut dec, &[0xff, 0xff, 0xff]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode_all(&mut dec, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(DecodeError::Overflow)
        );
        // A size update past the announced 4096, and one after a field.
        assert_eq!(
            decode_all(&mut dec, &[0x3f, 0xe2, 0x1f]),
            Err(DecodeError::BadSizeUpdate)
        );
        assert_eq!(
            decode_all(&mut dec, &[0x82, 0x20]),
            Err(DecodeError::BadSizeUpdate)
        );
        // Huffman string with zero padding.
        assert_eq!(
            decode_all(&mut dec, &[0x04, 0x81, 0x00]),
            Err(DecodeError::Huffman)
        );
    }

    #[test]
    fn the_table_evicts_and_a_size_update_shrinks_it() {
        let mut dec = Decoder::default();
        for i in 0..200u8 {
            let block = [0x40, 0x01, b'k', 0x01, b'a' + i % 26];
            decode_all(&mut dec, &block).unwrap();
            assert!(dec.size <= 4096);
        }
        // 34 bytes each: 120 of them fit in 4096.
        assert_eq!(dec.table.len(), 4096 / 34);
        decode_all(&mut dec, &[0x20]).unwrap();
        assert_eq!((dec.size, dec.table.len()), (0, 0));
        // With a zero-size table, an indexed insert keeps nothing.
        decode_all(&mut dec, &[0x40, 0x01, b'k', 0x01, b'v']).unwrap();
        assert_eq!(dec.table.len(), 0);
    }

    /// What the encoder writes, an independent decoder (this one, checked above against the
    /// RFC) reads back the same.
    #[test]
    fn encoded_answers_decode_to_what_went_in() {
        let mut out = BytesMut::new();
        encode_status(200, &mut out);
        encode_status(502, &mut out);
        encode_field("content-type", b"text/plain", &mut out);
        encode_field("x-request-id", b"abc", &mut out);
        let long = "v".repeat(300);
        encode_field("server", long.as_bytes(), &mut out);
        let got = decode_all(&mut Decoder::default(), &out).unwrap();
        assert_eq!(
            got,
            pairs(&[
                (":status", "200"),
                (":status", "502"),
                ("content-type", "text/plain"),
                ("x-request-id", "abc"),
                ("server", long.as_str()),
            ])
        );
    }
}
