//! hyper's side of the proxy (HTTP/2 clients, and the HTTP/1.1 requests the fast path
//! declines) sending a request without a body to an `http1` upstream the fast path's way:
//! its head written from hyper's request in one buffer by the fast path's writer (no
//! `HeaderMap` rewritten first: that was 6.6% of an h2c request's instructions), sent on a
//! raw pooled connection (the same admission, holding and retries: `exchange::send`), the
//! response head parsed once and the body read by the request's own task ([`RawBody`]).
//! hyper's HTTP/1.1 client costs such a request a task hand-off each way, a channel and its
//! own head encoder and parser: over h2c that was a quarter of rouse's user time
//! (docs/benchmarks.md, sessions 10 and 11). Requests with a body keep hyper's client, which
//! streams it.

use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use rouse_state::Server;
use tokio::time::Instant;

use super::exchange;
use super::raw_body::RawBody;
use super::request::Field;
use super::response::{self, Info};
use super::rewrite::{self, Id, Source};
use crate::answer;
use crate::body::{Completion, ProxyBody, UpstreamBody};
use crate::buffer::Limits;
use crate::hold::Waiter;
use crate::proxy::{Proxy, Routes};
use crate::request_body::RequestBody;

/// A response head's fields are read into a buffer this large at first.
const HEAD_BUF: usize = 4096;

/// Room for this many fields' offsets at first (grown for more).
const FIELDS: usize = 16;

impl Proxy {
    /// Sends `req` (its body empty), with the forwarding fields `to` says, to a server of
    /// upstream `up_at` and answers with the server's response, or rouse's own saying why
    /// there is none; with the server it concerns.
    pub(crate) fn relay<'a>(
        self: &'a Arc<Self>,
        routes: &'a Arc<Routes>,
        up_at: usize,
        req: Request<RequestBody>,
        to: Forwarding<'_>,
        waiter: &'a Waiter<'_>,
    ) -> impl Future<Output = (Response<ProxyBody>, Option<Arc<Server>>)> + Send + 'a {
        // What the exchange needs of the request, taken now: the request itself would be
        // part of the future's state (300 bytes per HTTP/2 stream) for nothing.
        let wire = request_head(&req, to);
        let is_head = req.method() == http::Method::HEAD;
        let grpc = crate::buffer::is_grpc(req.headers());
        self.relay_wire(routes, up_at, wire, is_head, grpc, waiter)
    }

    async fn relay_wire(
        self: &Arc<Self>,
        routes: &Arc<Routes>,
        up_at: usize,
        wire: Vec<u8>,
        is_head: bool,
        grpc: bool,
        waiter: &Waiter<'_>,
    ) -> (Response<ProxyBody>, Option<Arc<Server>>) {
        let mut rbuf = Vec::with_capacity(HEAD_BUF);
        let mut fields = Vec::with_capacity(FIELDS);
        let mut moved = None;
        // Reset by each wait for a head before it is polled.
        let mut timer = pin!(tokio::time::sleep(self.settings.read_timeout));
        let sent = exchange::send(
            self,
            routes,
            up_at,
            &wire,
            is_head,
            waiter,
            &mut rbuf,
            &mut fields,
            &mut moved,
            timer.as_mut(),
        )
        .await;
        let mut answering = match sent {
            Ok(a) => a,
            Err(refused) => return refused,
        };
        let up = match &moved {
            Some((routes, at)) => &routes.upstreams[*at],
            None => &routes.upstreams[up_at],
        };
        let server = Arc::clone(answering.guard.server());
        let failed = |why: String| answer::server_failed(server.address(), up.state.name(), why);
        // Interim answers (100, 103) are passed over, as hyper's client does; the final one
        // follows on the same connection.
        while (100..200).contains(&answering.info.status) {
            if answering.info.status == 101 {
                return (answer::unasked_switch(), Some(server));
            }
            rbuf.drain(..answering.info.len);
            let deadline = rouse_core::time::deadline(Instant::now(), self.settings.read_timeout);
            match exchange::read_head(
                &mut answering.stream,
                &mut rbuf,
                &mut fields,
                is_head,
                timer.as_mut(),
                deadline,
            )
            .await
            {
                Ok(info) => answering.info = info,
                Err(e) => return (failed(e.after_interim()), Some(server)),
            }
        }
        let info = answering.info.clone();
        // Without a copy: the head's field values are slices of the buffer they were read
        // into, and the body starts from the rest of it.
        let mut rest = BytesMut::from(Bytes::from(rbuf));
        let head = rest.split_to(info.len).freeze();
        let parts = match response_parts(&head, &info, &fields) {
            Ok(parts) => parts,
            Err(why) => return (failed(why.to_owned()), Some(server)),
        };
        let body = RawBody::new(
            answering.stream,
            answering.pool,
            info.framing,
            rest,
            !info.close,
        );
        let done = Completion {
            guard: answering.guard,
            reuse: None,
        };
        let mut limits = Limits::of(&up.state.config, &self.settings.temp_dir);
        if grpc {
            limits = limits.streaming();
        }
        let resp = self.stream(parts, UpstreamBody::Raw(body), done, limits);
        (resp, Some(server))
    }
}

