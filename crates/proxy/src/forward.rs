//! Handling one client request: route, choose a server, send, retry what can be retried.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use std::sync::atomic::Ordering;

use rouse_config::ServerAddress;
use rouse_state::metrics::RequestLabels;
use rouse_state::{Admission, InFlightGuard, Server, Table, Upstream};
use tokio::time::{Instant, timeout};

use crate::access::{Captured, Entry, Seen};
use crate::answer;
use crate::body::{Completion, Ending, ProxyBody, UpstreamBody};
use crate::buffer::{self, Limits};
use crate::client_body::ClientBody;
use crate::h1::relay::Forwarding;
use crate::h1::request::Head;
use crate::headers::{self, Https};
use crate::hold::{Held, RELOADED, Waiter, admit, hold};
use crate::limits;
use crate::proxy::{Proxy, RouteUpstream, Routes};
use crate::request_body::{RequestBody, Sent};

/// A request as the access log and the metrics see it once answered.
pub(crate) struct Done<'a> {
    pub started: Instant,
    pub status: u16,
    pub client: std::net::IpAddr,
    pub held_us: u64,
    /// When the request was ready for a server (its body in): the upstream time counts from
    /// it, less the time held.
    pub arrived: Instant,
    /// The response body's length, when known from its head.
    pub sent: Option<u64>,
    pub request_id: &'a [u8],
    /// The request, for the access log.
    pub seen: Seen<'a>,
}

/// From when the request was ready for a server (its time held excluded) to now: the
/// access log's `upstream_ms`, taken when the answer's head is in.
pub(crate) fn upstream_us(done: &Done<'_>) -> u64 {
    (done.arrived.elapsed().as_micros() as u64).saturating_sub(done.held_us)
}

/// Where [`Proxy::pick`] sends a request.
pub(crate) enum Pick {
    /// This server of the upstream, with its in-flight slot.
    Server(usize, InFlightGuard),
    /// A reload replaced the upstream while the request was held: its successor's route.
    Moved(Arc<Routes>, usize),
}

