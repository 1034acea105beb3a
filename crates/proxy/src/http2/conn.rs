//! One client's HTTP/2 connection (RFC 9113), served by one task: it reads and checks the
//! client's frames, decodes request heads, polls each stream's request future and answer body
//! when their wakers name them (`shared`), and writes answers as the client's flow control
//! allows. No lock is shared between streams, and no task is spawned per stream.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, DATE, EXPECT};
use http::{HeaderMap, HeaderValue, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::frame::{self, Head, Reason};
use super::hpack::{self, Decoder};
use super::out::Out;
use super::recv::{H2Body, Recv};
use super::request::{self, Head as RequestHead};
use super::shared::{Events, Shared, StreamWaker};
use super::window::RecvWindow;
use super::{Config, Streams};
use crate::activity::Open;
use crate::body::ProxyBody;
use crate::client_body::ClientBody;
use crate::headers::{self, Https};

/// Stop reading the client while this much waits to be written to it.
const HIGH_WATER: usize = 256 * 1024;
/// Frames or stream polls a connection handles before it lets other tasks run.
const BUDGET: usize = 256;
/// Streams rouse reset that are remembered, to ignore what the client still sends on them.
const RECENTLY_RESET: usize = 128;
/// CONTINUATION frames one header block may take (a block within `max_block` needs far
/// fewer; an endless run of empty ones is the CONTINUATION flood).
const MAX_CONTINUATIONS: u32 = 128;
/// Streams that may end in a reset (the client's, before their answer; or rouse's, for a
/// malformed request) beyond those answered: each answer earns one back. More is the "rapid
/// reset" attack (CVE-2023-44487), where each cheap RST_STREAM costs the server a request.
const RESET_ALLOWANCE: u32 = 1024;
/// ENHANCE_YOUR_CALM.
const CALM: Reason = Reason(0xb);

type Handling = Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>;

/// Why a connection ended other than by the client closing it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the client broke the protocol ({0}): {1}")]
    Protocol(Reason, &'static str),
    #[error("no answer to a keep-alive ping")]
    KeepAlive,
}

/// A connection error: GOAWAY with this reason, then close.
struct ConnError(Reason, &'static str);

/// Stream ids hashed by one multiplication (client ids are odd and in order).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u32 ids are hashed")
    }
    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Map = HashMap<u32, Stream, BuildHasherDefault<IdHasher>>;

struct Stream {
    /// The request's handler, until it answers.
    handling: Option<Handling>,
    /// The answer's body, while it is being sent.
    body: Option<Pin<Box<ProxyBody>>>,
    /// A chunk of it waiting for flow-control window, and whether it is the last.
    waiting: Option<(Bytes, bool)>,
    send_window: i64,
    /// The request body's way to its reader, while the client may still send it.
    recv: Option<Arc<Recv>>,
    recv_window: RecvWindow,
    /// What Content-Length announced, and what came.
    content_length: Option<u64>,
    received: u64,
    remote_closed: bool,
    waker: Waker,
    wake: Arc<StreamWaker>,
    /// Counts the stream as an open request of the connection.
    _open: Open,
}

enum Phase {
    /// Waiting for the 24 bytes of the client's preface.
    Preface,
    /// The preface came: the next frame must be SETTINGS.
    Settings,
    Open,
}

/// A header block still coming in CONTINUATION frames.
struct Block {
    stream: u32,
    flags: u8,
    data: BytesMut,
    /// The stream is refused once its block is decoded (a priority on itself).
    refuse: Option<Reason>,
    continuations: u32,
}

pub(crate) struct Connection<IO> {
    io: IO,
    rbuf: BytesMut,
    out: Out,
    phase: Phase,
    decoder: Decoder,
    streams: Map,
    /// The highest stream id the client opened.
    last_id: u32,
    conn_send: i64,
    conn_recv: RecvWindow,
    /// The client's settings that rouse's sending obeys.
    peer_window: i64,
    peer_max_frame: usize,
    block: Option<Block>,
    /// GOAWAY went out (graceful shutdown) with this last stream id: later ones are refused.
    goaway: Option<u32>,
    /// The client sent GOAWAY: no more streams will come.
    peer_goaway: bool,
    /// A connection error: flush the GOAWAY, then end with it.
    failed: Option<Error>,
    /// Finish was asked before the preface came.
    finish_asked: bool,
    /// Streams to poll again once the connection's window opens.
    blocked: Vec<u32>,
    /// Streams put off while too much waited to be written.
    deferred: Vec<u32>,
    recently_reset: VecDeque<u32>,
    /// See [`RESET_ALLOWANCE`].
    resets_left: u32,
    events: Events,
    shared: Arc<Shared>,
    ctx: Arc<Streams>,
    config: Config,
    scratch: BytesMut,
    keep_alive: KeepAlive,
}

impl<IO> Connection<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    pub fn new(io: IO, config: Config, ctx: Streams) -> Connection<IO> {
        let mut out = Out::default();
        frame::settings(
            &[
                (frame::ENABLE_PUSH, 0),
                (frame::MAX_CONCURRENT_STREAMS, config.max_streams as u32),
                (frame::INITIAL_WINDOW_SIZE, config.window),
                (frame::MAX_FRAME_SIZE, frame::MIN_MAX_FRAME),
                (frame::MAX_HEADER_LIST_SIZE, config.max_header_list as u32),
            ],
            out.buf(),
        );
        frame::window_update(0, config.window - frame::DEFAULT_WINDOW as u32, out.buf());
        Connection {
            io,
            rbuf: BytesMut::new(),
            out,
            phase: Phase::Preface,
            decoder: Decoder::default(),
            streams: Map::default(),
            last_id: 0,
            conn_send: frame::DEFAULT_WINDOW,
            conn_recv: RecvWindow::new(config.window),
            peer_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::MIN_MAX_FRAME as usize,
            block: None,
            goaway: None,
            peer_goaway: false,
            failed: None,
            finish_asked: false,
            blocked: Vec::new(),
            deferred: Vec::new(),
            recently_reset: VecDeque::new(),
            resets_left: RESET_ALLOWANCE,
            events: Events::default(),
            shared: Arc::new(Shared::default()),
            ctx: Arc::new(ctx),
            config,
            scratch: BytesMut::new(),
            keep_alive: KeepAlive::new(),
        }
    }

    /// GOAWAY: the streams the client opened so far are served, no more are taken, and the
    /// connection ends when they are done.
    pub fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.get_mut();
        if this.goaway.is_some() || this.failed.is_some() {
            return;
        }
        if let Phase::Preface = this.phase {
            this.finish_asked = true;
            return;
        }
        frame::goaway(this.last_id, Reason::NO_ERROR, this.out.buf());
        this.goaway = Some(this.last_id);
    }

    /// Ends the connection with GOAWAY for a connection error.
    fn fail(&mut self, e: ConnError) {
        if self.failed.is_none() {
            tracing::debug!(client = %self.ctx.peer, reason = %e.0, "h2 connection error: {}", e.1);
            frame::goaway(self.last_id, e.0, self.out.buf());
            self.failed = Some(Error::Protocol(e.0, e.1));
        }
    }

    /// Reads and handles frames until the socket would block (or the budget runs out).
    fn read(&mut self, cx: &mut Context<'_>, budget: &mut usize) -> Result<bool, Error> {
        let mut progress = false;
        loop {
            if let Err(e) = self.frames(budget) {
                self.fail(e);
                return Ok(true);
            }
            if *budget == 0 || self.out.len() >= HIGH_WATER || self.failed.is_some() {
                return Ok(progress);
            }
            if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                self.rbuf.reserve(16 * 1024 + frame::HEAD_LEN);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
                Poll::Pending => return Ok(progress),
                Poll::Ready(Ok(0)) => return Err(Error::Io(io::ErrorKind::UnexpectedEof.into())),
                Poll::Ready(Ok(_)) => progress = true,
                Poll::Ready(Err(e)) => return Err(Error::Io(e)),
            }
        }
    }

    /// Handles the whole frames in the read buffer.
    fn frames(&mut self, budget: &mut usize) -> Result<(), ConnError> {
        loop {
            match self.phase {
                Phase::Preface => {
                    let n = self.rbuf.len().min(frame::PREFACE.len());
                    if self.rbuf[..n] != frame::PREFACE[..n] {
                        return Err(ConnError(Reason::PROTOCOL_ERROR, "not the h2 preface"));
                    }
                    if n < frame::PREFACE.len() {
                        return Ok(());
                    }
                    self.rbuf.advance(n);
                    self.phase = Phase::Settings;
                }
                Phase::Settings | Phase::Open => {}
            }
            if self.rbuf.len() < frame::HEAD_LEN || *budget == 0 || self.out.len() >= HIGH_WATER {
                return Ok(());
            }
            let head = Head::parse(self.rbuf[..frame::HEAD_LEN].try_into().unwrap_or(&[0; 9]));
            if head.len > frame::MIN_MAX_FRAME as usize {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "a frame past 16 KiB"));
            }
            if self.rbuf.len() < frame::HEAD_LEN + head.len {
                self.rbuf
                    .reserve(frame::HEAD_LEN + head.len - self.rbuf.len());
                return Ok(());
            }
            self.rbuf.advance(frame::HEAD_LEN);
            let payload = self.rbuf.split_to(head.len).freeze();
            *budget -= 1;
            if let Phase::Settings = self.phase {
                if head.kind != frame::SETTINGS || head.flags & frame::ACK != 0 {
                    return Err(ConnError(
                        Reason::PROTOCOL_ERROR,
                        "the first frame is not SETTINGS",
                    ));
                }
                self.phase = Phase::Open;
                if self.finish_asked {
                    frame::goaway(0, Reason::NO_ERROR, self.out.buf());
                    self.goaway = Some(0);
                }
            }
            self.frame(head, payload)?;
        }
    }

    fn frame(&mut self, head: Head, payload: Bytes) -> Result<(), ConnError> {
        if let Some(block) = &self.block
            && (head.kind != frame::CONTINUATION || head.stream != block.stream)
        {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "a header block cut by another frame",
            ));
        }
        match head.kind {
            frame::DATA => self.data(head, payload),
            frame::HEADERS => self.headers(head, payload),
            frame::PRIORITY => {
                if head.stream == 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PRIORITY on stream 0"));
                }
                if payload.len() != 5 {
                    self.reset(head.stream, Reason::FRAME_SIZE_ERROR);
                } else if dependency(&payload) == head.stream {
                    self.reset(head.stream, Reason::PROTOCOL_ERROR);
                }
                Ok(())
            }
            frame::RST_STREAM => {
                if head.stream == 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "RST_STREAM on stream 0"));
                }
                if payload.len() != 4 {
                    return Err(ConnError(
                        Reason::FRAME_SIZE_ERROR,
                        "RST_STREAM not 4 bytes",
                    ));
                }
                if head.stream > self.last_id {
                    return Err(ConnError(
                        Reason::PROTOCOL_ERROR,
                        "RST_STREAM on an idle stream",
                    ));
                }
                let reason = Reason(u32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]));
                if let Some(s) = self.streams.remove(&head.stream) {
                    tracing::debug!(client = %self.ctx.peer, stream = head.stream, %reason, "the client reset a stream");
                    if let Some(recv) = &s.recv {
                        recv.reset(reason);
                    }
                    if s.handling.is_some() {
                        self.count_reset()?;
                    }
                }
                Ok(())
            }
            frame::SETTINGS => self.settings(head, &payload),
            frame::PUSH_PROMISE => Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "PUSH_PROMISE from a client",
            )),
            frame::PING => {
                if head.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PING on a stream"));
                }
                if payload.len() != 8 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "PING not 8 bytes"));
                }
                if head.flags & frame::ACK != 0 {
                    self.keep_alive.pong(&payload);
                } else {
                    frame::ping(frame::ACK, &payload, self.out.buf());
                }
                Ok(())
            }
            frame::GOAWAY => {
                if head.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "GOAWAY on a stream"));
                }
                if payload.len() < 8 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "GOAWAY under 8 bytes"));
                }
                self.peer_goaway = true;
                Ok(())
            }
            frame::WINDOW_UPDATE => self.window_update(head, &payload),
            frame::CONTINUATION => {
                let Some(block) = &mut self.block else {
                    return Err(ConnError(
                        Reason::PROTOCOL_ERROR,
                        "CONTINUATION without HEADERS",
                    ));
                };
                block.data.extend_from_slice(&payload);
                block.continuations += 1;
                if block.data.len() > self.config.max_block
                    || block.continuations > MAX_CONTINUATIONS
                {
                    return Err(ConnError(CALM, "a header block past any limit"));
                }
                if head.flags & frame::END_HEADERS != 0
                    && let Some(block) = self.block.take()
                {
                    return self.block_done(
                        block.stream,
                        block.flags,
                        block.data.freeze(),
                        block.refuse,
                    );
                }
                Ok(())
            }
            // Unknown frame types are ignored (§4.1).
            _ => Ok(()),
        }
    }

    fn settings(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if head.stream != 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "SETTINGS on a stream"));
        }
        if head.flags & frame::ACK != 0 {
            if !payload.is_empty() {
                return Err(ConnError(
                    Reason::FRAME_SIZE_ERROR,
                    "a SETTINGS ACK with a payload",
                ));
            }
            return Ok(());
        }
        if !payload.len().is_multiple_of(6) {
            return Err(ConnError(
                Reason::FRAME_SIZE_ERROR,
                "SETTINGS not a multiple of 6 bytes",
            ));
        }
        for s in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                frame::ENABLE_PUSH if value > 1 => {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "ENABLE_PUSH past 1"));
                }
                frame::INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return Err(ConnError(
                            Reason::FLOW_CONTROL_ERROR,
                            "INITIAL_WINDOW_SIZE past 2^31-1",
                        ));
                    }
                    let delta = value - self.peer_window;
                    self.peer_window = value;
                    for (id, s) in &mut self.streams {
                        s.send_window += delta;
                        if s.send_window > frame::MAX_WINDOW {
                            return Err(ConnError(
                                Reason::FLOW_CONTROL_ERROR,
                                "a stream window past 2^31-1",
                            ));
                        }
                        if delta > 0 && s.waiting.is_some() {
                            self.deferred.push(*id);
                        }
                    }
                }
                frame::MAX_FRAME_SIZE => {
                    if !(frame::MIN_MAX_FRAME..=frame::MAX_MAX_FRAME).contains(&value) {
                        return Err(ConnError(
                            Reason::PROTOCOL_ERROR,
                            "MAX_FRAME_SIZE out of range",
                        ));
                    }
                    self.peer_max_frame = value as usize;
                }
                // rouse's encoder keeps no table, and it opens no streams: the other settings
                // do not bind it.
                _ => {}
            }
        }
        frame::Head {
            len: 0,
            kind: frame::SETTINGS,
            flags: frame::ACK,
            stream: 0,
        }
        .write(self.out.buf());
        Ok(())
    }

    fn window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if payload.len() != 4 {
            return Err(ConnError(
                Reason::FRAME_SIZE_ERROR,
                "WINDOW_UPDATE not 4 bytes",
            ));
        }
        let inc = i64::from(
            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff,
        );
        if head.stream == 0 {
            if inc == 0 {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "a WINDOW_UPDATE of 0"));
            }
            self.conn_send += inc;
            if self.conn_send > frame::MAX_WINDOW {
                return Err(ConnError(
                    Reason::FLOW_CONTROL_ERROR,
                    "the connection window past 2^31-1",
                ));
            }
            self.deferred.append(&mut self.blocked);
            return Ok(());
        }
        if head.stream > self.last_id {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "WINDOW_UPDATE on an idle stream",
            ));
        }
        let Some(s) = self.streams.get_mut(&head.stream) else {
            return Ok(());
        };
        s.send_window += inc;
        let waiting = s.waiting.is_some();
        if inc == 0 {
            self.reset(head.stream, Reason::PROTOCOL_ERROR);
        } else if s.send_window > frame::MAX_WINDOW {
            self.reset(head.stream, Reason::FLOW_CONTROL_ERROR);
        } else if waiting {
            self.deferred.push(head.stream);
        }
        Ok(())
    }

    fn data(&mut self, head: Head, payload: Bytes) -> Result<(), ConnError> {
        if head.stream == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        if head.stream > self.last_id {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA on an idle stream"));
        }
        let len = payload.len();
        let data = unpad(head, payload)?;
        if !self.conn_recv.receive(len) {
            return Err(ConnError(
                Reason::FLOW_CONTROL_ERROR,
                "DATA past the connection window",
            ));
        }
        let end = head.flags & frame::END_STREAM != 0;
        let id = head.stream;
        let checked = match self.streams.get_mut(&id) {
            // A stream rouse reset: what was in flight is dropped.
            None if self.recently_reset.contains(&id) => Err(None),
            None => Err(Some(Reason::STREAM_CLOSED)),
            Some(s) => match s.recv.clone().filter(|_| !s.remote_closed) {
                None => Err(Some(Reason::STREAM_CLOSED)),
                Some(recv) => {
                    s.received += data.len() as u64;
                    if !s.recv_window.receive(len) {
                        Err(Some(Reason::FLOW_CONTROL_ERROR))
                    } else if s
                        .content_length
                        .is_some_and(|cl| s.received > cl || (end && s.received != cl))
                    {
                        Err(Some(Reason::PROTOCOL_ERROR))
                    } else {
                        Ok(recv)
                    }
                }
            },
        };
        let recv = match checked {
            Ok(recv) => recv,
            Err(reason) => {
                // The window goes back to the client whatever becomes of the data.
                self.release(id, len);
                if let Some(reason) = reason {
                    self.reset(id, reason);
                }
                return Ok(());
            }
        };
        let (read, padding) = (data.len(), len - data.len());
        if read > 0 && !recv.push(data) {
            // The reader is gone: give the window back now.
            self.release(head.stream, read);
        }
        if padding > 0 {
            self.release(head.stream, padding);
        }
        if end {
            self.remote_end(head.stream, None);
        }
        Ok(())
    }

    fn headers(&mut self, head: Head, payload: Bytes) -> Result<(), ConnError> {
        if head.stream == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "HEADERS on stream 0"));
        }
        let mut fragment = unpad(head, payload)?;
        let mut refuse = None;
        if head.flags & frame::PRIORITY_FLAG != 0 {
            if fragment.len() < 5 {
                return Err(ConnError(
                    Reason::PROTOCOL_ERROR,
                    "HEADERS too short for its priority",
                ));
            }
            if dependency(&fragment) == head.stream {
                refuse = Some(Reason::PROTOCOL_ERROR);
            }
            fragment.advance(5);
        }
        if head.flags & frame::END_HEADERS == 0 {
            if fragment.len() > self.config.max_block {
                return Err(ConnError(CALM, "a header block past any limit"));
            }
            self.block = Some(Block {
                stream: head.stream,
                flags: head.flags,
                data: BytesMut::from(&fragment[..]),
                refuse,
                continuations: 0,
            });
            return Ok(());
        }
        self.block_done(head.stream, head.flags, fragment, refuse)
    }

    /// A whole header block: a new request, or a request's trailers.
    fn block_done(
        &mut self,
        id: u32,
        flags: u8,
        block: Bytes,
        refuse: Option<Reason>,
    ) -> Result<(), ConnError> {
        let end = flags & frame::END_STREAM != 0;
        if id.is_multiple_of(2) {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "a client stream with an even id",
            ));
        }
        if id <= self.last_id {
            return self.trailers(id, end, &block);
        }
        self.last_id = id;
        let mut req = RequestHead::default();
        let limit = self.config.max_header_list;
        self.decoder
            .decode(&block, |name, value| {
                // Past the limit, the rest is decoded (the tables must stay in step) but
                // not kept: the request is answered 431.
                if req.list_size <= limit {
                    req.field(name, value);
                } else {
                    req.list_size += name.len() + value.len() + 32;
                }
            })
            .map_err(|_| {
                ConnError(
                    Reason::COMPRESSION_ERROR,
                    "a header block that does not decode",
                )
            })?;
        if let Some(reason) = refuse {
            self.reset(id, reason);
            return self.count_reset();
        }
        if self.goaway.is_some_and(|last| id > last)
            || self.streams.len() >= self.config.max_streams
        {
            self.reset(id, Reason::REFUSED_STREAM);
            return Ok(());
        }
        let too_large = req.list_size > limit;
        let req = match req.request() {
            Ok(req) => req,
            Err(e) if !too_large => {
                tracing::debug!(client = %self.ctx.peer, stream = id, "{e}");
                self.reset(id, Reason::PROTOCOL_ERROR);
                return self.count_reset();
            }
            Err(_) => http::Request::new(()),
        };
        let content_length = match request::content_length(req.headers()) {
            Ok(cl) => cl,
            Err(e) => {
                tracing::debug!(client = %self.ctx.peer, stream = id, "{e}");
                self.reset(id, Reason::PROTOCOL_ERROR);
                return self.count_reset();
            }
        };
        if end && content_length.is_some_and(|cl| cl != 0) {
            self.reset(id, Reason::PROTOCOL_ERROR);
            return self.count_reset();
        }
        let continue_wanted = req
            .headers()
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let recv = (!end).then(|| {
            Arc::new(if continue_wanted {
                Recv::waiting_for_continue()
            } else {
                Recv::default()
            })
        });
        let body = H2Body::new(id, recv.clone(), Arc::clone(&self.shared), content_length);
        let (mut parts, ()) = req.into_parts();
        let handling: Handling = if too_large {
            drop(body);
            let limit = self.config.max_header_list;
            // Logged as rouse's other answers before routing are (with what of the head
            // was kept: its pseudo-fields come first).
            let req = http::Request::from_parts(parts, http_body_util::Empty::<Bytes>::new());
            let ctx = Arc::clone(&self.ctx);
            Box::pin(async move {
                let answer = crate::answer::error(
                    http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "header-too-large",
                    format!("the request head is past {limit} bytes as HTTP/2 counts it"),
                );
                ctx.proxy.unrouted(&req, ctx.peer, Instant::now(), answer)
            })
        } else {
            if self.ctx.https {
                parts.extensions.insert(Https);
            }
            let req = http::Request::from_parts(parts, ClientBody::H2(body));
            let ctx = Arc::clone(&self.ctx);
            Box::pin(async move { ctx.proxy.handle(req, ctx.peer).await })
        };
        let wake = StreamWaker::new(id, &self.shared);
        let stream = Stream {
            handling: Some(handling),
            body: None,
            waiting: None,
            send_window: self.peer_window,
            recv,
            recv_window: RecvWindow::new(self.config.window),
            content_length,
            received: 0,
            remote_closed: end,
            waker: Waker::from(Arc::clone(&wake)),
            wake,
            _open: self.ctx.activity.open(),
        };
        self.streams.insert(id, stream);
        self.deferred.push(id);
        Ok(())
    }

    fn trailers(&mut self, id: u32, end: bool, block: &Bytes) -> Result<(), ConnError> {
        let mut trailers = HeaderMap::new();
        let mut bad = false;
        self.decoder
            .decode(block, |name, value| match request::regular(name, value) {
                Ok((n, v)) => {
                    trailers.append(n, v);
                }
                Err(_) => bad = true,
            })
            .map_err(|_| {
                ConnError(
                    Reason::COMPRESSION_ERROR,
                    "a header block that does not decode",
                )
            })?;
        let Some(s) = self.streams.get(&id) else {
            if self.recently_reset.contains(&id) {
                return Ok(());
            }
            return Err(ConnError(
                Reason::STREAM_CLOSED,
                "HEADERS on a closed stream",
            ));
        };
        if s.remote_closed {
            self.reset(id, Reason::STREAM_CLOSED);
        } else if !end || bad || s.content_length.is_some_and(|cl| cl != s.received) {
            self.reset(id, Reason::PROTOCOL_ERROR);
        } else {
            self.remote_end(id, Some(trailers));
        }
        Ok(())
    }

    /// The client's side of a stream ended.
    fn remote_end(&mut self, id: u32, trailers: Option<HeaderMap>) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.remote_closed = true;
            if let Some(recv) = &s.recv {
                recv.end(trailers);
            }
        }
    }

    /// Gives `bytes` of window back to the client, for the connection and the stream.
    fn release(&mut self, id: u32, bytes: usize) {
        if let Some(inc) = self.conn_recv.release(bytes) {
            frame::window_update(0, inc, self.out.buf());
        }
        if let Some(s) = self.streams.get_mut(&id)
            && !s.remote_closed
            && let Some(inc) = s.recv_window.release(bytes)
        {
            frame::window_update(id, inc, self.out.buf());
        }
    }

    /// One more stream ended in a reset before its answer.
    fn count_reset(&mut self) -> Result<(), ConnError> {
        match self.resets_left.checked_sub(1) {
            Some(left) => {
                self.resets_left = left;
                Ok(())
            }
            None => Err(ConnError(
                CALM,
                "too many streams reset before their answer",
            )),
        }
    }

    /// A stream error: RST_STREAM, and the stream forgotten (its request future dropped).
    fn reset(&mut self, id: u32, reason: Reason) {
        frame::rst_stream(id, reason, self.out.buf());
        self.note_reset(id);
        if let Some(s) = self.streams.remove(&id)
            && let Some(recv) = &s.recv
        {
            recv.reset(reason);
        }
    }

    /// Polls stream `id`: its request future until it answers, then its body as the windows
    /// allow.
    fn poll_stream(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.wake.polling();
        let waker = s.waker.clone();
        let mut cx = Context::from_waker(&waker);
        if let Some(handling) = &mut s.handling {
            let polled =
                std::panic::catch_unwind(AssertUnwindSafe(|| handling.as_mut().poll(&mut cx)));
            match polled {
                Ok(Poll::Pending) => return,
                Ok(Poll::Ready(resp)) => {
                    s.handling = None;
                    if !self.answer(id, resp) {
                        return;
                    }
                }
                Err(_) => {
                    tracing::error!(client = %self.ctx.peer, stream = id, "a request's handler panicked");
                    self.reset(id, Reason::INTERNAL_ERROR);
                    return;
                }
            }
        }
        self.pump(id, &mut cx);
    }

    /// Writes the answer's head; false when the answer is whole with it.
    fn answer(&mut self, id: u32, resp: Response<ProxyBody>) -> bool {
        let (mut parts, body) = resp.into_parts();
        // HTTP/2 forbids connection-specific fields; a server's answer has had them removed
        // already, rouse's own never have them.
        headers::strip_hop_by_hop(&mut parts.headers, false);
        if !parts.headers.contains_key(DATE) {
            parts.headers.insert(DATE, crate::h1::date::value());
        }
        let end = body.is_end_stream();
        if !end
            && let Some(len) = body.size_hint().exact()
            && !parts.headers.contains_key(CONTENT_LENGTH)
        {
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        self.write_fields(id, Some(parts.status.as_u16()), &parts.headers, end);
        if end {
            self.local_end(id);
            return false;
        }
        if let Some(s) = self.streams.get_mut(&id) {
            s.body = Some(Box::pin(body));
        }
        true
    }

    /// Writes a header block: an answer's head (with its status) or its trailers.
    fn write_fields(&mut self, id: u32, status: Option<u16>, fields: &HeaderMap, end: bool) {
        let mut block = std::mem::take(&mut self.scratch);
        block.clear();
        if let Some(status) = status {
            hpack::encode_status(status, &mut block);
        }
        for (name, value) in fields {
            hpack::encode_field(name.as_str(), value.as_bytes(), &mut block);
        }
        self.out.block(id, &block, end, self.peer_max_frame);
        self.scratch = block;
    }

    /// Sends what the answer's body has, as far as the windows allow.
    fn pump(&mut self, id: u32, cx: &mut Context<'_>) {
        loop {
            let Some(s) = self.streams.get_mut(&id) else {
                return;
            };
            if let Some((mut chunk, last)) = s.waiting.take() {
                let room = s
                    .send_window
                    .min(self.conn_send)
                    .min(self.peer_max_frame as i64);
                if room <= 0 {
                    s.waiting = Some((chunk, last));
                    if self.conn_send <= 0 {
                        self.blocked.push(id);
                    }
                    return;
                }
                let n = chunk.len().min(room as usize);
                let part = chunk.split_to(n);
                s.send_window -= n as i64;
                self.conn_send -= n as i64;
                let end = last && chunk.is_empty();
                self.out.data(id, part, end);
                if end {
                    self.local_end(id);
                    return;
                }
                if !chunk.is_empty() {
                    s.waiting = Some((chunk, last));
                }
                continue;
            }
            if self.out.len() >= HIGH_WATER {
                self.deferred.push(id);
                return;
            }
            let Some(body) = &mut s.body else { return };
            let polled = body.as_mut().poll_frame(cx);
            match polled {
                Poll::Pending => return,
                Poll::Ready(None) => {
                    self.out.data(id, Bytes::new(), true);
                    self.local_end(id);
                    return;
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(error = %e, client = %self.ctx.peer, "an answer's body ended early");
                    self.reset(id, Reason::INTERNAL_ERROR);
                    return;
                }
                Poll::Ready(Some(Ok(f))) => match f.into_data() {
                    Ok(data) => {
                        let last = body.is_end_stream();
                        if data.is_empty() {
                            if last {
                                self.out.data(id, data, true);
                                self.local_end(id);
                                return;
                            }
                        } else {
                            s.waiting = Some((data, last));
                        }
                    }
                    Err(f) => {
                        if let Ok(trailers) = f.into_trailers() {
                            self.write_fields(id, None, &trailers, true);
                            self.local_end(id);
                            return;
                        }
                    }
                },
            }
        }
    }

    /// rouse's side of a stream ended: the stream is done, and if the client is still
    /// sending its body, it is told to stop (RST_STREAM NO_ERROR, §8.1).
    fn local_end(&mut self, id: u32) {
        self.resets_left = (self.resets_left + 1).min(RESET_ALLOWANCE);
        match self.streams.get(&id) {
            Some(s) if !s.remote_closed => self.reset(id, Reason::NO_ERROR),
            _ => {
                self.streams.remove(&id);
            }
        }
    }

    /// Remembers a stream rouse reset: frames the client sent before it knew are ignored.
    fn note_reset(&mut self, id: u32) {
        if self.recently_reset.len() == RECENTLY_RESET {
            self.recently_reset.pop_front();
        }
        self.recently_reset.push_back(id);
    }

    /// Handles what the streams' wakers and the body readers reported.
    fn events(&mut self, budget: &mut usize) -> bool {
        let mut events = std::mem::take(&mut self.events);
        self.shared.take(&mut events);
        let mut progress = false;
        for (id, bytes) in events.released.drain(..) {
            self.release(id, bytes);
            progress = true;
        }
        for id in events.continues.drain(..) {
            // Only ahead of the answer, and while the client may still send the body.
            if self
                .streams
                .get(&id)
                .is_some_and(|s| s.handling.is_some() && !s.remote_closed)
            {
                self.write_fields(id, Some(100), &HeaderMap::new(), false);
                progress = true;
            }
        }
        for id in events.ready.drain(..) {
            self.poll_stream(id);
            *budget = budget.saturating_sub(1);
            progress = true;
        }
        // Streams put off (or new) are polled once there is room to write again; those put
        // off again meanwhile wait for the next turn.
        if !self.deferred.is_empty() && self.out.len() < HIGH_WATER {
            let mut deferred = std::mem::take(&mut self.deferred);
            for id in deferred.drain(..) {
                self.poll_stream(id);
                *budget = budget.saturating_sub(1);
            }
            if self.deferred.is_empty() {
                self.deferred = deferred;
            }
            progress = true;
        }
        self.events = events;
        progress
    }

    /// Gives back the buffers of a connection with no stream open, as nginx frees its
    /// buffers between keep-alive requests: an idle client costs little more than its socket.
    fn trim(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            self.rbuf = BytesMut::new();
        }
        if self.out.is_empty() {
            self.out = Out::default();
        }
        self.scratch = BytesMut::new();
    }

    /// Whether the connection has nothing left to do.
    fn done(&self) -> bool {
        (self.goaway.is_some() || self.peer_goaway)
            && self.streams.is_empty()
            && self.out.is_empty()
    }
}

