//! Buffering bodies between slow clients and servers that can serve only a few requests at
//! once (gunicorn's sync workers, PHP-FPM, anything with a worker per request).
//!
//! - `request`: the whole request body is read from the client before a server is chosen
//!   (`request_buffering`), so a trickling upload costs the server nothing until it is
//!   complete, then arrives at network speed with a `Content-Length`. Bodies past
//!   `max_request_body` are refused with 413.
//! - `response`: the response body is read from the server as fast as it comes
//!   (`response_buffering`), so the server's worker, its connection and its in-flight slot
//!   are free once it has sent everything, while a slow client reads from rouse.
//! - `spool`: where both keep bytes: memory up to a size, then an unlinked temp file.

pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod spool;

use std::path::Path;
use std::sync::Arc;

use rouse_config::UpstreamConfig;

/// One upstream's body settings, and where temp files go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits<'a> {
    pub max_request_body: u64,
    pub request_buffering: bool,
    pub request_buffer_size: usize,
    pub response_buffering: bool,
    pub response_buffer_size: usize,
    pub max_response_buffer: u64,
    pub temp_dir: &'a Arc<Path>,
}

impl<'a> Limits<'a> {
    pub fn of(up: &UpstreamConfig, temp_dir: &'a Arc<Path>) -> Limits<'a> {
        Limits {
            // 0 is "no limit", as nginx's client_max_body_size 0.
            max_request_body: match up.max_request_body {
                0 => u64::MAX,
                n => n,
            },
            request_buffering: up.request_buffering,
            request_buffer_size: up.request_buffer_size,
            response_buffering: up.response_buffering,
            response_buffer_size: up.response_buffer_size,
            max_response_buffer: up.max_response_buffer,
            temp_dir,
        }
    }

    /// The limits for this request: a gRPC call's are [`Limits::streaming`].
    pub fn for_request<B>(self, req: &http::Request<B>) -> Limits<'a> {
        if is_grpc(req.headers()) {
            self.streaming()
        } else {
            self
        }
    }

    /// Neither body buffered. gRPC's streams carry their own flow control end to end, and a
    /// bidirectional call whose client waits for answers before it ends its request stream
    /// would wait for ever on a request read whole; `max_request_body` still applies.
    pub fn streaming(self) -> Limits<'a> {
        Limits {
            request_buffering: false,
            response_buffering: false,
            ..self
        }
    }
}

/// Whether a request is a gRPC call (`content-type: application/grpc`, `application/grpc+proto`,
/// gRPC-Web's `application/grpc-web…`).
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_calls_are_never_buffered() {
        let dir: Arc<Path> = Arc::from(Path::new("/tmp"));
        let config = rouse_config::parse(
            "t.toml",
            "[[upstream]]\nname = \"g\"\nsupervisor = \"none\"\n\
             [[upstream.server]]\naddress = \"127.0.0.1:9\"\n",
        )
        .expect("valid");
        let limits = Limits::of(&config.upstreams[0], &dir);
        assert!(limits.request_buffering && limits.response_buffering);
        for (content_type, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC", true),
            ("application/grpc-web", true),
            ("application/json", false),
            ("application/grp", false),
        ] {
            let req = http::Request::builder()
                .header("content-type", content_type)
                .body(())
                .unwrap();
            let l = limits.for_request(&req);
            assert_eq!(!l.request_buffering, grpc, "{content_type}");
            assert_eq!(!l.response_buffering, grpc, "{content_type}");
            assert_eq!(l.max_request_body, limits.max_request_body);
        }
    }
}
