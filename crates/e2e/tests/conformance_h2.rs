//! rouse's HTTP/2 server (RFC 9113) over raw frames, in front of the test backend: what a
//! hand-written server gets wrong. Connection errors end with GOAWAY and the right code;
//! malformed requests reset their own stream only and never reach a server; padding,
//! CONTINUATION, trailers and flow control work; a reset stream stops its request.
//!
//! The frames are built here by hand (header blocks as HPACK literals, no Huffman), and the
//! answers read the same way: rouse's encoder sends only static indexes and raw literals.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{start_rouse, start_rouse_with_proxy, static_upstream};
use rouse::Rouse;
use rouse_e2e::{InProcessBackend, spawn_in_process, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;

const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const STREAM_CLOSED: u32 = 0x5;
const FRAME_SIZE_ERROR: u32 = 0x6;
const COMPRESSION_ERROR: u32 = 0x9;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

struct Site {
    rouse: Rouse,
    backend: InProcessBackend,
}

async fn site() -> Site {
    let backend = spawn_in_process("h2").await;
    let rouse = start_rouse(&static_upstream("h2", &[], "", &[backend.addr()])).await;
    Site { rouse, backend }
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A raw HTTP/2 client connection.
struct Client {
    s: TcpStream,
}

impl Client {
    /// Connected, preface and an empty SETTINGS sent.
    async fn open(addr: SocketAddr) -> Client {
        Client::with_settings(addr, &[]).await
    }

    async fn with_settings(addr: SocketAddr, settings: &[(u16, u32)]) -> Client {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut c = Client { s };
        let payload: Vec<u8> = settings
            .iter()
            .flat_map(|(id, v)| [id.to_be_bytes().to_vec(), v.to_be_bytes().to_vec()].concat())
            .collect();
        c.send(SETTINGS, 0, 0, &payload).await;
        c
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        // A write may fail once rouse has closed the connection; what it said is read next.
        let _ = self.s.write_all(&f).await;
    }

    async fn get(&mut self, stream: u32, path: &str) {
        let block = block(&request("GET", path, &[]));
        self.send(HEADERS, END_HEADERS | END_STREAM, stream, &block)
            .await;
    }

    /// The next frame, `None` at the end of the connection.
    async fn frame(&mut self) -> Option<Frame> {
        let mut head = [0u8; 9];
        match timeout(WAIT, self.s.read_exact(&mut head)).await {
            Err(_) => panic!("no frame from rouse within {WAIT:?}"),
            Ok(Err(_)) => return None,
            Ok(Ok(_)) => {}
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0; len];
        timeout(WAIT, self.s.read_exact(&mut payload))
            .await
            .expect("a frame's payload within the wait")
            .ok()?;
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        })
    }

    /// The next frame on a stream or a GOAWAY, acking SETTINGS and skipping the rest.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            let f = self.frame().await?;
            match f.kind {
                SETTINGS if f.flags & 1 == 0 => self.send(SETTINGS, 1, 0, &[]).await,
                GOAWAY => return Some(f),
                _ if f.stream != 0 => return Some(f),
                _ => {}
            }
        }
    }

    /// The GOAWAY that ends the connection: its error code, then the connection closes.
    async fn goaway(&mut self) -> u32 {
        loop {
            match self.next().await {
                Some(f) if f.kind == GOAWAY => {
                    let code = u32::from_be_bytes(f.payload[4..8].try_into().unwrap());
                    // Then the connection closes: nothing but the end follows.
                    while let Some(f) = self.frame().await {
                        assert_ne!(f.kind, HEADERS, "an answer after GOAWAY: {f:?}");
                    }
                    return code;
                }
                Some(_) => continue,
                None => panic!("the connection closed without GOAWAY"),
            }
        }
    }

    /// The RST_STREAM on `stream`: its error code.
    async fn reset(&mut self, stream: u32) -> u32 {
        loop {
            let f = self.next().await.expect("RST_STREAM before the end");
            assert_ne!(f.kind, GOAWAY, "GOAWAY instead of RST_STREAM: {f:?}");
            if f.kind == RST_STREAM && f.stream == stream {
                return u32::from_be_bytes(f.payload[..4].try_into().unwrap());
            }
        }
    }

    /// The answer on `stream`: status, fields and body.
    async fn answer(&mut self, stream: u32) -> Answer {
        let mut a = Answer::default();
        loop {
            let f = self.next().await.expect("an answer before the end");
            assert_ne!(f.kind, GOAWAY, "GOAWAY instead of an answer: {f:?}");
            assert_ne!(f.kind, RST_STREAM, "a reset instead of an answer: {f:?}");
            if f.stream != stream {
                continue;
            }
            match f.kind {
                HEADERS | CONTINUATION => a.fields.extend(decode(&f.payload)),
                DATA => a.body.extend_from_slice(&f.payload),
                _ => {}
            }
            if f.flags & END_STREAM != 0 && matches!(f.kind, HEADERS | DATA) {
                a.status = a.field(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
                return a;
            }
        }
    }
}