/// The stream a PRIORITY field depends on.
fn dependency(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff
}

/// A DATA or HEADERS payload without its padding.
fn unpad(head: Head, mut payload: Bytes) -> Result<Bytes, ConnError> {
    if head.flags & frame::PADDED == 0 {
        return Ok(payload);
    }
    let Some(&pad) = payload.first() else {
        return Err(ConnError(
            Reason::PROTOCOL_ERROR,
            "a padded frame without its pad length",
        ));
    };
    let pad = usize::from(pad);
    if pad >= payload.len() {
        return Err(ConnError(
            Reason::PROTOCOL_ERROR,
            "padding as long as the frame",
        ));
    }
    payload.advance(1);
    payload.truncate(payload.len() - pad);
    Ok(payload)
}

impl<IO> Future for Connection<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.shared.register(cx.waker());
        let mut budget = BUDGET;
        loop {
            let mut progress = false;
            if this.failed.is_none() {
                match this.read(cx, &mut budget) {
                    Ok(p) => progress |= p,
                    // The client closed or broke the connection: nothing can reach it.
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            if this.failed.is_none() {
                progress |= this.events(&mut budget);
                if this.keep_alive.poll_dead(cx, this.out.buf()) {
                    return Poll::Ready(Err(Error::KeepAlive));
                }
            }
            let before = this.out.len();
            match this.out.poll_flush(&mut this.io, cx) {
                Poll::Ready(Ok(())) => progress |= before > 0,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                Poll::Pending => progress |= this.out.len() < before,
            }
            if this.out.is_empty() {
                if let Some(e) = this.failed.take() {
                    return Poll::Ready(Err(e));
                }
                if this.done() {
                    return Poll::Ready(Ok(()));
                }
            }
            if !progress {
                if this.streams.is_empty() {
                    this.trim();
                }
                return Poll::Pending;
            }
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}

/// PINGs that find a dead client (as hyper's server did with `keep_alive_interval`): one
/// every [`super::KEEP_ALIVE`], and when the last is still unanswered at the next, the
/// client is gone.
struct KeepAlive {
    timer: Pin<Box<Sleep>>,
    waiting: bool,
}

const PING_PAYLOAD: [u8; 8] = *b"rouse-ka";

impl KeepAlive {
    fn new() -> KeepAlive {
        KeepAlive {
            timer: Box::pin(tokio::time::sleep(super::KEEP_ALIVE)),
            waiting: false,
        }
    }

    fn pong(&mut self, payload: &[u8]) {
        if payload == PING_PAYLOAD {
            self.waiting = false;
        }
    }

    /// True when the client did not answer in time.
    fn poll_dead(&mut self, cx: &mut Context<'_>, out: &mut BytesMut) -> bool {
        while self.timer.as_mut().poll(cx).is_ready() {
            if self.waiting {
                return true;
            }
            frame::ping(0, &PING_PAYLOAD, out);
            self.waiting = true;
            self.timer
                .as_mut()
                .reset(Instant::now() + super::KEEP_ALIVE);
        }
        false
    }
}