impl Proxy {
    /// Answers one client request. Never fails: every problem becomes a response saying why.
    pub async fn handle(
        self: &Arc<Self>,
        mut req: Request<ClientBody>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        if let Err(e) = limits::check_head(&req, &self.settings.head) {
            return self.unrouted(&req, client, started, e.answer());
        }
        if !self.settings.head.underscores_in_headers {
            headers::drop_underscored(req.headers_mut());
        }
        if req.method() == http::Method::GET
            && let Some(answer) = self.challenges.answer(req.uri().path())
        {
            return self.unrouted(&req, client, started, answer::acme_challenge(answer));
        }
        let authority = match headers::request_authority(&req) {
            Ok(a) => a.to_owned(),
            Err(e) => {
                let resp = answer::error(StatusCode::BAD_REQUEST, "bad-request", format!("{e}"));
                return self.unrouted(&req, client, started, resp);
            }
        };
        let host = headers::host_of(&authority);
        let routes = self.routes.load_full();
        let Some(up_at) = routes.router.route(&host, req.uri().path()) else {
            let resp = answer::error(
                StatusCode::NOT_FOUND,
                "no-route",
                format!(
                    "no upstream for host {host:?} and path {:?}",
                    req.uri().path()
                ),
            );
            return self.unrouted(&req, client, started, resp);
        };
        let up = &routes.upstreams[up_at];

        // HTTP/2 has no Upgrade; a stray header there is simply dropped with the others.
        let upgrade = req.version() < Version::HTTP_2 && headers::wants_upgrade(req.headers());
        let protocol = up.state.config.protocol;
        if upgrade && protocol.is_http2() {
            return answer::error(
                StatusCode::NOT_IMPLEMENTED,
                "upgrade-unsupported",
                format!(
                    "upstream {:?} speaks {} to its servers, which has no Upgrade: a WebSocket \
                     needs protocol = \"http1\"",
                    up.state.name(),
                    protocol.name()
                ),
            );
        }
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let request_id = headers::request_id(req.headers());
        let captured = self
            .settings
            .access_log
            .as_ref()
            .map(|_| Captured::of(&req, &authority));
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let mut waiter = Waiter::new(&method, &path, req.headers(), started);
        let limits = Limits::of(&up.state.config, &self.settings.temp_dir).for_request(&req);

        let (resp, server) = match self.read_body(req, limits, upgrade).await {
            Ok((mut req, sent)) => {
                // The request is for a server once its body is in (request_buffering):
                // holding it for a start counts from then.
                waiter.arrived = Instant::now();
                if protocol == rouse_config::Protocol::Http1
                    && !upgrade
                    && http_body::Body::is_end_stream(req.body())
                {
                    let to = Forwarding {
                        authority: &authority,
                        client_ip: client.ip(),
                        https: req.extensions().get::<Https>().is_some(),
                        request_id: request_id.as_bytes(),
                    };
                    self.relay(&routes, up_at, req, to, &waiter).await
                } else {
                    let te_trailers = headers::accepts_trailers(req.headers());
                    headers::to_upstream(&mut req, &authority, client.ip(), upgrade);
                    headers::set_request_id(req.headers_mut(), request_id.clone());
                    if protocol.is_http2() {
                        // HTTP/1.0 without Host: the server's own address is the best authority.
                        let authority = match (authority.as_str(), up.state.servers.first()) {
                            ("", Some(s)) => s.address().to_string(),
                            (a, _) => a.to_owned(),
                        };
                        let scheme = if protocol == rouse_config::Protocol::H2 {
                            "https"
                        } else {
                            "http"
                        };
                        headers::to_http2(&mut req, scheme, &authority, te_trailers);
                    } else {
                        headers::keep_unsized_body(&mut req);
                    }
                    // Boxed: hyper's client is now for requests with a body, upgrades and
                    // HTTP/2 servers; inline, its state would make every request's future
                    // (boxed per HTTP/2 stream) 800 bytes larger to allocate and copy.
                    Box::pin(self.forward(&routes.table, up, req, sent, client_upgrade, &waiter))
                        .await
                }
            }
            Err(resp) => (resp, None),
        };
        let held_us = waiter.held_us.load(Ordering::Relaxed);
        let status = resp.status().as_u16();
        if status >= 400 {
            answer::count_error(&routes.table.metrics, up.state.name(), &resp);
        }
        let done = Done {
            started,
            status,
            client: client.ip(),
            held_us,
            arrived: waiter.arrived,
            sent: http_body::Body::size_hint(resp.body()).exact(),
            request_id: request_id.as_bytes(),
            seen: Seen::Hyper(captured.as_ref()),
        };
        self.count(&routes.table, up, server.as_ref(), &done, Instant::now());
        if !self.logs(status) {
            return resp;
        }
        let upstream_us = server.as_ref().map(|_| upstream_us(&done));
        let arrived = done.arrived;
        if let ProxyBody::Local { .. } = resp.body() {
            // Rouse's own answer: whole already.
            self.log_whole(up, server.as_ref(), &done);
            return resp;
        }
        // A streamed body: its line is written when hyper is done with it (see `Ending`).
        let ending = Ending {
            proxy: Arc::clone(self),
            captured,
            request_id,
            upstream: up.state.name().to_owned(),
            server,
            client: client.ip(),
            status,
            held_us,
            upstream_us,
            started,
            arrived,
            sent: 0,
        };
        resp.map(|body| ProxyBody::logged(body, ending))
    }

