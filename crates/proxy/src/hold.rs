//! Holding a request while its upstream has no server that may take it: none is ready (a cold
//! start), or every ready one is full (at its `max_conns`, or at `target_in_flight` while
//! another server starts, see `rouse_core::balance::Capacity`).
//!
//! The request registers as held (bounded by `queue_limit`), pokes the control plane, and waits
//! until a server may take it, the start fails, or `start_timeout` passes. Waiting is a parked
//! future: nothing else is blocked, and a thousand held requests cost a thousand small futures.
//! Exactly one start is issued however many wait: starting is the control plane's decision,
//! made from the held count, not the requests'.
//!
//! Two things wake a held request: the upstream's change signal (a server became ready, a start
//! failed, a reload), which wakes them all, and room on a server (a request ended there while
//! requests are held: [`rouse_state::Waiters`]), which wakes one, first come first served. A
//! woken request that gets in passes the wake-up on to the next in line, since the room may
//! be for more than one; one that finds none waits again. So releases go at the pace servers
//! free up, with no lost wake-up and no polling.

use std::sync::Arc;
use std::time::Duration;

use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Response, StatusCode};
use std::sync::atomic::{AtomicU64, Ordering};

use rouse_core::state::ServerState;
use rouse_core::time;
use rouse_state::{Admission, HeldGuard, InFlightGuard, Metrics, Table, Upstream};
use tokio::time::Instant;

use crate::answer;
use crate::body::ProxyBody;

/// A browser asking for a page is held this long before it gets the waiting page instead.
const BROWSER_PATIENCE: Duration = Duration::from_secs(1);

/// What the request carries that decides how it waits.
pub(crate) struct Waiter<'a> {
    /// The request's path (bytes: the fast path's are ASCII, checked, not made `str`).
    pub path: &'a [u8],
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
            path: path.as_bytes(),
            browser,
            arrived,
            held_us: AtomicU64::new(0),
        }
    }
}

/// `Retry-After` for a request whose upstream a reload removed while it waited.
pub(crate) const RELOADED: Duration = Duration::from_secs(1);

/// How a held request stopped waiting without an answer of rouse's own.
pub(crate) enum Held {
    /// A server took it: its position in the upstream's servers, and the request counted in
    /// flight there.
    Admitted(usize, InFlightGuard),
    /// A reload replaced the upstream: go on with its successor.
    Replaced,
}

/// A server for a request, counted in flight on it: the balancer's choice among servers with
/// room, or, for static servers when every ready one is inside a passive-failure window, the
/// one whose window ends first (nobody else would bring one back).
pub(crate) fn admit(upstream: &Upstream, now: Instant, tried: &[usize]) -> Admission {
    match upstream.admit(now, tried) {
        Admission::NoServer if upstream.is_static() => upstream.admit_least_recently_failed(tried),
        other => other,
    }
}

