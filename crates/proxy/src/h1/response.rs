//! A server's response head: parsed with httparse, its framing told (RFC 9112 §6.3), and
//! written again for the client with the hop-by-hop fields out, as
//! `headers::strip_hop_by_hop` does on hyper's path.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::request::{Field, parse_length, span, tokens};
use super::rewrite::{HopByHop, InBuf};

/// Field lines a server's head may have (hyper's client default).
const MAX_FIELDS: usize = 100;

/// How the body that follows a response head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 204, 304, 1xx).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes: re-framed as chunked for the client.
    Close,
}

impl Framing {
    /// Whether the body goes on framed anew (chunked for an HTTP/1.1 client, frames for
    /// hyper), so that a Content-Length the server sent is void.
    pub(crate) fn is_reframed(self) -> bool {
        matches!(self, Framing::Chunked | Framing::Close)
    }
}

/// The fields of a response head in `buf` that go on to the client: none of the hop-by-hop
/// ones (`HopByHop`), and no Content-Length when `void_length`.
pub(crate) fn end_to_end<'a>(
    buf: &'a [u8],
    fields: &'a [Field],
    void_length: bool,
) -> impl Iterator<Item = &'a Field> + 'a {
    let hop = HopByHop::new(InBuf(fields, buf));
    fields.iter().filter(move |f| {
        let name = &buf[f.name.clone()];
        let void = void_length && name.eq_ignore_ascii_case(b"content-length");
        !(void || hop.contains(name))
    })
}

