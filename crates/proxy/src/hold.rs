//! Holding a request while its upstream has no ready server.
//!
//! The request registers as held (bounded by `queue_limit`), pokes the control plane, and waits
//! on the upstream's change signal until a server is ready, the start fails, or `start_timeout`
//! passes. Waiting is a parked future: nothing else is blocked, and a thousand held requests cost
//! a thousand small futures. Exactly one start is issued however many wait: starting is the
//! control plane's decision, made from the held count, not the requests'.

use std::time::Duration;

use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Response, StatusCode};
use std::sync::atomic::{AtomicU64, Ordering};

use rouse_state::{HeldGuard, Metrics, Table, Upstream};
use tokio::time::Instant;

use crate::answer;
use crate::body::ProxyBody;

/// A browser asking for a page is held this long before it gets the waiting page instead.
const BROWSER_PATIENCE: Duration = Duration::from_secs(1);

/// What the request carries that decides how it waits.
pub(crate) struct Waiter<'a> {
    pub path: &'a str,
    pub browser: bool,
    pub arrived: Instant,
    /// Time spent held so far, in µs (for the access log).
    pub held_us: AtomicU64,
}

impl<'a> Waiter<'a> {
    pub fn new(method: &Method, path: &'a str, headers: &HeaderMap, arrived: Instant) -> Self {
        let browser = *method == Method::GET
            && headers
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/html"));
        Waiter {
            path,
            browser,
            arrived,
            held_us: AtomicU64::new(0),
        }
    }
}

/// `Retry-After` for a request whose upstream a reload removed while it waited.
pub(crate) const RELOADED: Duration = Duration::from_secs(1);

/// Why a held request stopped waiting without an answer.
pub(crate) enum Held {
    /// A server may be ready: pick again.
    Retry,
    /// A reload replaced the upstream: go on with its successor.
    Replaced,
}

/// Waits until `upstream` may have a ready server, or answers why not.
pub(crate) async fn hold(
    table: &Table,
    upstream: &std::sync::Arc<Upstream>,
    w: &Waiter<'_>,
) -> Result<Held, Response<ProxyBody>> {
    let cfg = &upstream.config;
    if cfg
        .never_wake
        .iter()
        .any(|p| w.path.starts_with(p.as_str()))
    {
        return Err(answer::unavailable(
            "cold",
            format!(
                "upstream {:?} is not running, and {} does not wake it",
                cfg.name, w.path
            ),
            retry_after(upstream, w),
        ));
    }
    let Some(held) = upstream.hold() else {
        return Err(answer::unavailable(
            "queue-full",
            format!(
                "upstream {:?} is starting and already holds {} requests (queue_limit)",
                cfg.name, cfg.queue_limit
            ),
            retry_after(upstream, w),
        ));
    };
    let _timer = HeldTimer {
        _held: held,
        since: Instant::now(),
        out: &w.held_us,
    };
    // Subscribe before checking, so a change between the check and the wait is not missed.
    let mut changed = upstream.subscribe();
    let deadline = w.arrived + cfg.start_timeout;
    let page_at = (cfg.waiting_page && w.browser).then(|| w.arrived + BROWSER_PATIENCE);
    loop {
        if upstream.is_replaced() {
            return Ok(Held::Replaced);
        }
        if upstream.pick(Instant::now(), &[]).is_some() {
            return Ok(Held::Retry);
        }
        table.demand.notify_one();
        if let Some(error) = upstream.start_error() {
            return Err(answer::unavailable(
                "start-failed",
                format!("upstream {:?} could not start a server: {error}", cfg.name),
                retry_after(upstream, w),
            ));
        }
        let until = page_at.map_or(deadline, |p| p.min(deadline));
        tokio::select! {
            // The sender lives as long as the upstream, which this request holds.
            _ = changed.changed() => {}
            _ = tokio::time::sleep_until(until) => {
                if page_at.is_some_and(|p| p <= Instant::now()) && Instant::now() < deadline {
                    return Err(waiting_page(upstream, w));
                }
                table
                    .metrics
                    .held_timeouts
                    .get_or_create(&Metrics::upstream(upstream.name()))
                    .inc();
                return Err(answer::unavailable(
                    "start-timeout",
                    format!(
                        "upstream {:?} has no ready server after {:?} (start_timeout)",
                        cfg.name, cfg.start_timeout
                    ),
                    retry_after(upstream, w),
                ));
            }
        }
    }
}

/// How long a client should wait before trying again: what is left of a typical start, as
/// measured so far, or a few seconds when nothing was measured yet.
fn retry_after(upstream: &Upstream, w: &Waiter<'_>) -> Duration {
    let typical = upstream.typical_start().unwrap_or(Duration::from_secs(2));
    typical
        .saturating_sub(w.arrived.elapsed())
        .max(Duration::from_secs(1))
}

/// A page that reloads itself while the server starts (`waiting_page = true`, browsers only).
fn waiting_page(upstream: &Upstream, w: &Waiter<'_>) -> Response<ProxyBody> {
    let secs = retry_after(upstream, w).as_secs().clamp(1, 10);
    let name = html_escape(upstream.name());
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{secs}\"><title>Starting {name}…</title>\
         <style>body{{font-family:system-ui,sans-serif;display:flex;align-items:center;\
         justify-content:center;height:90vh;color:#333}}</style></head>\
         <body><div><h1>Starting {name}…</h1><p>This page reloads by itself in {secs} s.</p>\
         </div></body></html>"
    );
    let mut resp = Response::new(ProxyBody::local(html));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(RETRY_AFTER, HeaderValue::from(secs));
    h.insert(
        answer::X_ROUSE_ERROR,
        HeaderValue::from_static("waiting-page"),
    );
    resp
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Counts the request as held, and adds the time it was held to the waiter's total, until
/// dropped (whichever way `hold` returns).
struct HeldTimer<'a> {
    _held: HeldGuard,
    since: Instant,
    out: &'a AtomicU64,
}

impl Drop for HeldTimer<'_> {
    fn drop(&mut self) {
        let us = self.since.elapsed().as_micros() as u64;
        self.out.fetch_add(us, Ordering::Relaxed);
    }
}
