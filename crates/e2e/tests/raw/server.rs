//! A scripted HTTP/1.1 server for conformance tests: rouse connects to it as to any static
//! server; the test reads what rouse forwarded, exactly as it came, and answers with whatever
//! bytes the case needs, including those no server library would send. Every wait is bounded.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout_at};

use super::Raw;

/// A listener on 127.0.0.1:0 whose connections the test takes one by one.
pub struct RawServer {
    listener: TcpListener,
    deadline: Instant,
}

/// A request as rouse forwarded it.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The head's bytes as they came, request line to the empty line.
    pub raw_head: Vec<u8>,
    pub method: String,
    pub target: String,
    /// Names lower-cased, in order, repeats kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

impl Forwarded {
    /// The values of `name`, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.values(name).first().copied()
    }
}

impl RawServer {
    /// Every later wait on it (accepts, reads) must end within `within` of now.
    pub async fn bind(within: Duration) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
        RawServer {
            listener,
            deadline: Instant::now() + within,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|e| panic!("a bound listener has an address: {e}"))
    }

    /// The next connection rouse opens; panics past the deadline.
    pub async fn accept(&self) -> Upstream {
        let (stream, _) = timeout_at(self.deadline, self.listener.accept())
            .await
            .unwrap_or_else(|_| panic!("rouse opened no connection to the server in time"))
            .unwrap_or_else(|e| panic!("accept failed: {e}"));
        Upstream(Raw {
            stream,
            buf: Vec::new(),
            deadline: self.deadline,
        })
    }

    /// The next connection rouse opens that carries a request, and that request: a
    /// connection closed before its first byte (a readiness probe) is passed over.
    pub async fn accept_request(&self) -> (Upstream, Forwarded) {
        loop {
            let mut up = self.accept().await;
            if let Some(req) = up.request().await {
                return (up, req);
            }
        }
    }

    /// The next request rouse sends, on the kept-alive connection `up` or on a new one (then in
    /// `up`): either is right, as long as nothing of an earlier exchange is left on the old one.
    pub async fn next_request(&self, up: &mut Option<Upstream>) -> Forwarded {
        let Some(old) = up.as_mut() else {
            let (new, req) = self.accept_request().await;
            *up = Some(new);
            return req;
        };
        // A close of the old one (`None`) disables its branch: the request must then come on a
        // new connection.
        let (new, req) = tokio::select! {
            accepted = self.accept_request() => accepted,
            Some(req) = old.request() => return req,
        };
        *up = Some(new);
        req
    }
}

/// One connection from rouse, seen from the server's side.
pub struct Upstream(Raw);

impl Upstream {
    /// The next request, body and trailers included; `None` when rouse closes the connection
    /// before sending one. Panics on bytes that are no HTTP/1.1 request, or past the deadline.
    pub async fn request(&mut self) -> Option<Forwarded> {
        let mut req = self.head().await?;
        let (body, trailers) = self.body_of(&req).await.unwrap_or_else(|e| panic!("{e}"));
        req.body = body;
        req.trailers = trailers;
        Some(req)
    }

    /// The body (and trailers) of the request whose head is `req`, as its head frames it:
    /// `Err` when the connection ends before the body does.
    pub async fn body_of(
        &mut self,
        req: &Forwarded,
    ) -> Result<(Vec<u8>, Vec<(String, String)>), String> {
        let te = req
            .values("transfer-encoding")
            .join(",")
            .to_ascii_lowercase();
        if te.trim_end().ends_with("chunked") {
            let (body, trailers) = self.0.chunked().await?;
            let trailers = trailers
                .into_iter()
                .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
                .collect();
            return Ok((body, trailers));
        }
        match req.header("content-length") {
            Some(len) => {
                let len: usize = len
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("rouse forwarded Content-Length {len:?}"));
                Ok((self.0.exactly(len).await?, Vec::new()))
            }
            None => Ok((Vec::new(), Vec::new())),
        }
    }

    /// The next request head, its body left unread; `None` when the connection ends first.
    pub async fn head(&mut self) -> Option<Forwarded> {
        loop {
            if let Some((req, len)) = self.parse() {
                self.0.buf.drain(..len);
                return Some(req);
            }
            match self.0.fill().await {
                Ok(0) if self.0.buf.is_empty() => return None,
                Ok(0) => panic!(
                    "rouse closed the connection inside a request head: {:?}",
                    String::from_utf8_lossy(&self.0.buf)
                ),
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn parse(&self) -> Option<(Forwarded, usize)> {
        let mut fields = [httparse::EMPTY_HEADER; 256];
        let mut req = httparse::Request::new(&mut fields);
        match req.parse(&self.0.buf) {
            Ok(httparse::Status::Complete(n)) => {
                let headers = req
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let forwarded = Forwarded {
                    raw_head: self.0.buf[..n].to_vec(),
                    method: req.method.unwrap_or_default().to_owned(),
                    target: req.path.unwrap_or_default().to_owned(),
                    headers,
                    body: Vec::new(),
                    trailers: Vec::new(),
                };
                Some((forwarded, n))
            }
            Ok(httparse::Status::Partial) => None,
            Err(e) => panic!(
                "rouse sent no HTTP request ({e}): {:?}",
                String::from_utf8_lossy(&self.0.buf[..self.0.buf.len().min(300)])
            ),
        }
    }

    /// Bytes read from rouse and not yet taken as a request.
    pub fn pending(&self) -> &[u8] {
        &self.0.buf
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.0.send(bytes).await;
    }

    /// Writes `bytes` one byte per write (see [`Raw::send_bytewise`]).
    pub async fn send_bytewise(&mut self, bytes: &[u8]) {
        self.0.send_bytewise(bytes).await;
    }

    /// Whether rouse closes the connection, sending nothing more, by the deadline.
    pub async fn closes(&mut self) -> bool {
        self.0.closes().await
    }

    /// Reads until rouse closes the connection or the deadline passes, and says which.
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>, String> {
        while self.0.fill().await? > 0 {}
        Ok(std::mem::take(&mut self.0.buf))
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.0.stream
    }
}
