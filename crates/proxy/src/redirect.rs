//! `redirect_https` listeners: every request gets a 308 to the same target over HTTPS, except
//! ACME HTTP-01 challenges, which must be answered over plain HTTP (RFC 8555 §8.3).
//!
//! 308, not 301: a POST stays a POST (RFC 9110 §15.4.9), and clients cache it as permanent
//! as they would a 301.

use http::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use http::{Method, Request, Response, StatusCode};

use crate::answer;
use crate::body::ProxyBody;
use crate::headers;
use crate::proxy::Proxy;

/// The answer of a redirect listener; `https_port` is the port of the HTTPS listener (443 is
/// left out of the URL).
pub(crate) fn answer<B>(proxy: &Proxy, req: &Request<B>, https_port: u16) -> Response<ProxyBody> {
    if let Err(e) = crate::limits::check_head(req, &proxy.settings.head) {
        return e.answer();
    }
    if req.method() == Method::GET
        && let Some(answer) = proxy.challenges.answer(req.uri().path())
    {
        return answer::acme_challenge(answer);
    }
    let authority = match headers::request_authority(req) {
        Ok(a) => a,
        Err(e) => return answer::error(StatusCode::BAD_REQUEST, "bad-request", format!("{e}")),
    };
    let location = location(&headers::host_of(authority), req, https_port);
    let Ok(value) = HeaderValue::from_str(&location) else {
        return answer::error(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "cannot redirect this host to https".to_owned(),
        );
    };
    let mut resp = Response::new(ProxyBody::local(format!("{location}\n")));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(LOCATION, value);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn location<B>(host: &str, req: &Request<B>, https_port: u16) -> String {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let target = if target.starts_with('/') { target } else { "/" };
    // host_of gives IPv6 literals without their brackets.
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match https_port {
        443 => format!("https://{host}{target}"),
        port => format!("https://{host}:{port}{target}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, host: &str) -> Request<()> {
        Request::builder()
            .uri(uri)
            .header("host", host)
            .body(())
            .unwrap()
    }

    #[test]
    fn the_location_keeps_host_and_target_and_names_a_port_other_than_443() {
        let r = req("/a/b?c=1", "Example.com:8080");
        assert_eq!(
            location("example.com", &r, 443),
            "https://example.com/a/b?c=1"
        );
        assert_eq!(
            location("example.com", &r, 8443),
            "https://example.com:8443/a/b?c=1"
        );
        assert_eq!(location("::1", &r, 443), "https://[::1]/a/b?c=1");
    }
}