    /// Rouse's own answer to a request no upstream serves (a head past the limits, no usable
    /// Host, no route, an ACME challenge), logged as nginx logs every request: with no
    /// upstream and no server. Not counted: the request metrics are per upstream.
    pub(crate) fn unrouted<B: http_body::Body>(
        &self,
        req: &Request<B>,
        client: SocketAddr,
        started: Instant,
        resp: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        let status = resp.status().as_u16();
        if !self.logs(status) {
            return resp;
        }
        let host = headers::request_authority(req).unwrap_or("");
        let captured = Captured::of(req, host);
        let request_id = headers::request_id(req.headers());
        let seen = Seen::Hyper(Some(&captured));
        let sent = http_body::Body::size_hint(resp.body()).exact();
        self.log_unrouted(client, started, status, sent, request_id.as_bytes(), seen);
        resp
    }

    /// As [`Proxy::unrouted`], for a head the fast path refused (`h1::request`: `head` holds
    /// its request line only).
    pub(crate) fn refused_head(
        &self,
        head: &Head,
        buf: &[u8],
        client: SocketAddr,
        started: Instant,
        resp: &Response<ProxyBody>,
    ) {
        let status = resp.status().as_u16();
        if self.logs(status) {
            let made = crate::access::request_id::generate();
            let seen = Seen::H1 { head, buf };
            let sent = http_body::Body::size_hint(resp.body()).exact();
            self.log_unrouted(client, started, status, sent, made.as_bytes(), seen);
        }
    }

    /// The line of an answer hyper wrote itself to a head it could not take (see
    /// `connection::hyper_answer`): hyper shows none of that request, and its answer has no
    /// body.
    pub(crate) fn refused_by_hyper(&self, client: SocketAddr, status: StatusCode) {
        let status = status.as_u16();
        if self.logs(status) {
            let made = crate::access::request_id::generate();
            let (now, seen) = (Instant::now(), Seen::Hyper(None));
            self.log_unrouted(client, now, status, Some(0), made.as_bytes(), seen);
        }
    }

    /// The access-log line of an answer no upstream gave: no upstream, no server.
    fn log_unrouted(
        &self,
        client: SocketAddr,
        started: Instant,
        status: u16,
        sent: Option<u64>,
        request_id: &[u8],
        seen: Seen<'_>,
    ) {
        let done = Done {
            started,
            status,
            client: client.ip(),
            held_us: 0,
            arrived: started,
            sent,
            request_id,
            seen,
        };
        self.log_line(None, None, &done, done.sent, None);
    }

    /// Counts a finished request (metrics) and logs it (access log): for answers whose body
    /// is whole when their head goes out.
    pub(crate) fn account(
        &self,
        table: &Table,
        up: &RouteUpstream,
        server: Option<&Arc<Server>>,
        done: Done<'_>,
    ) {
        self.count(table, up, server, &done, Instant::now());
        if self.logs(done.status) {
            self.log_whole(up, server, &done);
        }
    }

    /// The access-log line of an answer whose body was whole with its head.
    fn log_whole(&self, up: &RouteUpstream, server: Option<&Arc<Server>>, done: &Done<'_>) {
        let upstream_us = server.map(|_| upstream_us(done));
        let address = server.map(|s| s.address());
        self.log_line(Some(up.state.name()), address, done, done.sent, upstream_us);
    }

    /// The metrics of an answer whose head is on its way (`now`): its duration is to the
    /// head, as nginx's `$upstream_header_time` (the access log's `ms` is to the body's end).
    pub(crate) fn count(
        &self,
        table: &Table,
        up: &RouteUpstream,
        server: Option<&Arc<Server>>,
        done: &Done<'_>,
        now: Instant,
    ) {
        let elapsed = now.saturating_duration_since(done.started);
        let metrics = &table.metrics;
        up.state.observe_duration(elapsed, metrics);
        let status = done.status;
        match server {
            Some(s) => s.count_response(status, up.state.name(), metrics),
            None => {
                metrics
                    .requests
                    .get_or_create(&RequestLabels {
                        upstream: up.state.name().to_owned(),
                        server: String::new(),
                        code: status,
                    })
                    .inc();
            }
        }
    }

