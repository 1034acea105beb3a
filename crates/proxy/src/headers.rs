//! Header rewriting between client and server: hop-by-hop headers out, forwarding headers in.
//!
//! Pure functions over `http` types so they are tested without sockets.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri, Version};

/// RFC 9110 §7.6.1 hop-by-hop headers, plus the de-facto ones proxies also drop. `Trailer` is
/// not one (RFC 9110 §6.6.2): it names the trailer fields, and hyper sends only those it names,
/// so dropping it would drop a chunked request's trailers.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Marks a request that came over TLS (a request extension the TLS listeners set), so that
/// `X-Forwarded-Proto` says `https`: the connection knows, the request alone does not (an h2c
/// client may send any `:scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Https;

/// Why a request cannot be forwarded at all (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    #[error("missing Host header")]
    MissingHost,
    #[error("invalid Host header")]
    InvalidHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("user information in the request target")]
    UserInfo,
    #[error("a request target in authority-form, which only CONNECT uses")]
    AuthorityForm,
}

/// The host a request is for, from the URI authority (HTTP/2, absolute-form) or the Host header.
/// Returns the raw authority (possibly with port), as sent.
///
/// RFC 9112 §3.2: an HTTP/1.1 request without Host, with more than one, or with an invalid one
/// is refused, even when its target carries the authority; `Host` may be empty. The target's
/// authority wins over Host (§3.2.2), and the HTTP/2 `:authority` likewise.
pub fn request_authority<B>(req: &Request<B>) -> Result<&str, BadRequest> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(BadRequest::DuplicateHost);
    }
    let host = host.map(valid_host).transpose()?;
    if let Some(a) = req.uri().authority() {
        // `GET example.com HTTP/1.1` (RFC 9112 §3.2.3): hyper takes it for a host with no path.
        if req.uri().scheme().is_none() && req.method() != http::Method::CONNECT {
            return Err(BadRequest::AuthorityForm);
        }
        // A target's userinfo is deprecated and a known phishing vector (RFC 9110 §4.2.4).
        if a.as_str().contains('@') {
            return Err(BadRequest::UserInfo);
        }
        if host.is_none() && req.version() == Version::HTTP_11 {
            return Err(BadRequest::MissingHost);
        }
        return Ok(a.as_str());
    }
    match host {
        Some(h) => Ok(h),
        None if req.version() == Version::HTTP_10 || req.version() == Version::HTTP_09 => Ok(""),
        None => Err(BadRequest::MissingHost),
    }
}

/// A Host value is `uri-host [ ":" port ]` or empty: no userinfo, path, spaces or commas (a
/// list would mean several hosts, which a server would read differently than rouse routes).
fn valid_host(value: &HeaderValue) -> Result<&str, BadRequest> {
    let text = value.to_str().map_err(|_| BadRequest::InvalidHost)?;
    if text.is_empty() {
        return Ok(text);
    }
    match text.parse::<http::uri::Authority>() {
        Ok(_) if !text.contains(['@', ',']) => Ok(text),
        _ => Err(BadRequest::InvalidHost),
    }
}

/// The host part of an authority, lower-cased, without port or IPv6 brackets' port.
pub fn host_of(authority: &str) -> String {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content.
        rest.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.to_ascii_lowercase()
}

/// Whether the client asks to switch protocols (WebSocket), per RFC 9110 §7.8.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

/// Whether a message's `Connection` asks to close the connection after it (RFC 9112 §9.6).
pub fn wants_close(headers: &HeaderMap) -> bool {
    connection_has(headers, "close")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes the fields whose name holds an underscore, as nginx does unless
/// `underscores_in_headers on`: a CGI-style server (WSGI, Rack, PHP) reads `X_Forwarded_For`
/// and `X-Forwarded-For` as the same variable, so a client could pass one off as the
/// other's value.
pub fn drop_underscored(headers: &mut HeaderMap) {
    let has = |name: &HeaderName| name.as_str().contains('_');
    if !headers.keys().any(has) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| has(n)).cloned().collect();
    for name in names {
        headers.remove(&name);
    }
}