#[derive(Debug, Default)]
struct Answer {
    status: u16,
    fields: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn request<'a>(
    method: &'a str,
    path: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![
        (":method", method),
        (":scheme", "http"),
        (":authority", "h2.test"),
        (":path", path),
    ];
    f.extend_from_slice(extra);
    f
}

/// A header block of literals without indexing, new names, raw strings.
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        out.push(0x00);
        string(n.as_bytes(), &mut out);
        string(v.as_bytes(), &mut out);
    }
    out
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    assert!(s.len() < 127, "short strings only");
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// RFC 7541's static table, as far as rouse's answers use it.
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

/// Decodes what rouse's encoder writes: indexed static fields and literals without indexing.
fn decode(mut b: &[u8]) -> Vec<(String, String)> {
    fn int(b: &mut &[u8], prefix: u8) -> usize {
        let mask = (1usize << prefix) - 1;
        let mut v = usize::from(b[0]) & mask;
        *b = &b[1..];
        if v < mask {
            return v;
        }
        let mut shift = 0;
        loop {
            let x = b[0];
            *b = &b[1..];
            v += usize::from(x & 0x7f) << shift;
            shift += 7;
            if x & 0x80 == 0 {
                return v;
            }
        }
    }
    fn str(b: &mut &[u8]) -> String {
        assert_eq!(b[0] & 0x80, 0, "rouse sends no Huffman strings");
        let len = int(b, 7);
        let s = String::from_utf8(b[..len].to_vec()).unwrap();
        *b = &b[len..];
        s
    }
    let mut fields = Vec::new();
    while !b.is_empty() {
        if b[0] & 0x80 != 0 {
            let (n, v) = STATIC[int(&mut b, 7) - 1];
            fields.push((n.to_owned(), v.to_owned()));
        } else {
            assert_eq!(
                b[0] & 0xf0,
                0,
                "only literals without indexing: {:#x}",
                b[0]
            );
            let index = int(&mut b, 4);
            let name = if index == 0 {
                str(&mut b)
            } else {
                STATIC[index - 1].0.to_owned()
            };
            fields.push((name, str(&mut b)));
        }
    }
    fields
}

fn window_update(increment: u32) -> [u8; 4] {
    increment.to_be_bytes()
}