/// What the server's head says besides the client's: as `headers::to_upstream` and
/// `headers::set_request_id` put them on hyper's client path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Forwarding<'a> {
    /// `headers::request_authority`'s answer.
    pub authority: &'a str,
    pub client_ip: IpAddr,
    pub https: bool,
    pub request_id: &'a [u8],
}

/// `req`'s head as the server gets it, written straight from hyper's request by the fast
/// path's writer (`rewrite::write_head`), so the rules are those of both paths: the request
/// line in origin form, the client's fields but the hop-by-hop ones (a Transfer-Encoding
/// among them: the body is empty, and hyper's client drops it the same way), Host from the
/// target when it named one, the forwarding fields and the request id.
fn request_head(req: &Request<RequestBody>, to: Forwarding<'_>) -> Vec<u8> {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let headers = req.headers();
    let mut size = req.method().as_str().len() + target.len() + to.authority.len() * 2 + 160;
    for (name, value) in headers {
        size += name.as_str().len() + value.len() + 4;
    }
    let mut out = Vec::with_capacity(size);
    let src = Source {
        method: req.method().as_str().as_bytes(),
        target: target.as_bytes(),
        fields: headers,
        host: to.authority.as_bytes(),
        set_host: req.uri().authority().is_some() || !headers.contains_key(http::header::HOST),
    };
    rewrite::write_head(
        src,
        to.client_ip,
        to.https,
        Id::Given(to.request_id),
        &mut out,
    );
    out
}

