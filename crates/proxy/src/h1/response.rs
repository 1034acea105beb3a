//! A server's response head: parsed with httparse, its framing told (RFC 9112 §6.3), and
//! written again for the client with the hop-by-hop fields out, as
//! `headers::strip_hop_by_hop` does on hyper's path.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::lines::{self, FieldSet, bit};
use super::request::{Field, eq_lower, parse_length, span, tokens};
use super::rewrite::{HopByHop, InBuf, is_listed_hop_by_hop};

/// Field lines a server's head may have (hyper's client default).
const MAX_FIELDS: usize = 100;
const _: () = assert!(MAX_FIELDS <= FieldSet::BITS as usize);

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
    let hop = HopByHop::new(InBuf(fields, buf, 0));
    fields.iter().filter(move |f| {
        let name = &buf[f.name.clone()];
        let void = void_length && name.eq_ignore_ascii_case(b"content-length");
        !(void || hop.contains(name))
    })
}

/// The client's side of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientConn {
    /// The client's connection ends after this answer.
    pub close: bool,
    /// The client spoke HTTP/1.0: it reads neither a chunked body nor a 1xx answer (RFC 9110
    /// §15.2), and keeps its connection only when told `keep-alive` (RFC 9112 §9.3).
    pub http10: bool,
}

impl ClientConn {
    /// Its connection after an answer whose body is `framing`: an HTTP/1.0 client reads a
    /// body of unknown length to the connection's end, which it gets unchunked.
    pub(crate) fn after(self, framing: Framing) -> ClientConn {
        ClientConn {
            close: self.close || (self.http10 && framing.is_reframed()),
            ..self
        }
    }

    /// The `Connection` field of a final answer: `close` when the connection ends after it,
    /// `keep-alive` to an HTTP/1.0 client whose connection stays (as hyper and nginx say).
    pub(crate) fn write_connection(self, out: &mut Vec<u8>) {
        if self.close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if self.http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
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
    /// The fields that never reach the client: the hop-by-hop ones (`HopByHop`).
    pub hop: FieldSet,
    /// The Content-Length fields.
    pub lengths: FieldSet,
    pub has_date: bool,
    /// Every line of the head ends in CRLF and `hop` is whole (no field is hop-by-hop only
    /// because a `Connection` value names it, but for `close`, counted in `hop`): the kept
    /// lines can go to the client as the server wrote them (see `client_head`).
    pub plain: bool,
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
    let mut hop: FieldSet = 0;
    let mut lengths: FieldSet = 0;
    let mut named_close: FieldSet = 0;
    let mut has_date = false;
    let mut plain = true;
    let mut close_named = false;
    fields.clear();
    for (i, h) in resp.headers.iter().enumerate() {
        let name = h.name.as_bytes();
        fields.push(Field {
            name: at(name),
            value: at(h.value),
        });
        let this = bit(i);
        if is_listed_hop_by_hop(name) {
            hop |= this;
        }
        match name.len() {
            14 if eq_lower(name, b"content-length") => {
                lengths |= this;
                let n = parse_length(h.value).ok_or(BadResponse::Malformed("Content-Length"))?;
                if length.is_some_and(|m| m != n) {
                    return Err(BadResponse::Malformed("two Content-Lengths"));
                }
                length = Some(n);
            }
            17 if eq_lower(name, b"transfer-encoding") => {
                te = true;
                // Only the final coding counts: chunked last means chunked framing.
                chunked = tokens(h.value)
                    .last()
                    .is_some_and(|t| eq_lower(t, b"chunked"));
            }
            10 if eq_lower(name, b"connection") => {
                for t in tokens(h.value) {
                    if eq_lower(t, b"close") {
                        close = true;
                        close_named = true;
                    } else if !is_listed_hop_by_hop(t) {
                        plain = false;
                    }
                }
            }
            5 if eq_lower(name, b"close") => named_close |= this,
            4 if eq_lower(name, b"date") => has_date = true,
            _ => {}
        }
    }
    if close_named {
        hop |= named_close;
    }
    // The status line is written anew: only the fields' lines matter.
    plain &= lines::end_in_crlf(buf, 0, len, fields.iter().map(|f| f.name.start));
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
        hop,
        lengths,
        has_date,
        plain,
    }))
}