/// Requests in every framing a client may use are answered: padded HEADERS, a head split
/// over CONTINUATION frames, a padded and split body, trailers.
#[tokio::test]
async fn framings_a_client_may_use_are_all_answered() {
    let site = site().await;
    let mut c = Client::open(site.rouse.addr()).await;

    c.get(1, "/").await;
    let a = c.answer(1).await;
    assert_eq!((a.status, a.body.as_slice()), (200, &b"h2"[..]));
    assert!(a.field("date").is_some(), "{:?}", a.fields);

    // Padded HEADERS (4 bytes of padding) with a priority on another stream.
    let mut padded = vec![4];
    padded.extend_from_slice(&[0, 0, 0, 1, 16]);
    padded.extend_from_slice(&block(&request("GET", "/", &[])));
    padded.extend_from_slice(&[0; 4]);
    c.send(
        HEADERS,
        END_HEADERS | END_STREAM | PADDED | 0x20,
        3,
        &padded,
    )
    .await;
    assert_eq!(c.answer(3).await.status, 200);

    // A head in three pieces, with a PRIORITY frame for another stream before it.
    c.send(PRIORITY, 0, 7, &[0, 0, 0, 3, 16]).await;
    let whole = block(&request("GET", "/inspect", &[("x-split", "yes")]));
    let (a1, rest) = whole.split_at(10);
    let (a2, a3) = rest.split_at(10);
    c.send(HEADERS, END_STREAM, 5, a1).await;
    c.send(CONTINUATION, 0, 5, a2).await;
    c.send(CONTINUATION, END_HEADERS, 5, a3).await;
    let a = c.answer(5).await;
    assert_eq!(a.status, 200);
    let seen: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(seen["headers"]["x-split"], "yes", "{seen}");

    // A body in a padded DATA frame and a plain one, then trailers.
    let head = block(&request("POST", "/inspect", &[("content-length", "10")]));
    c.send(HEADERS, END_HEADERS, 7, &head).await;
    let mut data = vec![3];
    data.extend_from_slice(b"01234");
    data.extend_from_slice(&[0; 3]);
    c.send(DATA, PADDED, 7, &data).await;
    c.send(DATA, 0, 7, b"56789").await;
    c.send(
        HEADERS,
        END_HEADERS | END_STREAM,
        7,
        &block(&[("x-trailer", "t")]),
    )
    .await;
    let a = c.answer(7).await;
    assert_eq!(a.status, 200);
    let seen: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(seen["method"], "POST", "{seen}");
    assert_eq!(seen["body"], "0123456789", "{seen}");
    assert_eq!(seen["trailers"]["x-trailer"], "t", "{seen}");
    assert_eq!(site.backend.stats().requests, 4);
}

