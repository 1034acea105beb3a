//! `GET /`: the dashboard, one self-contained HTML page (no external assets) whose script polls
//! `GET /status` every second, `GET /history` (charts, state timelines, errors) at half its
//! sample interval and `GET /supervisors` every 5 s, and sends commands with `fetch`. Charts are
//! SVG drawn by the page itself.
//!
//! Everything it shows from the server (names, programs, event details) is set as text
//! (`textContent`, text nodes), never parsed as HTML, so nothing in a config or an error
//! message can inject markup. The Content-Security-Policy below backs that up: no external
//! script, style, image or connection is allowed, and the page cannot be framed.

use axum::response::{IntoResponse, Response};
use http::header;

/// The page, as shipped.
pub const PAGE: &str = include_str!("dashboard.html");

const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_and_never_parses_server_text_as_html() {
        for external in ["http://", "https://", "//cdn", "src=\"", "@import"] {
            assert!(!PAGE.contains(external), "external asset? {external}");
        }
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!PAGE.contains(sink), "HTML sink {sink} in the dashboard");
        }
        assert!(PAGE.contains("fetch(\"/status"), "polls /status");
        assert!(PAGE.contains("sessionStorage"), "keeps the token per tab");
        assert!(
            !PAGE.contains("localStorage"),
            "the token never outlives the tab"
        );
        assert!(
            PAGE.contains("fetch(\"/history"),
            "polls /history for the charts"
        );
    }
}
