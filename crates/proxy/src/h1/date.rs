//! The `Date` field, formatted once a second per thread (as hyper caches it).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Appends the current HTTP date (IMF-fixdate) to `out`.
pub(crate) fn append(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs || c.1.is_empty() {
            *c = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(c.1.as_bytes());
    });
}

/// The current HTTP date as a field value (for the answers of rouse's HTTP/2 server, which
/// says `Date` where a server's answer did not, as hyper does).
pub(crate) fn value() -> http::HeaderValue {
    let mut out = Vec::with_capacity(29);
    append(&mut out);
    http::HeaderValue::from_bytes(&out).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}