/// Each break of the protocol ends the connection with GOAWAY and its error code, and no
/// request of that connection reaches a server.
#[tokio::test]
async fn protocol_errors_end_the_connection_with_goaway() {
    let site = site().await;
    let addr = site.rouse.addr();
    let get = block(&request("GET", "/", &[]));
    type Case = (&'static str, u32, Vec<(u8, u8, u32, Vec<u8>)>);
    let cases: Vec<Case> = vec![
        (
            "a frame past 16 KiB",
            FRAME_SIZE_ERROR,
            vec![(DATA, 0, 1, vec![0; 16_385])],
        ),
        (
            "a stream with an even id",
            PROTOCOL_ERROR,
            vec![(HEADERS, END_HEADERS | END_STREAM, 2, get.clone())],
        ),
        (
            "a header block cut by another stream's",
            PROTOCOL_ERROR,
            vec![
                (HEADERS, END_STREAM, 1, get[..5].to_vec()),
                (HEADERS, END_HEADERS, 3, get.clone()),
            ],
        ),
        (
            "CONTINUATION alone",
            PROTOCOL_ERROR,
            vec![(CONTINUATION, END_HEADERS, 1, get.clone())],
        ),
        (
            "an index in no table",
            COMPRESSION_ERROR,
            vec![(HEADERS, END_HEADERS | END_STREAM, 1, vec![0x80])],
        ),
        (
            "PUSH_PROMISE from a client",
            PROTOCOL_ERROR,
            vec![(PUSH_PROMISE, END_HEADERS, 1, vec![0, 0, 0, 2])],
        ),
        (
            "PING of 7 bytes",
            FRAME_SIZE_ERROR,
            vec![(PING, 0, 0, vec![0; 7])],
        ),
        (
            "PING on a stream",
            PROTOCOL_ERROR,
            vec![(PING, 0, 1, vec![0; 8])],
        ),
        (
            "SETTINGS of 5 bytes",
            FRAME_SIZE_ERROR,
            vec![(SETTINGS, 0, 0, vec![0; 5])],
        ),
        (
            "INITIAL_WINDOW_SIZE past 2^31-1",
            FLOW_CONTROL_ERROR,
            vec![(SETTINGS, 0, 0, vec![0, 4, 0x80, 0, 0, 0])],
        ),
        (
            "MAX_FRAME_SIZE under 16 KiB",
            PROTOCOL_ERROR,
            vec![(SETTINGS, 0, 0, vec![0, 5, 0, 0, 0x10, 0])],
        ),
        (
            "the connection window past 2^31-1",
            FLOW_CONTROL_ERROR,
            vec![(WINDOW_UPDATE, 0, 0, window_update(0x7fff_ffff).to_vec())],
        ),
        (
            "a WINDOW_UPDATE of 0",
            PROTOCOL_ERROR,
            vec![(WINDOW_UPDATE, 0, 0, vec![0; 4])],
        ),
        (
            "DATA on a stream never opened",
            PROTOCOL_ERROR,
            vec![(DATA, END_STREAM, 5, b"x".to_vec())],
        ),
        (
            "RST_STREAM on a stream never opened",
            PROTOCOL_ERROR,
            vec![(RST_STREAM, 0, 9, vec![0; 4])],
        ),
        (
            "padding as long as the frame",
            PROTOCOL_ERROR,
            vec![(HEADERS, END_HEADERS | END_STREAM | PADDED, 1, vec![9, 0x82])],
        ),
    ];
    // The CONTINUATION flood: a header block that never ends, in empty frames.
    let mut flood = vec![(HEADERS, END_STREAM, 1, get[..3].to_vec())];
    flood.extend((0..200).map(|_| (CONTINUATION, 0, 1, Vec::new())));
    let mut cases = cases;
    cases.push(("the CONTINUATION flood", ENHANCE_YOUR_CALM, flood));
    for (what, code, frames) in cases {
        let mut c = Client::open(addr).await;
        for (kind, flags, stream, payload) in frames {
            c.send(kind, flags, stream, &payload).await;
        }
        assert_eq!(c.goaway().await, code, "{what}");
    }

    // The first frame must be SETTINGS.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut c = Client { s };
    c.send(PING, 0, 0, &[0; 8]).await;
    assert_eq!(c.goaway().await, PROTOCOL_ERROR, "PING before SETTINGS");

    // HEADERS on a stream whose exchange ended: STREAM_CLOSED.
    let mut c = Client::open(addr).await;
    c.get(1, "/").await;
    assert_eq!(c.answer(1).await.status, 200);
    c.get(1, "/").await;
    assert_eq!(
        c.goaway().await,
        STREAM_CLOSED,
        "HEADERS on a closed stream"
    );

    // Not the preface at all: closed without an answer.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .expect("closed")
        .ok();
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1 200"),
        "{rest:?}"
    );

    assert_eq!(
        site.backend.stats().requests,
        1,
        "only the one good request was served"
    );

    // The rapid reset (CVE-2023-44487): streams opened and reset at once, past what answers
    // earn (some may reach the server before their reset).
    let mut c = Client::open(addr).await;
    for i in 0..1100u32 {
        c.send(HEADERS, END_HEADERS | END_STREAM, 2 * i + 1, &get)
            .await;
        c.send(RST_STREAM, 0, 2 * i + 1, &CANCEL.to_be_bytes())
            .await;
    }
    assert_eq!(c.goaway().await, ENHANCE_YOUR_CALM, "the rapid reset");
}