/// What the server's head said, besides its fields (which stay in the read buffer, found by
/// the offsets `parse` leaves in its `fields`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Info {
    pub status: u16,
    /// The server's reason phrase, used when the status has no canonical one.
    pub reason: Range<usize>,
    /// The head's length in the buffer.
    pub len: usize,
    pub framing: Framing,
    /// The server's connection cannot carry another request (`Connection: close`, or a body
    /// that ends with the connection).
    pub close: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadResponse {
    #[error("malformed response head: {0}")]
    Malformed(&'static str),
}

/// Parses the response head at the start of `buf`: `None` while it is incomplete.
/// `is_head` is whether the request was HEAD. The head's fields are left in `fields`, as
/// offsets into `buf`, for [`client_head`]: the head is parsed once.
pub(crate) fn parse(
    buf: &[u8],
    is_head: bool,
    fields: &mut Vec<Field>,
) -> Result<Option<Info>, BadResponse> {
    // Uninitialised: httparse writes the slots it fills, and 100 zeroed ones are 3 KB of
    // stores per attempt.
    let mut raw = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut raw)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(BadResponse::Malformed("unparsable")),
    };
    let status = resp.code.ok_or(BadResponse::Malformed("no status"))?;
    if !(100..=999).contains(&status) {
        return Err(BadResponse::Malformed("status out of range"));
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te = false;
    let mut close = resp.version == Some(0);
    let at = |s: &[u8]| span(buf, s);
    fields.clear();
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        fields.push(Field {
            name: at(name),
            value: at(h.value),
        });
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(h.value).ok_or(BadResponse::Malformed("Content-Length"))?;
            if length.is_some_and(|m| m != n) {
                return Err(BadResponse::Malformed("two Content-Lengths"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
            // Only the final coding counts: chunked last means chunked framing.
            chunked = tokens(h.value)
                .last()
                .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"close"));
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 || is_head {
        Framing::Empty
    } else if te && chunked {
        Framing::Chunked
    } else if te {
        Framing::Close
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    // A server that sends both framings may disagree with rouse about where the body ends.
    if te && length.is_some() {
        close = true;
    }
    if framing == Framing::Close {
        close = true;
    }
    Ok(Some(Info {
        status,
        reason: resp.reason.map_or(0..0, |r| at(r.as_bytes())),
        len,
        framing,
        close,
    }))
}

/// Writes the client's copy of the response head `buf[..info.len]` into `out`: the status
/// line, the end-to-end fields, the framing the client gets, `Date` if the server sent none,
/// and `Connection: close` when the client's connection ends after it.
pub(crate) fn client_head(
    buf: &[u8],
    info: &Info,
    fields: &[Field],
    close_client: bool,
    out: &mut Vec<u8>,
) {
    let status = info.status;
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map_or(&buf[info.reason.clone()], str::as_bytes);
    // `status` is 100..=999 (`parse`): three digits, written without the formatter.
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    let mut has_date = false;
    let rechunk = info.framing.is_reframed();
    // RFC 9110 §8.6: never in a 1xx or 204 (hyper drops it there too).
    let no_length = rechunk || status == 204 || (100..200).contains(&status);
    for f in end_to_end(buf, fields, no_length) {
        let (name, value) = f.of(buf);
        has_date |= name.eq_ignore_ascii_case(b"date");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if rechunk {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !has_date && !(100..200).contains(&status) {
        out.extend_from_slice(b"date: ");
        super::date::append(out);
        out.extend_from_slice(b"\r\n");
    }
    if close_client && !(100..200).contains(&status) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(text: &str, is_head: bool) -> Info {
        head(text, is_head).0
    }

    fn head(text: &str, is_head: bool) -> (Info, Vec<Field>) {
        let mut fields = Vec::new();
        let info = parse(text.as_bytes(), is_head, &mut fields)
            .unwrap()
            .unwrap();
        (info, fields)
    }

    fn client(text: &str, close_client: bool) -> String {
        let (i, fields) = head(text, false);
        let mut out = Vec::new();
        client_head(text.as_bytes(), &i, &fields, close_client, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = |t: &str| info(t, false).framing;
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Framing::Chunked
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Framing::Close
        );
        assert_eq!(f("HTTP/1.1 200 OK\r\n\r\n"), Framing::Close);
        assert_eq!(
            f("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
            Framing::Empty
        );
        assert_eq!(f("HTTP/1.1 304 Not Modified\r\n\r\n"), Framing::Empty);
        assert_eq!(
            f("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"),
            Framing::Empty
        );
        assert_eq!(
            info("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).framing,
            Framing::Empty
        );
    }

    #[test]
    fn what_ends_the_server_s_connection() {
        assert!(!info("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false).close);
        assert!(
            info(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                false
            )
            .close
        );
        assert!(info("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false).close);
        assert!(info("HTTP/1.1 200 OK\r\n\r\n", false).close);
        assert!(
            info(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            )
            .close
        );
    }

    #[test]
    fn malformed_heads_are_errors() {
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTX/1.1 200 OK\r\n\r\n",
        ] {
            assert!(
                parse(bad.as_bytes(), false, &mut Vec::new()).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nX: y", false, &mut Vec::new()),
            Ok(None)
        );
    }

    #[test]
    fn the_client_s_head_drops_hop_by_hop_fields_and_reframes() {
        let text = "HTTP/1.1 200 OK\r\nConnection: close, X-Internal\r\nX-Internal: 1\r\n\
                    Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\
                    Server: s\r\n\r\n";
        let out = client(text, false);
        assert!(
            out.starts_with("HTTP/1.1 200 OK\r\nServer: s\r\ntransfer-encoding: chunked\r\ndate: "),
            "{out}"
        );
        assert!(out.ends_with(" GMT\r\n\r\n"), "{out}");
        let text = "HTTP/1.1 204 Nope\r\nDate: x\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            client(text, false),
            "HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n"
        );
        let text = "HTTP/1.1 404 Nope\r\nDate: x\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            client(text, true),
            "HTTP/1.1 404 Not Found\r\nDate: x\r\nContent-Length: 0\r\nconnection: close\r\n\r\n"
        );
        // No canonical reason: the server's own, as it sent it.
        let text = "HTTP/1.1 599 Net Gone\r\nDate: x\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(client(text, false), text);
        let text = "HTTP/1.1 999 \r\nDate: x\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(client(text, false), text);
    }
}
