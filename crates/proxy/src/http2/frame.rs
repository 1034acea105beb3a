//! HTTP/2 framing (RFC 9113 §4, §6): frame heads read from and written to byte buffers.

use bytes::{BufMut, BytesMut};

pub(crate) const HEAD_LEN: usize = 9;
/// The client connection preface (§3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub(crate) const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const PRIORITY: u8 = 0x2;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PUSH_PROMISE: u8 = 0x5;
pub(crate) const PING: u8 = 0x6;
pub(crate) const GOAWAY: u8 = 0x7;
pub(crate) const WINDOW_UPDATE: u8 = 0x8;
pub(crate) const CONTINUATION: u8 = 0x9;

pub(crate) const END_STREAM: u8 = 0x1;
pub(crate) const ACK: u8 = 0x1;
pub(crate) const END_HEADERS: u8 = 0x4;
pub(crate) const PADDED: u8 = 0x8;
pub(crate) const PRIORITY_FLAG: u8 = 0x20;

/// SETTINGS identifiers (§6.5.2).
pub(crate) const ENABLE_PUSH: u16 = 0x2;
pub(crate) const MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub(crate) const INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(crate) const MAX_FRAME_SIZE: u16 = 0x5;
pub(crate) const MAX_HEADER_LIST_SIZE: u16 = 0x6;

pub(crate) const MAX_WINDOW: i64 = (1 << 31) - 1;
pub(crate) const DEFAULT_WINDOW: i64 = 65_535;
pub(crate) const MIN_MAX_FRAME: u32 = 16_384;
pub(crate) const MAX_MAX_FRAME: u32 = (1 << 24) - 1;

/// Error codes (§7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            0x0 => "NO_ERROR",
            0x1 => "PROTOCOL_ERROR",
            0x2 => "INTERNAL_ERROR",
            0x3 => "FLOW_CONTROL_ERROR",
            0x4 => "SETTINGS_TIMEOUT",
            0x5 => "STREAM_CLOSED",
            0x6 => "FRAME_SIZE_ERROR",
            0x7 => "REFUSED_STREAM",
            0x8 => "CANCEL",
            0x9 => "COMPRESSION_ERROR",
            0xa => "CONNECT_ERROR",
            0xb => "ENHANCE_YOUR_CALM",
            0xc => "INADEQUATE_SECURITY",
            0xd => "HTTP_1_1_REQUIRED",
            _ => return write!(f, "error code {:#x}", self.0),
        };
        f.write_str(name)
    }
}

/// A frame's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8; HEAD_LEN]) -> Head {
        Head {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored (§4.1).
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    pub fn write(self, out: &mut BytesMut) {
        let len = self.len as u32;
        out.put_slice(&[
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            self.kind,
            self.flags,
        ]);
        out.put_u32(self.stream);
    }
}

pub(crate) fn settings(values: &[(u16, u32)], out: &mut BytesMut) {
    Head {
        len: values.len() * 6,
        kind: SETTINGS,
        flags: 0,
        stream: 0,
    }
    .write(out);
    for &(id, value) in values {
        out.put_u16(id);
        out.put_u32(value);
    }
}

pub(crate) fn window_update(stream: u32, increment: u32, out: &mut BytesMut) {
    Head {
        len: 4,
        kind: WINDOW_UPDATE,
        flags: 0,
        stream,
    }
    .write(out);
    out.put_u32(increment);
}

pub(crate) fn rst_stream(stream: u32, reason: Reason, out: &mut BytesMut) {
    Head {
        len: 4,
        kind: RST_STREAM,
        flags: 0,
        stream,
    }
    .write(out);
    out.put_u32(reason.0);
}

pub(crate) fn goaway(last: u32, reason: Reason, out: &mut BytesMut) {
    Head {
        len: 8,
        kind: GOAWAY,
        flags: 0,
        stream: 0,
    }
    .write(out);
    out.put_u32(last);
    out.put_u32(reason.0);
}

pub(crate) fn ping(flags: u8, payload: &[u8], out: &mut BytesMut) {
    Head {
        len: 8,
        kind: PING,
        flags,
        stream: 0,
    }
    .write(out);
    out.put_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_round_trips_and_the_reserved_bit_is_ignored() {
        let head = Head {
            len: 0x01_2345,
            kind: HEADERS,
            flags: END_HEADERS | END_STREAM,
            stream: 0x7fff_ffff,
        };
        let mut out = BytesMut::new();
        head.write(&mut out);
        let mut raw: [u8; HEAD_LEN] = out[..].try_into().unwrap();
        assert_eq!(Head::parse(&raw), head);
        raw[5] |= 0x80;
        assert_eq!(Head::parse(&raw), head);
    }
}