/// Malformed requests (RFC 9113 §8.1.1, §8.2, §8.3) reset their own stream with
/// PROTOCOL_ERROR; the connection goes on serving, and no server sees them.
#[tokio::test]
async fn malformed_requests_reset_only_their_stream() {
    let site = site().await;
    let mut c = Client::open(site.rouse.addr()).await;
    let cases: [(&str, Vec<(&str, &str)>); 9] = [
        (
            "an uppercase name",
            request("GET", "/", &[("X-Upper", "1")]),
        ),
        (
            "a connection-specific field",
            request("GET", "/", &[("connection", "close")]),
        ),
        (
            "te other than trailers",
            request("GET", "/", &[("te", "gzip")]),
        ),
        (
            "transfer-encoding",
            request("GET", "/", &[("transfer-encoding", "chunked")]),
        ),
        (
            "no :path",
            vec![
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "h2.test"),
            ],
        ),
        (
            "an unknown pseudo-field",
            request("GET", "/", &[(":protocol", "websocket")]),
        ),
        (
            "a pseudo-field after a regular one",
            vec![
                (":method", "GET"),
                ("accept", "*/*"),
                (":scheme", "http"),
                (":path", "/"),
            ],
        ),
        (
            "a value with a newline",
            request("GET", "/", &[("x-a", "b\nc")]),
        ),
        (
            "content-length on a request without a body",
            request("GET", "/", &[("content-length", "3")]),
        ),
    ];
    let mut id = 1;
    for (what, fields) in cases {
        c.send(HEADERS, END_HEADERS | END_STREAM, id, &block(&fields))
            .await;
        assert_eq!(c.reset(id).await, PROTOCOL_ERROR, "{what}");
        id += 2;
    }
    // A body that does not match its Content-Length: under, then over.
    for body in [&b"ab"[..], &b"abcd"[..]] {
        let head = block(&request("POST", "/inspect", &[("content-length", "3")]));
        c.send(HEADERS, END_HEADERS, id, &head).await;
        c.send(DATA, END_STREAM, id, body).await;
        assert_eq!(
            c.reset(id).await,
            PROTOCOL_ERROR,
            "a body of {} for 3",
            body.len()
        );
        id += 2;
    }
    // DATA after the stream's end.
    c.get(id, "/delay/300").await;
    c.send(DATA, 0, id, b"late").await;
    assert_eq!(c.reset(id).await, STREAM_CLOSED, "DATA after END_STREAM");
    id += 2;

    c.get(id, "/").await;
    assert_eq!(
        c.answer(id).await.status,
        200,
        "the connection still serves"
    );
    // The POSTs that were reset may have reached the server; the heads never did.
    assert!(
        site.backend.stats().requests <= 4,
        "{:?}",
        site.backend.stats()
    );
}

/// A head past the header list size rouse announced (`max_header_size` plus 32 bytes a
/// field, HTTP/2's count) is answered 431, never forwarded, and the connection goes on.
#[tokio::test]
async fn a_head_past_the_header_list_size_is_431() {
    let site = site().await;
    let mut c = Client::open(site.rouse.addr()).await;
    let value = "v".repeat(100);
    let names: Vec<String> = (0..400).map(|i| format!("x-field-{i}")).collect();
    let mut fields = request("GET", "/", &[]);
    fields.extend(names.iter().map(|n| (n.as_str(), value.as_str())));
    let whole = block(&fields);
    assert!(whole.len() > 40_000);
    let mut pieces = whole.chunks(16_384).peekable();
    c.send(HEADERS, END_STREAM, 1, pieces.next().unwrap()).await;
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        c.send(CONTINUATION, if last { END_HEADERS } else { 0 }, 1, piece)
            .await;
    }
    let a = c.answer(1).await;
    assert_eq!(a.status, 431, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.field("x-rouse-error"), Some("header-too-large"));
    c.get(3, "/").await;
    assert_eq!(c.answer(3).await.status, 200, "the connection still serves");
    assert_eq!(
        site.backend.stats().requests,
        1,
        "only the small head reached a server"
    );
}

