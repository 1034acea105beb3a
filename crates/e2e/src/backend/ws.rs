//! `GET /ws`: a WebSocket echo.

use futures_util::{SinkExt, StreamExt};
use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::body::{RespBody, empty};
use super::stats::InFlight;

/// Checks the handshake and, if it is one, returns the `101` to send and the connection
/// hyper will hand over once that is sent; if not, why (for a 400).
pub(crate) fn accept<B>(
    req: &mut Request<B>,
) -> Result<(Response<RespBody>, OnUpgrade), &'static str> {
    // HTTP/2 WebSockets (RFC 8441) would need extended CONNECT; nothing here uses them.
    if req.version() != Version::HTTP_11 {
        return Err("WebSocket needs HTTP/1.1");
    }
    let headers = req.headers();
    if !has_token(headers, UPGRADE, "websocket") || !has_token(headers, CONNECTION, "upgrade") {
        return Err("not a WebSocket upgrade");
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err("Sec-WebSocket-Version must be 13");
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        return Err("no Sec-WebSocket-Key");
    };
    let accept = derive_accept_key(key.as_bytes());
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return Err("bad Sec-WebSocket-Key");
    };

    let on_upgrade = hyper::upgrade::on(req);
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(SEC_WEBSOCKET_ACCEPT, accept);
    Ok((resp, on_upgrade))
}

fn has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Echoes messages until the client closes, `graceful` (then it closes with 1001 and waits for
/// the client's close) or `immediate` (then it just drops the socket).
pub(crate) async fn run(
    on_upgrade: OnUpgrade,
    graceful: CancellationToken,
    immediate: CancellationToken,
    in_flight: InFlight,
) {
    let _in_flight = in_flight;
    let upgraded = tokio::select! {
        upgraded = on_upgrade => match upgraded {
            Ok(upgraded) => upgraded,
            Err(_) => return,
        },
        () = immediate.cancelled() => return,
    };
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    let mut closing = false;
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
                // tungstenite answers pings and closes itself; the replies go out on the
                // next read, which the loop does.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            () = graceful.cancelled(), if !closing => {
                closing = true;
                let frame = CloseFrame { code: CloseCode::Away, reason: "shutting down".into() };
                if ws.close(Some(frame)).await.is_err() {
                    break;
                }
            }
            () = immediate.cancelled() => break,
        }
    }
}