/// Removes hop-by-hop headers, and the ones the Connection header names. When `keep_upgrade`,
/// `Upgrade` and `Connection: upgrade` are kept (rewritten to exactly that) so a WebSocket
/// handshake reaches the other side.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most heads have none (an HTTP/2 request at most `te: trailers`: h2 refuses the other
    // connection-specific fields): one look at the names costs less than a hashed removal of
    // each of the eight (2.6% of an h2c request's instructions: docs/benchmarks.md).
    let any = headers
        .keys()
        .any(|name| name == header::UPGRADE || HOP_BY_HOP.contains(name));
    if !any {
        if keep_upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP.iter() {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// hyper's HTTP/1.1 client sends a GET or HEAD body whose length it does not know as no
/// body at all (it takes such methods to have none), unless the request says how it is
/// framed: such a body (an HTTP/2 request's without Content-Length, one with trailers) is
/// said to be chunked, so that the server gets what the client sent.
pub fn keep_unsized_body<B: http_body::Body>(req: &mut Request<B>) {
    if matches!(*req.method(), http::Method::GET | http::Method::HEAD)
        && !req.body().is_end_stream()
        && req.body().size_hint().exact().is_none()
        && !req.headers().contains_key(header::CONTENT_LENGTH)
    {
        req.headers_mut().insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
}

/// Turns a client request into the request sent to a server: HTTP/1.1, origin-form URI, Host
/// kept, hop-by-hop headers removed, `X-Forwarded-*` added. `authority` is what
/// [`request_authority`] returned; `upgrade` keeps a WebSocket handshake intact.
///
/// A target with an authority (absolute-form, HTTP/2) replaces Host: the server must see the
/// host rouse routed by (RFC 9112 §3.2.2: a proxy generates Host from the target).
pub fn to_upstream<B>(req: &mut Request<B>, authority: &str, client_ip: IpAddr, upgrade: bool) {
    let from_target = req.uri().authority().is_some();
    if from_target || req.uri().scheme().is_some() {
        // The target's path, shared rather than copied and parsed again.
        let path = req.uri().path_and_query().cloned();
        *req.uri_mut() = path.map_or_else(|| Uri::from_static("/"), Uri::from);
    }
    *req.version_mut() = Version::HTTP_11;
    let proto = if req.extensions().get::<Https>().is_some() {
        "https"
    } else {
        "http"
    };

    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    // hyper already answered any `Expect: 100-continue` when it started reading the body.
    headers.remove(header::EXPECT);

    let host = HeaderValue::from_str(authority).ok();
    if let Some(host) = &host {
        if from_target || !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, host.clone());
        }
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    append_forwarded_for(headers, client_ip);
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static(crate::access::request_id::HEADER);

/// The request's id: the client's first `X-Request-Id` if sane (`request_id::is_sane`), else
/// a new one. Read before `to_upstream`, which may strip the client's.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    use crate::access::request_id;
    match headers.get(&X_REQUEST_ID) {
        Some(id) if request_id::is_sane(id.as_bytes()) => id.clone(),
        _ => HeaderValue::from_bytes(request_id::generate().as_bytes())
            .unwrap_or(HeaderValue::from_static("-")),
    }
}

/// The id the server sees, in place of any the client sent (after `to_upstream`).
pub fn set_request_id(headers: &mut HeaderMap, id: HeaderValue) {
    headers.insert(X_REQUEST_ID, id);
}

/// Whether the client said it accepts trailers (`TE: trailers`, RFC 9110 §10.1.4): gRPC
/// servers look for it, and it is the only `TE` HTTP/2 allows.
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Turns a request made by [`to_upstream`] into one for an HTTP/2 server (RFC 9113 §8.3.1):
/// the target in absolute form, so that hyper sends `:scheme` and `:authority` (from the
/// host rouse routed by, else the server's address), no `Host` (the `:authority` says it),
/// no connection-specific field (already gone), `te: trailers` back if the client sent it.
pub fn to_http2<B>(req: &mut Request<B>, scheme: &str, authority: &str, te_trailers: bool) {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Ok(uri) = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
    {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = Version::HTTP_2;
    let headers = req.headers_mut();
    headers.remove(header::HOST);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, client_ip: IpAddr) {
    // One buffer, the address written without the formatter (the fast path's writer).
    let mut value = Vec::with_capacity(64);
    if let Some(prior) = headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok())
        && !prior.trim().is_empty()
    {
        value.extend_from_slice(prior.as_bytes());
        value.extend_from_slice(b", ");
    }
    crate::h1::push_ip(&mut value, client_ip);
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn authority_from_host_header_or_uri() {
        let r = req("/x", &[("host", "App.Example.com:8080")]);
        assert_eq!(request_authority(&r).unwrap(), "App.Example.com:8080");
        assert_eq!(host_of("App.Example.com:8080"), "app.example.com");
        let mut r = req("http://h2.example/x", &[]);
        *r.version_mut() = Version::HTTP_2;
        assert_eq!(request_authority(&r).unwrap(), "h2.example");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("plain"), "plain");
    }

    #[test]
    fn fields_named_with_an_underscore_are_dropped() {
        let mut r = req(
            "/x",
            &[
                ("x_forwarded_for", "6.6.6.6"),
                ("x-a", "1"),
                ("x_b", "2"),
                ("x_b", "3"),
            ],
        );
        drop_underscored(r.headers_mut());
        assert_eq!(r.headers().len(), 1);
        assert_eq!(r.headers()["x-a"], "1");
    }

    #[test]
    fn http11_without_host_is_bad() {
        let r = req("/x", &[]);
        assert_eq!(request_authority(&r), Err(BadRequest::MissingHost));
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut r = req(
            "/x",
            &[
                ("host", "a"),
                ("connection", "keep-alive, x-secret"),
                ("keep-alive", "timeout=5"),
                ("x-secret", "1"),
                ("te", "trailers"),
                ("proxy-authorization", "Basic x"),
                ("upgrade", "websocket"),
                ("x-kept", "yes"),
            ],
        );
        to_upstream(&mut r, "a", CLIENT, false);
        let h = r.headers();
        for gone in [
            "connection",
            "keep-alive",
            "x-secret",
            "te",
            "proxy-authorization",
            "upgrade",
        ] {
            assert!(!h.contains_key(gone), "{gone} should be removed");
        }
        assert_eq!(h["x-kept"], "yes");
    }

    /// Each hop-by-hop field is found on its own (the look at the names that lets a request
    /// without any skip the removals must know every one), and a request without any keeps
    /// all its fields.
    #[test]
    fn each_hop_by_hop_field_alone_is_removed() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "transfer-encoding",
            "upgrade",
        ] {
            let mut r = req("/x", &[("host", "a"), (name, "x"), ("x-kept", "yes")]);
            to_upstream(&mut r, "a", CLIENT, false);
            assert!(!r.headers().contains_key(name), "{name} should be removed");
            assert_eq!(r.headers()["x-kept"], "yes");
        }
        let mut r = req("/x", &[("host", "a"), ("accept", "*/*"), ("x-kept", "yes")]);
        to_upstream(&mut r, "a", CLIENT, false);
        assert_eq!(r.headers()["accept"], "*/*");
        assert_eq!(r.headers()["x-kept"], "yes");
        assert!(!r.headers().contains_key("connection"));

        let mut headers = HeaderMap::new();
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["x-kept"], "yes");
    }

    #[test]
    fn upgrade_survives_when_asked() {
        let mut r = req(
            "/ws",
            &[
                ("host", "a"),
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "websocket"),
            ],
        );
        assert!(wants_upgrade(r.headers()));
        to_upstream(&mut r, "a", CLIENT, true);
        assert_eq!(r.headers()["upgrade"], "websocket");
        assert_eq!(r.headers()["connection"], "upgrade");
    }

    #[test]
    fn forwarded_headers_are_set_and_appended() {
        let mut r = req("/x", &[("host", "a.b"), ("x-forwarded-for", "192.0.2.1")]);
        to_upstream(&mut r, "a.b", CLIENT, false);
        assert_eq!(r.headers()["x-forwarded-for"], "192.0.2.1, 10.1.2.3");
        assert_eq!(r.headers()["x-forwarded-proto"], "http");

        let mut r = req("/x", &[("host", "a.b")]);
        r.extensions_mut().insert(Https);
        to_upstream(&mut r, "a.b", CLIENT, false);
        assert_eq!(r.headers()["x-forwarded-proto"], "https");
        assert_eq!(r.headers()["x-forwarded-host"], "a.b");
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_host() {
        let mut r = req("http://h2.example/p?q=1", &[]);
        *r.version_mut() = Version::HTTP_2;
        to_upstream(&mut r, "h2.example", CLIENT, false);
        assert_eq!(r.uri().to_string(), "/p?q=1");
        assert_eq!(r.version(), Version::HTTP_11);
        assert_eq!(r.headers()["host"], "h2.example");

        // No path at all: the server is asked for "/".
        let mut r = req("http://h2.example", &[]);
        to_upstream(&mut r, "h2.example", CLIENT, false);
        assert_eq!(r.uri().to_string(), "/");
        assert_eq!(r.uri().path_and_query().map(|p| p.as_str()), Some("/"));
    }

    #[test]
    fn two_host_headers_are_bad_even_when_equal() {
        for second in ["a.test", "b.test"] {
            let r = req("/x", &[("host", "a.test"), ("host", second)]);
            assert_eq!(request_authority(&r), Err(BadRequest::DuplicateHost));
            let r = req("http://a.test/x", &[("host", "a.test"), ("host", second)]);
            assert_eq!(request_authority(&r), Err(BadRequest::DuplicateHost));
        }
    }

    #[test]
    fn invalid_host_values_are_bad() {
        for bad in ["a b", "a/b", "u@a.test", "a.test, b.test", "a\tb"] {
            let r = req("/x", &[("host", bad)]);
            assert_eq!(
                request_authority(&r),
                Err(BadRequest::InvalidHost),
                "{bad:?}"
            );
        }
        let mut r = req("/x", &[]);
        r.headers_mut().insert(
            header::HOST,
            HeaderValue::from_bytes(b"caf\xe9.test").unwrap(),
        );
        assert_eq!(request_authority(&r), Err(BadRequest::InvalidHost));
        for good in ["a.test", "a.test:8080", "[::1]:80", "127.0.0.1", ""] {
            let r = req("/x", &[("host", good)]);
            assert_eq!(request_authority(&r), Ok(good));
        }
    }

    #[test]
    fn absolute_form_needs_host_in_http11_and_wins_over_it() {
        let r = req("http://b.test/x", &[]);
        assert_eq!(request_authority(&r), Err(BadRequest::MissingHost));
        let r = req("http://b.test/x", &[("host", "a.test")]);
        assert_eq!(request_authority(&r), Ok("b.test"));
        let r = req("http://u:p@b.test/x", &[("host", "b.test")]);
        assert_eq!(request_authority(&r), Err(BadRequest::UserInfo));
    }

    #[test]
    fn authority_form_is_for_connect_only() {
        let r = req("inspect", &[("host", "a.test")]);
        assert_eq!(request_authority(&r), Err(BadRequest::AuthorityForm));
        let mut r = req("b.test:443", &[("host", "b.test:443")]);
        *r.method_mut() = http::Method::CONNECT;
        assert_eq!(request_authority(&r), Ok("b.test:443"));
    }

    #[test]
    fn absolute_form_replaces_the_host_header() {
        let mut r = req("http://b.test/p", &[("host", "a.test")]);
        let authority = request_authority(&r).unwrap().to_owned();
        to_upstream(&mut r, &authority, CLIENT, false);
        assert_eq!(r.uri().to_string(), "/p");
        assert_eq!(r.headers().get_all("host").iter().count(), 1);
        assert_eq!(r.headers()["host"], "b.test");
        assert_eq!(r.headers()["x-forwarded-host"], "b.test");
    }

    #[test]
    fn http2_requests_carry_the_authority_in_the_target_and_keep_te_trailers() {
        let mut r = req(
            "/svc/Method?x=1",
            &[
                ("host", "api.test:8080"),
                ("connection", "keep-alive"),
                ("te", "trailers"),
                ("content-type", "application/grpc"),
            ],
        );
        let te = accepts_trailers(r.headers());
        assert!(te);
        to_upstream(&mut r, "api.test:8080", CLIENT, false);
        to_http2(&mut r, "http", "api.test:8080", te);
        assert_eq!(r.uri().to_string(), "http://api.test:8080/svc/Method?x=1");
        assert_eq!(r.version(), Version::HTTP_2);
        assert!(!r.headers().contains_key("host"));
        assert!(!r.headers().contains_key("connection"));
        assert_eq!(r.headers()["te"], "trailers");
        assert_eq!(r.headers()["content-type"], "application/grpc");

        let mut r = req("/", &[("host", "a"), ("te", "gzip")]);
        let te = accepts_trailers(r.headers());
        assert!(!te);
        to_upstream(&mut r, "a", CLIENT, false);
        to_http2(&mut r, "http", "a", te);
        assert!(
            !r.headers().contains_key("te"),
            "only te: trailers is HTTP/2's"
        );
        assert!(accepts_trailers(
            req("/", &[("te", "gzip, Trailers;q=1")]).headers()
        ));
    }

    #[test]
    fn trailer_is_end_to_end() {
        let mut r = req(
            "/x",
            &[("host", "a"), ("trailer", "x-sum"), ("te", "trailers")],
        );
        to_upstream(&mut r, "a", CLIENT, false);
        assert_eq!(r.headers()["trailer"], "x-sum");
        assert!(!r.headers().contains_key("te"));
    }
}
