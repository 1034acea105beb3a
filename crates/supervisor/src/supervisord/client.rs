//! The transport: XML-RPC calls to supervisord over HTTP/1.1, on TCP (plain or TLS) or a unix
//! socket.
//!
//! hyper's `client::conn::http1` on a `TcpStream`/`UnixStream` we open ourselves: no pool
//! library. supervisord itself serves plain http; `https://` urls are for a supervisord behind
//! a TLS-terminating proxy, verified against the web PKI roots or the `ca_file`. Connections are kept alive and reused
//! (supervisord's medusa server keeps HTTP/1.1 connections open); one that supervisord closed
//! meanwhile (a restart) is noticed on use and the call is retried on a fresh connection.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rouse_config::{SupervisordConfig, SupervisordUrl};
use rouse_tls::client::{Trust, client_config};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::xmlrpc::{self, Fault, Value};

/// The largest answer read (getAllProcessInfo is about 700 bytes per program).
const MAX_ANSWER: usize = 32 << 20;
/// Idle connections kept for reuse; more only exist while calls run in parallel.
const MAX_IDLE: usize = 4;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Nothing listens there (refused), no route, no such socket file, ...
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
    /// HTTP 401: the credentials are wrong or missing.
    #[error("{target} {hint}")]
    Unauthorized { target: String, hint: &'static str },
    /// Another HTTP status than 200 (400 is what supervisord answers on a wrong path).
    #[error("{target} answered HTTP {status} (supervisord's XML-RPC endpoint is /RPC2)")]
    Status { target: String, status: StatusCode },
    /// supervisord answered with a fault.
    #[error("{target} answered {fault}")]
    Fault { target: String, fault: Fault },
    /// An answer that is not XML-RPC we can read.
    #[error("malformed answer from {target}: {why}")]
    Malformed { target: String, why: String },
    /// No (complete) answer within the configured timeout.
    #[error("no answer from {target} within {after:?}")]
    Timeout { target: String, after: Duration },
    /// The connection broke during the call.
    #[error("connection to {target} failed: {why}")]
    Broken { target: String, why: String },
    /// The TLS handshake failed (certificate refused, ...), or no TLS configuration could be
    /// built (an unreadable `ca_file`).
    #[error("TLS with {target}: {why}")]
    Tls { target: String, why: String },
    /// The url cannot be used as an HTTP request target.
    #[error("{target}: bad url path {path:?}")]
    BadPath { target: String, path: String },
}

impl RpcError {
    /// The fault, if supervisord answered one.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            RpcError::Fault { fault, .. } => Some(fault),
            _ => None,
        }
    }

    /// supervisord could not be talked to at all (as opposed to answering something).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            RpcError::Connect { .. }
                | RpcError::Tls { .. }
                | RpcError::Unauthorized { .. }
                | RpcError::Timeout { .. }
                | RpcError::Broken { .. }
        )
    }
}