/// Writes the client's copy of the response head `buf[..info.len]` into `out`: the status
/// line, the end-to-end fields, the framing the client gets (chunked, unless it speaks
/// HTTP/1.0 and reads to the close: see [`ClientConn::after`]), `Date` if the server sent
/// none, and what `client` says of its connection.
///
/// The status line says HTTP/1.1 to an HTTP/1.0 client too, as nginx's does (RFC 9110 §2.5:
/// the highest minor version the server conforms to).
pub(crate) fn client_head(
    buf: &[u8],
    info: &Info,
    fields: &[Field],
    client: ClientConn,
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
    let rechunk = info.framing.is_reframed();
    // RFC 9110 §8.6: never in a 1xx or 204 (hyper drops it there too).
    let no_length = rechunk || status == 204 || (100..200).contains(&status);
    let has_date = if info.plain {
        let dropped = info.hop | if no_length { info.lengths } else { 0 };
        lines::copy_kept(buf, info.len, fields, dropped, out);
        info.has_date
    } else {
        let mut has_date = false;
        for f in end_to_end(buf, fields, no_length) {
            let (name, value) = f.of(buf);
            has_date |= name.eq_ignore_ascii_case(b"date");
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        has_date
    };
    if rechunk && !client.http10 {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !has_date && !(100..200).contains(&status) {
        out.extend_from_slice(b"date: ");
        super::date::append(out);
        out.extend_from_slice(b"\r\n");
    }
    if !(100..200).contains(&status) {
        client.write_connection(out);
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

    fn client(text: &str, close: bool) -> String {
        client_as(
            text,
            ClientConn {
                close,
                http10: false,
            },
        )
    }

    fn client_as(text: &str, conn: ClientConn) -> String {
        let (i, fields) = head(text, false);
        let mut out = Vec::new();
        client_head(
            text.as_bytes(),
            &i,
            &fields,
            conn.after(i.framing),
            &mut out,
        );
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

    #[test]
    fn kept_lines_go_as_the_server_wrote_them_and_bare_lfs_do_not() {
        let text = "HTTP/1.1 200 OK\r\nServer:  s \r\nConnection: keep-alive\r\nDate: x\r\n\
                    Content-Length: 2\r\nX-A:b\r\n\r\n";
        assert!(info(text, false).plain);
        assert_eq!(
            client(text, false),
            "HTTP/1.1 200 OK\r\nServer:  s \r\nDate: x\r\nContent-Length: 2\r\nX-A:b\r\n\r\n"
        );
        // A bare LF ends a line for httparse, never in what the client gets.
        let text = "HTTP/1.1 200 OK\r\nServer: s\nDate: x\r\nContent-Length: 2\r\n\r\n";
        assert!(!info(text, false).plain);
        assert_eq!(
            client(text, false),
            "HTTP/1.1 200 OK\r\nServer: s\r\nDate: x\r\nContent-Length: 2\r\n\r\n"
        );
        // `close` names a field as any other token does.
        let text = "HTTP/1.1 200 OK\r\nClose: 1\r\nDate: x\r\nConnection: close\r\n\
                    Content-Length: 0\r\n\r\n";
        assert!(info(text, false).plain);
        assert_eq!(
            client(text, false),
            "HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 0\r\n\r\n"
        );
    }

    /// To an HTTP/1.0 client: no chunked framing (the body is read to the close, which ends
    /// its connection), and `keep-alive` said when its connection stays.
    #[test]
    fn an_http10_client_gets_no_chunks_and_is_told_its_connection_stays() {
        let keep = ClientConn {
            close: false,
            http10: true,
        };
        let text = "HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(
            client_as(text, keep),
            "HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 2\r\nconnection: keep-alive\r\n\r\n"
        );
        for text in [
            "HTTP/1.1 200 OK\r\nDate: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nDate: x\r\nConnection: keep-alive\r\n\r\n",
            "HTTP/1.1 200 OK\r\nDate: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        ] {
            assert_eq!(
                client_as(text, keep),
                "HTTP/1.1 200 OK\r\nDate: x\r\nconnection: close\r\n\r\n",
                "{text:?}"
            );
        }
        let text = "HTTP/1.1 304 Not Modified\r\nDate: x\r\n\r\n";
        assert_eq!(
            client_as(
                text,
                ClientConn {
                    close: true,
                    http10: true
                }
            ),
            "HTTP/1.1 304 Not Modified\r\nDate: x\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            client_as(text, keep),
            "HTTP/1.1 304 Not Modified\r\nDate: x\r\nconnection: keep-alive\r\n\r\n"
        );
    }

    /// The fields of a head, as httparse reads them (names lowercased), a `date` field's
    /// value left out (rouse writes the clock's).
    fn read_fields(head: &[u8]) -> (u16, Vec<(String, String)>) {
        let mut raw = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut raw);
        assert!(resp.parse(head).unwrap().is_complete());
        let fields = resp
            .headers
            .iter()
            .map(|h| {
                let name = h.name.to_ascii_lowercase();
                let value = if name == "date" {
                    String::new()
                } else {
                    String::from_utf8_lossy(h.value).into_owned()
                };
                (name, value)
            })
            .collect();
        (resp.code.unwrap(), fields)
    }

    proptest::proptest! {
        /// Copied as lines (`plain`), the client's head has the fields written one by one
        /// from the parsed head would have.
        #[test]
        fn lines_copied_are_the_fields_written_one_by_one(
            lines in proptest::collection::vec((0..NAMES.len(), 0..4usize, 0..3usize, 0..3usize), 0..12),
            status in proptest::sample::select(vec![200u16, 204, 304, 404, 103, 599]),
            close_client: bool,
            http10: bool,
        ) {
            let mut text = format!("HTTP/1.1 {status} Something\r\n");
            for &(n, v, before, after) in &lines {
                let name = NAMES[n];
                let value = match name {
                    "Content-Length" => "5".to_owned(),
                    "Transfer-Encoding" => ["chunked", "gzip, chunked", "gzip", "chunked"][v].to_owned(),
                    "Connection" => ["close", "keep-alive", "X-A, close", "Keep-Alive, te, Date"][v].to_owned(),
                    _ => ["v", "a b", "", "x,y"][v].to_owned(),
                };
                let ows = ["", " ", " \t "];
                text.push_str(&format!("{name}:{}{value}{}\r\n", ows[before], ows[after]));
            }
            text.push_str("\r\n");
            let mut fields = Vec::new();
            let Ok(Some(info)) = parse(text.as_bytes(), false, &mut fields) else {
                return Err(proptest::test_runner::TestCaseError::reject("not a head rouse forwards"));
            };
            let connection_names_more = lines.iter().any(|&(n, v, _, _)| NAMES[n] == "Connection" && v >= 2);
            proptest::prop_assert_eq!(info.plain, !connection_names_more);
            let conn = ClientConn { close: close_client, http10 }.after(info.framing);
            let mut copied = Vec::new();
            client_head(text.as_bytes(), &info, &fields, conn, &mut copied);
            let mut written = Vec::new();
            let one_by_one = Info { plain: false, ..info.clone() };
            client_head(text.as_bytes(), &one_by_one, &fields, conn, &mut written);
            proptest::prop_assert_eq!(read_fields(&copied), read_fields(&written));
        }
    }

    const NAMES: [&str; 13] = [
        "Connection",
        "Keep-Alive",
        "TE",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Connection",
        "Content-Length",
        "Date",
        "Close",
        "X-A",
        "x-b",
        "Server",
        "Proxy-Authenticate",
    ];
}
