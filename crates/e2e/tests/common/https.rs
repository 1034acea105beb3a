//! One HTTPS exchange with rouse's TLS listeners, by SNI and ALPN, showing what was negotiated
//! and which certificate was served.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::WAIT;

/// One HTTPS exchange's outcome.
pub struct Got {
    pub status: u16,
    pub body: String,
    pub version: http::Version,
    pub cert: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
}

/// Connects to `addr` with SNI `name`, offering `alpn`, and sends `GET path` for host `name`
/// over the protocol ALPN chose (HTTP/1.1 when none).
pub async fn https_get(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    name: &str,
    path: &str,
) -> Result<Got, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (_, conn) = tls.get_ref();
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let io = TokioIo::new(tls);
    let resp = if alpn.as_deref() == Some(b"h2") {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::get(format!("https://{name}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header("host", name)
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.send_request(req).await.map_err(|e| e.to_string())?
    };
    let status = resp.status().as_u16();
    let version = resp.version();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Got {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        version,
        cert,
        alpn,
    })
}

pub async fn get(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    name: &str,
    path: &str,
) -> Got {
    timeout(WAIT, https_get(connector, addr, name, path))
        .await
        .expect("bounded")
        .unwrap_or_else(|e| panic!("GET https://{name}{path}: {e}"))
}