/// An answer goes out as the client's windows allow, and waits for WINDOW_UPDATE.
#[tokio::test]
async fn an_answer_waits_for_the_client_s_window() {
    let site = site().await;
    // Each stream's window: 1,000 bytes.
    let mut c = Client::with_settings(site.rouse.addr(), &[(0x4, 1000)]).await;
    c.get(1, "/bytes/5000").await;
    let mut got = 0usize;
    let mut head_seen = false;
    while got < 1000 {
        let f = c.next().await.expect("the answer");
        match f.kind {
            HEADERS => head_seen = true,
            DATA => got += f.payload.len(),
            _ => {}
        }
    }
    assert!(head_seen);
    assert_eq!(got, 1000, "no more than the window");
    // Nothing more comes until the window opens.
    let mut s_more = [0u8; 1];
    let quiet = timeout(Duration::from_millis(300), c.s.peek(&mut s_more)).await;
    assert!(quiet.is_err(), "rouse sent past the stream's window");
    c.send(WINDOW_UPDATE, 0, 1, &window_update(4000)).await;
    let mut end = false;
    while !end {
        let f = c.next().await.expect("the rest");
        if f.kind == DATA {
            got += f.payload.len();
            end = f.flags & END_STREAM != 0;
        }
    }
    assert_eq!(got, 5000);
}

/// A client's RST_STREAM drops the request in progress: the server's exchange ends at once,
/// and the connection goes on.
#[tokio::test]
async fn a_reset_stream_stops_its_request() {
    let site = site().await;
    let mut c = Client::open(site.rouse.addr()).await;
    c.get(1, "/delay/10000").await;
    wait_until("the server has the request", WAIT, || async {
        site.backend.stats().in_flight == 1
    })
    .await;
    c.send(RST_STREAM, 0, 1, &CANCEL.to_be_bytes()).await;
    wait_until("the server's exchange ends", WAIT, || async {
        site.backend.stats().in_flight == 0
    })
    .await;
    c.get(3, "/").await;
    assert_eq!(c.answer(3).await.status, 200);
}

/// A client that asks for `100 Continue` gets it (a HEADERS frame with `:status 100`, the
/// stream left open) once its body is read, and before the final answer; one that is
/// answered without its body being read (no route takes it) gets no 100.
#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let site = site().await;
    let mut c = Client::open(site.rouse.addr()).await;
    let fields = request(
        "POST",
        "/count",
        &[("expect", "100-continue"), ("content-length", "5")],
    );
    c.send(HEADERS, END_HEADERS, 1, &block(&fields)).await;
    let interim = loop {
        let f = c.next().await.expect("a 100 before the end");
        if f.stream == 1 {
            break f;
        }
    };
    assert_eq!(interim.kind, HEADERS, "{interim:?}");
    assert_eq!(
        interim.flags & END_STREAM,
        0,
        "a 100 leaves the stream open"
    );
    assert_eq!(
        decode(&interim.payload),
        [(":status".to_owned(), "100".to_owned())]
    );
    c.send(DATA, END_STREAM, 1, b"hello").await;
    let a = c.answer(1).await;
    assert_eq!(a.status, 200);
    assert_eq!(site.backend.stats().requests, 1);

    // Answered without its body being read (404: the one upstream takes another host): no
    // 100 ahead of the answer (`answer` would read the first `:status`, 100).
    let other = start_rouse(&static_upstream(
        "h2",
        &["elsewhere.test"],
        "",
        &[site.backend.addr()],
    ))
    .await;
    let mut c = Client::open(other.addr()).await;
    c.send(HEADERS, END_HEADERS, 1, &block(&fields)).await;
    let a = c.answer(1).await;
    assert_eq!(a.status, 404, "{a:?}");
}