enum Endpoint {
    Tcp {
        host: String,
        port: u16,
        /// `https://`: the configuration to connect with (built once, with the driver), or
        /// why there is none.
        tls: Option<Result<Arc<rustls::ClientConfig>, String>>,
    },
    Unix(PathBuf),
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// Drives the connection; aborted (closing the socket) when the `Conn` is dropped, so a
    /// call abandoned on timeout leaves nothing behind.
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How one attempt on one connection failed.
enum Attempt {
    /// Before any answer arrived: on a reused connection, probably closed by the server since.
    NoAnswer(RpcError),
    Failed(RpcError),
}

pub struct Client {
    endpoint: Endpoint,
    uri: Result<Uri, String>,
    host: HeaderValue,
    auth: Option<HeaderValue>,
    timeout: Duration,
    /// `supervisord "main" at http://127.0.0.1:9001/RPC2`, for messages.
    target: String,
    idle: Mutex<Vec<Conn>>,
}

impl Client {
    pub fn new(config: &SupervisordConfig) -> Client {
        let (endpoint, path, url, host) = match &config.url {
            SupervisordUrl::Http { host, port, path } => {
                let authority = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                (
                    Endpoint::Tcp {
                        host: host.clone(),
                        port: *port,
                        tls: config.tls.as_ref().map(tls_config),
                    },
                    path.clone(),
                    config.shown_url(),
                    authority,
                )
            }
            SupervisordUrl::Unix { path } => (
                Endpoint::Unix(path.clone()),
                "/RPC2".to_owned(),
                format!("unix://{}", path.display()),
                "localhost".to_owned(),
            ),
        };
        let auth = (config.username.is_some() || config.password.is_some()).then(|| {
            let pair = format!(
                "{}:{}",
                config.username.as_deref().unwrap_or(""),
                config.password.as_deref().unwrap_or("")
            );
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            // Base64 is always a valid header value.
            let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
                .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
            value.set_sensitive(true);
            value
        });
        Client {
            endpoint,
            uri: path.parse::<Uri>().map_err(|_| path.clone()),
            host: HeaderValue::from_str(&host)
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            auth,
            timeout: config.timeout,
            target: format!("supervisord \"{}\" at {url}", config.name),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Calls `method`; the whole call (connecting included) is bounded by the configured
    /// timeout.
    pub async fn call(&self, method: &str, params: &[Value]) -> Result<Value, RpcError> {
        let body = Bytes::from(xmlrpc::encode_call(method, params));
        match timeout(self.timeout, self.round_trip(body)).await {
            Ok(result) => result,
            Err(_) => Err(RpcError::Timeout {
                target: self.target.clone(),
                after: self.timeout,
            }),
        }
    }

    /// `system.multicall`: one round trip, one result per call.
    pub async fn multicall(
        &self,
        calls: &[(&str, Vec<Value>)],
    ) -> Result<Vec<Result<Value, Fault>>, RpcError> {
        let answer = self
            .call("system.multicall", &xmlrpc::multicall_params(calls))
            .await?;
        xmlrpc::multicall_results(answer, calls.len()).map_err(|e| RpcError::Malformed {
            target: self.target.clone(),
            why: e.to_string(),
        })
    }

    async fn round_trip(&self, body: Bytes) -> Result<Value, RpcError> {
        while let Some(conn) = self.take_idle() {
            match self.exchange(conn, body.clone()).await {
                Ok(v) => return Ok(v),
                Err(Attempt::Failed(e)) => return Err(e),
                // supervisord closed it since (restart, or it dropped idle clients): the
                // request never got an answer, so it is sent again on another connection.
                Err(Attempt::NoAnswer(e)) => {
                    tracing::debug!("{}: retrying on another connection: {e}", self.target);
                }
            }
        }
        let conn = self.connect().await?;
        match self.exchange(conn, body).await {
            Ok(v) => Ok(v),
            Err(Attempt::NoAnswer(e) | Attempt::Failed(e)) => Err(e),
        }
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(conn) = idle.pop() {
            if !conn.sender.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, RpcError> {
        let connect_error = |source| RpcError::Connect {
            target: self.target.clone(),
            source,
        };
        let conn = match &self.endpoint {
            Endpoint::Tcp { host, port, tls } => {
                let stream = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(connect_error)?;
                let _ = stream.set_nodelay(true);
                match tls {
                    None => handshake(stream).await,
                    Some(tls) => handshake(self.tls(tls, host, stream).await?).await,
                }
            }
            Endpoint::Unix(path) => {
                let stream = UnixStream::connect(path).await.map_err(connect_error)?;
                handshake(stream).await
            }
        };
        conn.map_err(|e| self.broken(&e))
    }

    async fn tls(
        &self,
        tls: &Result<Arc<rustls::ClientConfig>, String>,
        host: &str,
        stream: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, RpcError> {
        let fail = |why: String| RpcError::Tls {
            target: self.target.clone(),
            why,
        };
        let config = tls.as_ref().map_err(|why| fail(why.clone()))?;
        let name = rouse_tls::client::server_name(host).map_err(|e| fail(e.to_string()))?;
        tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(name, stream)
            .await
            .map_err(|e| fail(e.to_string()))
    }

    async fn exchange(&self, mut conn: Conn, body: Bytes) -> Result<Value, Attempt> {
        let uri = self.uri.as_ref().map_err(|path| {
            Attempt::Failed(RpcError::BadPath {
                target: self.target.clone(),
                path: path.clone(),
            })
        })?;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
        if let Some(auth) = &self.auth {
            headers.insert(AUTHORIZATION, auth.clone());
        }

        if let Err(e) = conn.sender.ready().await {
            return Err(Attempt::NoAnswer(self.broken(&e)));
        }
        let response = match conn.sender.send_request(request).await {
            Ok(r) => r,
            Err(e) => return Err(Attempt::NoAnswer(self.broken(&e))),
        };
        let (head, body) = response.into_parts();
        match head.status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => {
                let hint = if self.auth.is_some() {
                    "refused the username and password (HTTP 401): check them in its \
                     [supervisors] section"
                } else {
                    "requires a username and password (HTTP 401): set them in its \
                     [supervisors] section"
                };
                return Err(Attempt::Failed(RpcError::Unauthorized {
                    target: self.target.clone(),
                    hint,
                }));
            }
            status => {
                return Err(Attempt::Failed(RpcError::Status {
                    target: self.target.clone(),
                    status,
                }));
            }
        }
        let body = match Limited::new(body, MAX_ANSWER).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => {
                return Err(Attempt::Failed(
                    self.malformed(format!("larger than {} MiB", MAX_ANSWER >> 20)),
                ));
            }
            Err(e) => return Err(Attempt::Failed(self.broken(&*e))),
        };
        let closing = head
            .headers
            .get(CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        if !closing {
            self.put_idle(conn);
        }
        match xmlrpc::decode_response(&body) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(fault)) => Err(Attempt::Failed(RpcError::Fault {
                target: self.target.clone(),
                fault,
            })),
            Err(e) => Err(Attempt::Failed(self.malformed(e.to_string()))),
        }
    }

    fn broken(&self, e: &dyn std::error::Error) -> RpcError {
        // hyper's own text ("connection closed before message completed") plus its cause.
        let why = match e.source() {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        };
        RpcError::Broken {
            target: self.target.clone(),
            why,
        }
    }

    fn malformed(&self, why: String) -> RpcError {
        RpcError::Malformed {
            target: self.target.clone(),
            why,
        }
    }
}

/// The client configuration of a `https://` supervisord: its `ca_file`, else the web PKI.
fn tls_config(
    settings: &rouse_config::TlsClientConfig,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let trust = match &settings.ca_file {
        Some(path) => Trust::CaFile(path.clone()),
        None => Trust::WebPki,
    };
    client_config(&trust, &[b"http/1.1"]).map_err(|e| e.to_string())
}

async fn handshake<S>(stream: S) -> Result<Conn, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("supervisord connection ended: {e}");
        }
    });
    Ok(Conn { sender, task })
}