    /// Whether the access log writes a line for an answer with this status (a sample draws
    /// here, so ask once per answer).
    pub(crate) fn logs(&self, status: u16) -> bool {
        self.settings
            .access_log
            .as_ref()
            .is_some_and(|log| log.wants(status))
    }

    /// Writes `done`'s access-log line now that `sent` bytes of its body went out: the total
    /// time is from the request's head to now.
    pub(crate) fn log_line(
        &self,
        upstream: Option<&str>,
        server: Option<&ServerAddress>,
        done: &Done<'_>,
        sent: Option<u64>,
        upstream_us: Option<u64>,
    ) {
        let Some(log) = &self.settings.access_log else {
            return;
        };
        let parts = done.seen.parts();
        log.log(&Entry {
            client: done.client,
            method: parts.method,
            target: parts.target,
            version: parts.version,
            host: parts.host,
            status: done.status,
            sent,
            received: parts.received,
            referer: parts.referer,
            user_agent: parts.user_agent,
            upstream,
            server,
            held_us: done.held_us,
            upstream_us,
            total_us: done.started.elapsed().as_micros() as u64,
            request_id: done.request_id,
        });
    }

    async fn forward(
        self: &Arc<Self>,
        table: &Table,
        up: &RouteUpstream,
        mut req: Request<RequestBody>,
        sent: Arc<Sent>,
        mut client_upgrade: Option<OnUpgrade>,
        waiter: &Waiter<'_>,
    ) -> (Response<ProxyBody>, Option<Arc<Server>>) {
        let settings = &self.settings;
        let grpc = buffer::is_grpc(req.headers());
        // Servers that refused a connection for this request. Nothing was sent to them, so the
        // request (body untouched) can go to each other server in turn.
        let mut tried: Vec<usize> = Vec::new();
        // Set when a reload replaced the upstream while the request was held for it.
        let mut moved: Option<(Arc<Routes>, usize)> = None;
        // Held once already: it has had its turn in the queue.
        let mut waited = false;
        'servers: loop {
            let up = match &moved {
                Some((routes, at)) => &routes.upstreams[*at],
                None => up,
            };
            let (at, guard) = match self.pick(table, up, &mut tried, &mut waited, waiter).await {
                Ok(Pick::Server(at, guard)) => (at, guard),
                Ok(Pick::Moved(routes, at)) => {
                    moved = Some((routes, at));
                    continue 'servers;
                }
                Err(resp) => return (resp, None),
            };
            let now = Instant::now();
            let server = Arc::clone(guard.server());
            let pool = &up.pools[at];
            let mut pooled_allowed = true;
            loop {
                let pooled = if pooled_allowed {
                    pool.checkout(now)
                } else {
                    None
                };
                let is_pooled = pooled.is_some();
                let mut sender = match pooled {
                    Some(s) => s,
                    None => match pool.connect(settings.connect_timeout).await {
                        Ok(s) => s,
                        Err(e) => {
                            self.note_failure(up, &server, &e.to_string());
                            tried.push(at);
                            continue 'servers;
                        }
                    },
                };
                // An idle pooled connection is almost always ready: checking first spares the
                // hot path a timer per request.
                if is_pooled
                    && !sender.is_ready()
                    && !matches!(
                        timeout(settings.connect_timeout, sender.ready()).await,
                        Ok(Ok(()))
                    )
                {
                    continue;
                }
                let answer_late = async {
                    sent.wait().await;
                    tokio::time::sleep(settings.read_timeout).await;
                };
                let outcome = tokio::select! {
                    r = sender.try_send_request(req) => Ok(r),
                    _ = answer_late => Err(()),
                };
                match outcome {
                    Err(()) => {
                        let msg = format!(
                            "server {} of upstream {:?} did not answer within {:?}",
                            server.address(),
                            up.state.name(),
                            settings.read_timeout
                        );
                        tracing::warn!("{msg}");
                        return (
                            answer::error(StatusCode::GATEWAY_TIMEOUT, "read-timeout", msg),
                            Some(Arc::clone(&server)),
                        );
                    }
                    Ok(Ok(resp)) => {
                        server.record_success();
                        let done = Completion {
                            guard,
                            reuse: Some((sender, Arc::clone(pool))),
                        };
                        let mut limits = Limits::of(&up.state.config, &settings.temp_dir);
                        if grpc {
                            limits = limits.streaming();
                        }
                        let resp = self.respond(resp, done, client_upgrade.take(), limits);
                        return (resp, Some(Arc::clone(&server)));
                    }
                    Ok(Err(mut e)) => match e.take_message() {
                        Some(back) => {
                            // Nothing was written: a pooled connection the server had closed
                            // while idle. Try a fresh one before blaming the server.
                            req = back;
                            if is_pooled {
                                pooled_allowed = false;
                                continue;
                            }
                            self.note_failure(up, &server, &e.error().to_string());
                            tried.push(at);
                            continue 'servers;
                        }
                        None if sent.too_large() => {
                            let limit = Limits::of(&up.state.config, &settings.temp_dir);
                            return (
                                buffer::request::too_large(limit.max_request_body),
                                Some(Arc::clone(&server)),
                            );
                        }
                        None if sent.client_went_quiet() => {
                            let msg = format!(
                                "the request body stopped arriving for {:?} (client_body_timeout)",
                                settings.client_body_timeout
                            );
                            return (
                                answer::error(
                                    StatusCode::REQUEST_TIMEOUT,
                                    "client-body-timeout",
                                    msg,
                                ),
                                Some(Arc::clone(&server)),
                            );
                        }
                        None if sent.client_failed() => {
                            let msg = format!(
                                "the request body was malformed or cut short: {}",
                                answer::error_chain(e.error())
                            );
                            tracing::info!(upstream = up.state.name(), "{msg}");
                            let resp = answer::error(StatusCode::BAD_REQUEST, "bad-request", msg);
                            return (resp, Some(Arc::clone(&server)));
                        }
                        None => {
                            let resp =
                                answer::server_failed(server.address(), up.state.name(), e.error());
                            return (resp, Some(Arc::clone(&server)));
                        }
                    },
                }
            }
        }
    }

    /// The server a request goes to next, on both paths (hyper's and the fast path): one
    /// admitted at once, or, when all are full (or, supervised, cold, or every one refused
    /// before anything was sent: a crash the control plane has not seen yet), one the request
    /// is held for within start_timeout; or the upstream that replaced `up` in a reload while
    /// it was held. `tried` (servers that refused a connection) is cleared once it was held;
    /// `waited` says it has had its turn in the queue.
    pub(crate) async fn pick(
        &self,
        table: &Table,
        up: &RouteUpstream,
        tried: &mut Vec<usize>,
        waited: &mut bool,
        waiter: &Waiter<'_>,
    ) -> Result<Pick, Response<ProxyBody>> {
        // Requests already held go first: a newcomer queues behind them instead of taking
        // the room they are being woken for.
        let behind = !*waited && tried.is_empty() && up.state.held() > 0;
        let admission = if behind {
            Admission::Full
        } else {
            // The instant the request was ready serves as now (a clock read less per
            // request), unless it was held or a server refused it since.
            let now = if *waited || !tried.is_empty() {
                Instant::now()
            } else {
                waiter.arrived
            };
            admit(&up.state, now, tried)
        };
        match admission {
            Admission::Admitted(at, guard) => Ok(Pick::Server(at, guard)),
            Admission::NoServer if up.state.is_static() => Err(self.no_server(up, tried)),
            Admission::Full | Admission::NoServer => {
                *waited = true;
                // Boxed: holding is the rare path, and its state inline would make every
                // request's future (boxed per request on the fast path) that much larger.
                match Box::pin(hold(table, &up.state, waiter)).await? {
                    Held::Admitted(at, guard) => {
                        tried.clear();
                        Ok(Pick::Server(at, guard))
                    }
                    Held::Replaced => match self.successor(&up.state) {
                        Some((routes, at)) => {
                            tried.clear();
                            Ok(Pick::Moved(routes, at))
                        }
                        None => {
                            let msg = format!(
                                "upstream {:?} was removed by a reload while this request waited",
                                up.state.name()
                            );
                            Err(answer::unavailable("reloaded", msg, RELOADED))
                        }
                    },
                }
            }
        }
    }

    /// The current route to the upstream that replaced `old` in a reload, if there is one.
    pub(crate) fn successor(&self, old: &Upstream) -> Option<(Arc<Routes>, usize)> {
        let routes = self.routes.load_full();
        let at = routes
            .upstreams
            .iter()
            .position(|u| u.state.name() == old.name() && !std::ptr::eq(&*u.state, old))?;
        Some((routes, at))
    }

    pub(crate) fn note_failure(&self, up: &RouteUpstream, server: &Server, why: &str) {
        let until = server.record_failure(Instant::now(), &up.state.backoff);
        tracing::warn!(
            upstream = up.state.name(),
            server = %server.address(),
            left_out_for_ms = until.saturating_duration_since(Instant::now()).as_millis() as u64,
            "server unreachable: {why}"
        );
    }

    pub(crate) fn no_server(&self, up: &RouteUpstream, tried: &[usize]) -> Response<ProxyBody> {
        if tried.is_empty() {
            // Nothing ready and nothing to try: servers are stopped or starting. Waking them is
            // the lifecycle's job; until it exists for this upstream, say so.
            return answer::unavailable(
                "no-ready-server",
                format!("upstream {:?} has no ready server", up.state.name()),
                up.state
                    .config
                    .start_timeout
                    .min(std::time::Duration::from_secs(5)),
            );
        }
        answer::error(
            StatusCode::BAD_GATEWAY,
            "unreachable",
            format!(
                "no server of upstream {:?} could be reached (tried {})",
                up.state.name(),
                tried.len()
            ),
        )
    }

    fn respond(
        self: &Arc<Self>,
        resp: Response<Incoming>,
        done: Completion,
        client_upgrade: Option<OnUpgrade>,
        limits: Limits<'_>,
    ) -> Response<ProxyBody> {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client) = client_upgrade else {
                let mut done = done;
                done.reuse = None;
                done.finish();
                return answer::unasked_switch();
            };
            return self.splice_upgrade(resp, done, client);
        }
        let (mut parts, body) = resp.into_parts();
        // RFC 9112 §6.3: Transfer-Encoding frames the body and its Content-Length is void; kept,
        // it would tell the client a length the decoded body does not have.
        if parts.headers.contains_key(http::header::TRANSFER_ENCODING) {
            parts.headers.remove(http::header::CONTENT_LENGTH);
        }
        headers::strip_hop_by_hop(&mut parts.headers, false);
        self.stream(parts, UpstreamBody::Hyper(body), done, limits)
    }

    /// A server's answer, its head's framing and hop-by-hop fields out (hyper frames the body
    /// again), as the client gets it: the body streamed or, when `limits` want it, read ahead
    /// by a pump.
    pub(crate) fn stream(
        &self,
        parts: http::response::Parts,
        body: UpstreamBody,
        done: Completion,
        limits: Limits<'_>,
    ) -> Response<ProxyBody> {
        let read_timeout = self.settings.read_timeout;
        let body = if buffer::response::wanted(&body, limits) {
            buffer::response::buffered(body, done, read_timeout, limits)
        } else {
            ProxyBody::upstream(body, done, read_timeout)
        };
        Response::from_parts(parts, body)
    }
}