/// `http2_max_concurrent_streams` and `http2_body_preread_size` are what rouse's SETTINGS
/// announce and what it holds a client to: the connection's window raised to the preread size
/// at once, and a stream past the limit refused (REFUSED_STREAM, the connection serving on)
/// until one of the open ones ends.
#[tokio::test]
async fn the_configured_stream_limit_and_window_are_announced_and_held() {
    const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    const INITIAL_WINDOW_SIZE: u16 = 0x4;
    const REFUSED_STREAM: u32 = 0x7;
    let backend = spawn_in_process("h2").await;
    let rouse = start_rouse_with_proxy(
        "http2_max_concurrent_streams = 2\nhttp2_body_preread_size = \"256KiB\"",
        &static_upstream("h2", &[], "", &[backend.addr()]),
    )
    .await;
    let mut c = Client::open(rouse.addr()).await;
    let (mut settings, mut raised) = (None, None);
    while settings.is_none() || raised.is_none() {
        let f = c.frame().await.expect("rouse's SETTINGS and WINDOW_UPDATE");
        match (f.kind, f.flags, f.stream) {
            (SETTINGS, 0, 0) => {
                let pairs: Vec<(u16, u32)> = f
                    .payload
                    .chunks(6)
                    .map(|p| {
                        let id = u16::from_be_bytes([p[0], p[1]]);
                        (id, u32::from_be_bytes([p[2], p[3], p[4], p[5]]))
                    })
                    .collect();
                c.send(SETTINGS, 1, 0, &[]).await;
                settings = Some(pairs);
            }
            (WINDOW_UPDATE, _, 0) => {
                raised = Some(u32::from_be_bytes(f.payload[..4].try_into().unwrap()));
            }
            _ => {}
        }
    }
    let settings = settings.unwrap();
    assert!(
        settings.contains(&(MAX_CONCURRENT_STREAMS, 2)),
        "{settings:?}"
    );
    assert!(
        settings.contains(&(INITIAL_WINDOW_SIZE, 256 * 1024)),
        "{settings:?}"
    );
    assert_eq!(raised, Some(256 * 1024 - 65_535), "the connection's window");

    // Two uploads held open (their bodies not sent yet), then a third stream: refused.
    let upload = request("POST", "/count", &[("content-length", "5")]);
    for stream in [1, 3] {
        c.send(HEADERS, END_HEADERS, stream, &block(&upload)).await;
    }
    c.get(5, "/").await;
    assert_eq!(c.reset(5).await, REFUSED_STREAM);
    for stream in [1, 3] {
        c.send(DATA, END_STREAM, stream, b"hello").await;
        assert_eq!(c.answer(stream).await.status, 200);
    }
    // Room again: the next stream is served.
    c.get(7, "/").await;
    assert_eq!(c.answer(7).await.status, 200);
    assert_eq!(
        backend.stats().requests,
        3,
        "the refused stream never reached the server"
    );
}

/// PING is answered with its payload, SETTINGS acknowledged; a client's GOAWAY lets the
/// streams it opened finish, then the connection closes.
#[tokio::test]
async fn ping_settings_and_a_client_s_goaway() {
    let site = site().await;
    let mut c = Client::open(site.rouse.addr()).await;
    c.send(PING, 0, 0, b"12345678").await;
    let mut acked = false;
    let mut pong = None;
    while pong.is_none() || !acked {
        let f = c.frame().await.expect("frames");
        match (f.kind, f.flags) {
            (PING, 1) => pong = Some(f.payload),
            (SETTINGS, 1) => acked = true,
            (SETTINGS, 0) => c.send(SETTINGS, 1, 0, &[]).await,
            _ => {}
        }
    }
    assert_eq!(pong.as_deref(), Some(&b"12345678"[..]));

    c.get(1, "/delay/200").await;
    let mut goaway = 1u32.to_be_bytes().to_vec();
    goaway.extend_from_slice(&NO_ERROR.to_be_bytes());
    c.send(GOAWAY, 0, 0, &goaway).await;
    assert_eq!(c.answer(1).await.status, 200, "the open stream finishes");
    let mut rest = Vec::new();
    timeout(WAIT, c.s.read_to_end(&mut rest))
        .await
        .expect("the connection closes after its last stream")
        .ok();
}