/// The response head `head` as hyper's parts: the status, the end-to-end fields (by the rule
/// `client_head` uses for the fast path's clients, `response::end_to_end`: hop-by-hop ones
/// and a Content-Length that re-framing makes void are out; hyper frames the body again), and the server's reason phrase when it is not the status's own (hyper writes it to
/// an HTTP/1.1 client).
fn response_parts(
    head: &Bytes,
    info: &Info,
    fields: &[Field],
) -> Result<http::response::Parts, &'static str> {
    let status = StatusCode::from_u16(info.status).map_err(|_| "a status out of range")?;
    let mut headers = HeaderMap::with_capacity(fields.len());
    for f in response::end_to_end(head, fields, info.framing.is_reframed()) {
        let (name, _) = f.of(head);
        let name = HeaderName::from_bytes(name).map_err(|_| "a malformed field name")?;
        let value = HeaderValue::from_maybe_shared(head.slice(f.value.clone()))
            .map_err(|_| "a malformed field value")?;
        headers.append(name, value);
    }
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = status;
    parts.headers = headers;
    let reason = &head[info.reason.clone()];
    if !reason.is_empty()
        && status.canonical_reason().map(str::as_bytes) != Some(reason)
        && let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(reason.to_vec())
    {
        parts.extensions.insert(phrase);
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_of(wire: &'static [u8]) -> http::response::Parts {
        let mut fields = Vec::new();
        let info = response::parse(wire, false, &mut fields).unwrap().unwrap();
        response_parts(&Bytes::from_static(wire), &info, &fields).unwrap()
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3));
    const ID: &str = "0123456789abcdef";

    fn request(uri: &str, fields: &[(&str, &str)]) -> Request<RequestBody> {
        let (body, _) = RequestBody::buffered(Box::pin(futures_util::stream::empty()), 0, true);
        let mut req = Request::get(uri);
        for (name, value) in fields {
            req = req.header(*name, *value);
        }
        req.body(body).unwrap()
    }

    fn to(authority: &str) -> Forwarding<'_> {
        Forwarding {
            authority,
            client_ip: CLIENT,
            https: false,
            request_id: ID.as_bytes(),
        }
    }

    #[test]
    fn the_request_head_is_the_request_line_the_end_to_end_fields_and_the_forwarding_ones() {
        let req = request(
            "/a/b?c=d",
            &[
                ("host", "a.test"),
                ("x-two", "1"),
                ("x-two", "2"),
                ("transfer-encoding", "chunked"),
                ("content-length", "0"),
                ("x-request-id", "the-client-s"),
                ("x-forwarded-for", "192.0.2.1"),
            ],
        );
        assert_eq!(
            String::from_utf8(request_head(&req, to("a.test"))).unwrap(),
            "GET /a/b?c=d HTTP/1.1\r\nhost: a.test\r\nx-two: 1\r\nx-two: 2\r\n\
             content-length: 0\r\nx-forwarded-host: a.test\r\nx-forwarded-proto: http\r\n\
             x-forwarded-for: 192.0.2.1, 10.1.2.3\r\nx-request-id: 0123456789abcdef\r\n\r\n"
        );
    }

    /// An HTTP/2 request (its authority in the target) gets Host from the target, in place of
    /// any it sent; `te` and `expect` stay behind.
    #[test]
    fn a_target_s_authority_is_the_server_s_host() {
        let req = request(
            "http://a.test:81/p",
            &[
                ("host", "other.test"),
                ("te", "trailers"),
                ("expect", "100-continue"),
            ],
        );
        assert_eq!(
            String::from_utf8(request_head(&req, to("a.test:81"))).unwrap(),
            "GET /p HTTP/1.1\r\nhost: a.test:81\r\nx-forwarded-host: a.test:81\r\n\
             x-forwarded-proto: http\r\nx-forwarded-for: 10.1.2.3\r\n\
             x-request-id: 0123456789abcdef\r\n\r\n"
        );
    }

    mod same_as_hyper_s_client_path {
        use super::*;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = (String, String)> {
            let name = prop::sample::select(vec![
                "connection",
                "keep-alive",
                "te",
                "transfer-encoding",
                "upgrade",
                "expect",
                "proxy-authorization",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-request-id",
                "content-length",
                "accept",
                "x-a",
                "x-b",
            ]);
            let value = prop::sample::select(vec![
                "x-a",
                "close, x-b",
                "keep-alive",
                "trailers",
                "192.0.2.7",
                "",
                "0",
                "text/plain",
                "x-a, x-b, upgrade",
            ]);
            (name, value).prop_map(|(n, v)| (n.to_owned(), v.to_owned()))
        }

        fn sorted(mut fields: Vec<(String, String)>) -> Vec<(String, String)> {
            fields.sort();
            fields
        }

        proptest! {
            /// The relay's head carries what `headers::to_upstream` and
            /// `headers::set_request_id` leave in hyper's request (as a multiset: hyper
            /// groups repeated names), whatever the target's form and the client's Host.
            #[test]
            fn the_same_head_reaches_the_server(
                fields in prop::collection::vec(field(), 0..8),
                absolute in any::<bool>(),
                host in prop::sample::select(vec![None, Some("a.test:81"), Some("other.test")]),
                https in any::<bool>(),
            ) {
                let uri = if absolute { "http://a.test:81/p?q" } else { "/p?q" };
                // An origin-form target was routed by its Host, or by none (HTTP/1.0).
                let host = if absolute { host } else { host.map(|_| "a.test:81") };
                let authority = if absolute || host.is_some() { "a.test:81" } else { "" };
                let mut all: Vec<(&str, &str)> = host.map(|h| ("host", h)).into_iter().collect();
                all.extend(fields.iter().map(|(n, v)| (n.as_str(), v.as_str())));
                let mut req = request(uri, &all);
                if host.is_none() && !absolute {
                    *req.version_mut() = http::Version::HTTP_10;
                }
                if https {
                    req.extensions_mut().insert(crate::headers::Https);
                }
                let mut forwarding = to(authority);
                forwarding.https = https;
                let wire = request_head(&req, forwarding);
                let mut raw = [httparse::EMPTY_HEADER; 64];
                let mut parsed = httparse::Request::new(&mut raw);
                prop_assert!(parsed.parse(&wire).unwrap().is_complete());
                prop_assert_eq!(parsed.path, Some("/p?q"));
                prop_assert_eq!(parsed.version, Some(1));
                let ours = rewrite::wire_fields(parsed.headers);

                let mut theirs = req;
                crate::headers::to_upstream(&mut theirs, authority, CLIENT, false);
                crate::headers::set_request_id(
                    theirs.headers_mut(),
                    HeaderValue::from_static(ID),
                );
                prop_assert_eq!(theirs.uri().to_string(), "/p?q");
                let theirs = rewrite::map_fields(theirs.headers());
                prop_assert_eq!(sorted(ours), sorted(theirs));
            }
        }
    }

    #[test]
    fn response_parts_keep_every_field_and_an_unusual_reason() {
        let parts = parts_of(b"HTTP/1.1 200 Fine\r\nA: 1\r\nA: 2\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(parts.status, 200);
        let a: Vec<_> = parts.headers.get_all("a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        assert_eq!(parts.headers["content-length"], "0");
        let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>().unwrap();
        assert_eq!(reason.as_bytes(), b"Fine");

        let parts = parts_of(b"HTTP/1.1 404 Not Found\r\n\r\n");
        assert_eq!(parts.status, 404);
        assert!(parts.extensions.get::<hyper::ext::ReasonPhrase>().is_none());
    }

    #[test]
    fn hop_by_hop_fields_and_a_void_length_stay_with_the_server() {
        let parts = parts_of(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\n\
              Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\
              Trailer: X-Sum\r\nX-App: kept\r\n\r\n",
        );
        let names: Vec<_> = parts.headers.keys().map(|n| n.as_str()).collect();
        // `Trailer` is end-to-end: it announces the trailers that follow.
        assert_eq!(names, ["trailer", "x-app"], "{:?}", parts.headers);
        // A length the framing agrees with stays.
        let parts = parts_of(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(parts.headers["content-length"], "9");
    }

    #[test]
    fn a_field_hyper_cannot_hold_is_refused_by_one_parser_or_the_other() {
        for wire in [
            &b"HTTP/1.1 200 OK\r\nA: \x01\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nA: x\x7fy\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA\x01: x\r\n\r\n",
        ] {
            let mut fields = Vec::new();
            let refused = match response::parse(wire, false, &mut fields) {
                Ok(Some(info)) => {
                    response_parts(&Bytes::from_static(wire), &info, &fields).is_err()
                }
                Ok(None) => false,
                Err(_) => true,
            };
            assert!(refused, "{wire:?}");
        }
    }
}
