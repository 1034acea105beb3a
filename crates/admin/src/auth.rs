//! Who may send commands (POSTs).
//!
//! - With `[admin] token`, a POST needs `Authorization: Bearer <token>`, compared in constant
//!   time; otherwise 401 with `WWW-Authenticate: Bearer`.
//! - Whatever the token, a POST that a browser sends from another origin is refused (403): a
//!   web page the operator happens to visit must not be able to stop servers through the
//!   loopback admin API by posting a form to it. Browsers always send `Origin` with a
//!   cross-origin POST; command-line clients send none, and the dashboard's own requests carry
//!   the admin API's origin.
//!
//! GETs (status, metrics, dashboard) stay open: the admin API listens on loopback by default.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};

use crate::AdminState;
use crate::routes::answer;

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A token is configured and the request has no bearer token.
    MissingToken,
    /// The bearer token is not the configured one.
    WrongToken,
    /// A browser sent the request from a page of another origin.
    CrossOrigin,
}

/// Whether a command with these headers may run, given the configured token.
pub fn check(token: Option<&str>, headers: &HeaderMap) -> Result<(), Refusal> {
    if !same_origin(headers) {
        return Err(Refusal::CrossOrigin);
    }
    let Some(expected) = token else {
        return Ok(());
    };
    match bearer(headers) {
        None => Err(Refusal::MissingToken),
        Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(Refusal::WrongToken),
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares `given` with `expected` in a time that depends on `given`'s length only (which the
/// client knows anyway), never on how many leading bytes match.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return given.is_empty();
    }
    let mut diff: u8 = 0;
    for (i, g) in given.iter().enumerate() {
        diff |= g ^ expected[i % expected.len()];
    }
    let diff = std::hint::black_box(diff);
    (diff == 0) & (given.len() == expected.len())
}

/// True when there is no `Origin` (not a browser, or a same-origin GET), or when it names the
/// host the request was sent to (`Host`, or `X-Forwarded-Host` behind a reverse proxy: a
/// cross-origin form cannot set that header).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(authority) = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    }) else {
        // "null" (sandboxed frames, file:// pages) or anything else: not our page.
        return false;
    };
    let authority = authority.trim_end_matches('/');
    [header::HOST.as_str(), "x-forwarded-host"]
        .iter()
        .filter_map(|h| headers.get(*h)?.to_str().ok())
        .any(|host| host.trim().eq_ignore_ascii_case(authority))
}

/// The middleware in front of every command.
pub async fn require(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    match check(state.token.as_deref(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            let path = req.uri().path().to_owned();
            tracing::warn!(path, ?refusal, "admin command refused");
            refuse(refusal)
        }
    }
}

fn refuse(refusal: Refusal) -> Response {
    match refusal {
        Refusal::CrossOrigin => answer(
            StatusCode::FORBIDDEN,
            "forbidden",
            "cross-origin command refused: send it from the dashboard or a command-line client",
        ),
        Refusal::MissingToken | Refusal::WrongToken => {
            let message = if refusal == Refusal::MissingToken {
                "this command needs \"Authorization: Bearer <token>\" ([admin] token)"
            } else {
                "wrong token"
            };
            let mut r = answer(StatusCode::UNAUTHORIZED, "unauthorized", message);
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"rouse\""),
            );
            r.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn without_a_token_commands_are_open() {
        assert_eq!(check(None, &headers(&[])), Ok(()));
        assert_eq!(
            check(None, &headers(&[("authorization", "Bearer whatever")])),
            Ok(())
        );
    }

    #[test]
    fn with_a_token_only_the_right_bearer_passes() {
        let t = Some("s3cret");
        assert_eq!(check(t, &headers(&[])), Err(Refusal::MissingToken));
        for ok in ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret "] {
            assert_eq!(check(t, &headers(&[("authorization", ok)])), Ok(()), "{ok}");
        }
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Bearer S3CRET",
            "Bearer x",
        ] {
            assert_eq!(
                check(t, &headers(&[("authorization", wrong)])),
                Err(Refusal::WrongToken),
                "{wrong}"
            );
        }
        for missing in ["s3cret", "Basic czNjcmV0", "Bearer", "Bearer   "] {
            assert_eq!(
                check(t, &headers(&[("authorization", missing)])),
                Err(Refusal::MissingToken),
                "{missing}"
            );
        }
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abcabc", b"abc"), "a repeated token");
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
    }

    #[test]
    fn cross_origin_posts_are_refused_whatever_the_token() {
        let same = headers(&[
            ("host", "127.0.0.1:9900"),
            ("origin", "http://127.0.0.1:9900"),
        ]);
        assert_eq!(check(None, &same), Ok(()));
        let other = headers(&[
            ("host", "127.0.0.1:9900"),
            ("origin", "https://evil.example"),
        ]);
        assert_eq!(check(None, &other), Err(Refusal::CrossOrigin));
        let null = headers(&[("host", "127.0.0.1:9900"), ("origin", "null")]);
        assert_eq!(check(None, &null), Err(Refusal::CrossOrigin));
        let proxied = headers(&[
            ("host", "127.0.0.1:9900"),
            ("x-forwarded-host", "admin.example"),
            ("origin", "https://admin.example"),
        ]);
        assert_eq!(check(None, &proxied), Ok(()));
        let with_token = headers(&[
            ("host", "127.0.0.1:9900"),
            ("origin", "http://evil.example"),
            ("authorization", "Bearer s3cret"),
        ]);
        assert_eq!(
            check(Some("s3cret"), &with_token),
            Err(Refusal::CrossOrigin)
        );
    }
}
