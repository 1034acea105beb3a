//! A raw HTTP/1.1 client for conformance tests: bytes go out exactly as written (no client
//! library fixes them up), and answers are read back one by one, framed as RFC 9112 §6.3 says,
//! every read bounded.
#![allow(dead_code)]

pub mod server;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// One answer as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// A chunked body's trailer fields (lower-cased names).
    pub trailers: Vec<(String, Vec<u8>)>,
    /// The statuses of the interim (1xx) answers read before this one, in order.
    pub interim: Vec<u16>,
    /// The field names as they came, case kept, in order.
    pub names: Vec<String>,
}

impl RawResponse {
    /// The first value of `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the answer when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }

    /// Whether the test backend answered (rather than rouse, or hyper before rouse saw it).
    pub fn is_from_backend(&self) -> bool {
        self.header("x-backend-id").is_some()
    }
}

/// A response head: status, headers, and its length in bytes.
/// Status, fields (lower-cased names), length, names as sent.
type Head = (u16, Vec<(String, Vec<u8>)>, usize, Vec<String>);

/// A connection whose bytes the test writes by hand.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
}

impl Raw {
    /// Connects to `addr`; every later read must be done within `within` of now.
    pub async fn connect(addr: SocketAddr, within: Duration) -> Raw {
        let deadline = Instant::now() + within;
        let stream = timeout_at(deadline, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connecting to {addr} took over {within:?}"))
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        Raw {
            stream,
            buf: Vec::new(),
            deadline,
        }
    }

    /// Writes `bytes` as they are; a peer that already closed is not an error (what it
    /// answered, if anything, is still to be read).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = timeout_at(self.deadline, self.stream.write_all(bytes)).await;
    }

    /// Writes `bytes` one byte per write, with Nagle off so that each may go in a segment
    /// of its own: a reader must put a head together from many reads.
    pub async fn send_bytewise(&mut self, bytes: &[u8]) {
        let _ = self.stream.set_nodelay(true);
        for b in bytes {
            let _ = timeout_at(self.deadline, self.stream.write_all(&[*b])).await;
        }
    }

    /// Ends the writing side, as a client that sent all it had.
    pub async fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// The next answer to a request whose method was `method`: `Ok(None)` when the connection
    /// ends first, `Err` when it is not HTTP or the deadline passes.
    pub async fn response(&mut self, method: &str) -> Result<Option<RawResponse>, String> {
        let mut interim = Vec::new();
        loop {
            let Some((status, headers, head_len, names)) = self.head()? else {
                if self.fill().await? == 0 {
                    return if self.buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(format!(
                            "connection ended inside a response head: {:?}",
                            String::from_utf8_lossy(&self.buf)
                        ))
                    };
                }
                continue;
            };
            self.buf.drain(..head_len);
            // An interim answer (100 Continue) comes before the real one.
            if (100..200).contains(&status) && status != 101 {
                interim.push(status);
                continue;
            }
            let (body, trailers) = self.body(method, status, &headers).await?;
            return Ok(Some(RawResponse {
                status,
                headers,
                body,
                trailers,
                interim,
                names,
            }));
        }
    }

    /// The next answer, which must be interim (1xx), and its status; panics otherwise.
    pub async fn expect_interim(&mut self) -> u16 {
        loop {
            match self.head() {
                Ok(Some((status, _, head_len, _))) => {
                    assert!((100..200).contains(&status), "{status} where a 1xx was due");
                    self.buf.drain(..head_len);
                    return status;
                }
                Ok(None) => match self.fill().await {
                    Ok(0) => panic!("the connection closed without an interim answer"),
                    Ok(_) => {}
                    Err(e) => panic!("{e}"),
                },
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The next answer, which must come; panics otherwise.
    pub async fn expect_response(&mut self, method: &str) -> RawResponse {
        match self.response(method).await {
            Ok(Some(r)) => r,
            Ok(None) => panic!("the connection closed without an answer"),
            Err(e) => panic!("{e}"),
        }
    }

    /// Whether the peer closes the connection (rather than send anything more) by the deadline.
    pub async fn closes(&mut self) -> bool {
        self.buf.is_empty() && matches!(self.fill().await, Ok(0))
    }

    fn head(&self) -> Result<Option<Head>, String> {
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut fields);
        match resp.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = resp.code.unwrap_or(0);
                let headers = resp
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                    .collect();
                let names = resp.headers.iter().map(|h| h.name.to_owned()).collect();
                Ok(Some((status, headers, n, names)))
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(e) => Err(format!(
                "not an HTTP response ({e}): {:?}",
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
            )),
        }
    }

    async fn body(
        &mut self,
        method: &str,
        status: u16,
        headers: &[(String, Vec<u8>)],
    ) -> Result<(Vec<u8>, Vec<(String, Vec<u8>)>), String> {
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
        };
        if method == "HEAD" || status == 204 || status == 304 || status == 101 {
            return Ok((Vec::new(), Vec::new()));
        }
        if value("transfer-encoding").is_some_and(|te| te.ends_with("chunked")) {
            return self.chunked().await;
        }
        if let Some(len) = value("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| format!("bad content-length {len:?}"))?;
            return Ok((self.exactly(len).await?, Vec::new()));
        }
        // Delimited by the end of the connection.
        while self.fill().await? > 0 {}
        Ok((std::mem::take(&mut self.buf), Vec::new()))
    }

    /// A chunked body and its trailer fields.
    async fn chunked(&mut self) -> Result<(Vec<u8>, Vec<(String, Vec<u8>)>), String> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                let mut trailers = Vec::new();
                loop {
                    let line = self.line().await?;
                    if line.is_empty() {
                        return Ok((body, trailers));
                    }
                    let (name, value) = line
                        .split_once(':')
                        .ok_or_else(|| format!("bad trailer line {line:?}"))?;
                    trailers.push((name.to_ascii_lowercase(), value.trim().as_bytes().to_vec()));
                }
            }
            body.extend(self.exactly(size).await?);
            if !self.line().await?.is_empty() {
                return Err("chunk data not followed by CRLF".into());
            }
        }
    }

    async fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                return Ok(line);
            }
            if self.fill().await? == 0 {
                return Err("connection ended inside a chunked body".into());
            }
        }
    }

    async fn exactly(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(format!(
                    "connection ended after {} of {n} body bytes",
                    self.buf.len()
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads until the bytes come so far hold `needle` (kept for [`Raw::response`]); false
    /// when the connection ends or the deadline passes first.
    pub async fn has_read(&mut self, needle: &[u8]) -> bool {
        loop {
            if self.buf.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
            if !matches!(self.fill().await, Ok(n) if n > 0) {
                return false;
            }
        }
    }

    /// Reads what comes; 0 at the end of the connection (a reset counts as an end).
    async fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 16 * 1024];
        match timeout_at(self.deadline, self.stream.read(&mut chunk)).await {
            Err(_) => Err(format!(
                "no answer by the deadline; read so far: {:?}",
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
            )),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Ok(Err(_)) => Ok(0),
        }
    }
}

/// Sends `request` on a new connection and reads the one answer to it (`method` frames it).
pub async fn exchange(addr: SocketAddr, request: &[u8], method: &str) -> RawResponse {
    let mut c = Raw::connect(addr, Duration::from_secs(20)).await;
    c.send(request).await;
    c.expect_response(method).await
}