/// Waits until a server of `upstream` takes the request, or answers why not. It waits in line:
/// requests held before it go first.
pub(crate) async fn hold(
    table: &Table,
    upstream: &Arc<Upstream>,
    w: &Waiter<'_>,
) -> Result<Held, Response<ProxyBody>> {
    let cfg = &upstream.config;
    let cold = !upstream.any_ready();
    if cold
        && cfg
            .never_wake
            .iter()
            .any(|p| w.path.starts_with(p.as_bytes()))
    {
        return Err(answer::unavailable(
            "cold",
            format!(
                "upstream {:?} is not running, and {} does not wake it",
                cfg.name,
                String::from_utf8_lossy(w.path)
            ),
            retry_after(upstream, w),
        ));
    }
    let Some(held) = upstream.hold() else {
        let why = if cold {
            "is starting"
        } else {
            "is at capacity"
        };
        return Err(answer::unavailable(
            "queue-full",
            format!(
                "upstream {:?} {why} and already holds {} requests (queue_limit)",
                cfg.name, cfg.queue_limit
            ),
            retry_after(upstream, w),
        ));
    };
    let timer = HeldTimer {
        held,
        since: Instant::now(),
        out: &w.held_us,
    };
    // Subscribe before checking, so a change between the check and the wait is not missed.
    let mut changed = upstream.subscribe();
    let failures_at = upstream.start_failures();
    let deadline = time::deadline(w.arrived, cfg.start_timeout);
    let page_at = (cfg.waiting_page && w.browser && cold)
        .then(|| time::deadline(w.arrived, BROWSER_PATIENCE));
    let mut poke = true;
    loop {
        if upstream.is_replaced() {
            return Ok(Held::Replaced);
        }
        // Only the first in line takes room: a request keeps its place until it is served,
        // so a wake-up that finds the room taken does not send it to the back.
        let admitted = match timer
            .held
            .is_first()
            .then(|| admit(upstream, Instant::now(), &[]))
        {
            Some(Admission::Admitted(at, guard)) => Some((at, guard)),
            _ => {
                // Only a change can alter what the control plane would decide; a wake-up for
                // room is the data plane's business.
                if poke {
                    table.demand.notify_one();
                }
                let failed = upstream.failed_since(failures_at);
                if let Some(error) = failed.or_else(|| upstream.start_error()) {
                    return Err(answer::unavailable(
                        "start-failed",
                        format!("upstream {:?} could not start a server: {error}", cfg.name),
                        retry_after(upstream, w),
                    ));
                }
                let until = page_at.map_or(deadline, |p| p.min(deadline));
                tokio::select! {
                    // The sender lives as long as the upstream, which this request holds.
                    _ = changed.changed() => poke = true,
                    // A ring keeps a permit when it comes between the look and the wait.
                    () = timer.held.rung() => poke = false,
                    () = tokio::time::sleep_until(until) => {
                        if page_at.is_some_and(|p| p <= Instant::now())
                            && Instant::now() < deadline
                        {
                            return Err(waiting_page(upstream, w));
                        }
                        return Err(timed_out(table, upstream, w));
                    }
                }
                None
            }
        };
        if let Some((at, guard)) = admitted {
            // Leaving the line rings the next one: the room may be for more than this request
            // (servers ready at once, several requests ended), and it passes it on in turn.
            drop(timer);
            return Ok(Held::Admitted(at, guard));
        }
    }
}

/// The answer to a request held for `start_timeout`: `start-timeout` when it waited for a
/// server to start (none ready, or one still starting), `at-capacity` when every server was up
/// and full the whole time there was left.
fn timed_out(table: &Table, upstream: &Upstream, w: &Waiter<'_>) -> Response<ProxyBody> {
    let cfg = &upstream.config;
    table
        .metrics
        .held_timeouts
        .get_or_create(&Metrics::upstream(upstream.name()))
        .inc();
    let starting = upstream
        .servers
        .iter()
        .any(|s| s.state() == ServerState::Starting);
    if upstream.any_ready() && !starting {
        return answer::unavailable(
            "at-capacity",
            format!(
                "every ready server of upstream {:?} stayed at its limit (max_conns) for {:?} \
                 (start_timeout)",
                cfg.name, cfg.start_timeout
            ),
            retry_after(upstream, w),
        );
    }
    let why = if upstream.any_ready() {
        "its ready servers stayed full while another started"
    } else {
        "has no ready server"
    };
    // Why the start is slow, when rouse knows (its supervisor cannot be reached, say).
    let delayed = upstream
        .start_delay()
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    answer::unavailable(
        "start-timeout",
        format!(
            "upstream {:?} {why} after {:?} (start_timeout){delayed}",
            cfg.name, cfg.start_timeout
        ),
        retry_after(upstream, w),
    )
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
    held: HeldGuard,
    since: Instant,
    out: &'a AtomicU64,
}

impl Drop for HeldTimer<'_> {
    fn drop(&mut self) {
        let us = self.since.elapsed().as_micros() as u64;
        self.out.fetch_add(us, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "hold_tests.rs"]
mod tests;
