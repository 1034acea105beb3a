//! The test backend: an HTTP server built to make a proxy's behaviour observable.
//!
//! It serves HTTP/1.1 (keep-alive, upgrades) and h2c (prior knowledge) on one port. Every
//! response carries `x-backend-id`, so a test can tell which backend answered. Endpoints:
//!
//! | request | response |
//! | --- | --- |
//! | `GET /` | 200, `text/plain` body = id |
//! | `GET /delay/{ms}` | sleeps `ms` (at most 60 000), then as `GET /` |
//! | `POST\|PUT /echo` | the request body streamed back frame by frame (trailers too), same content-type and `Trailer` |
//! | `POST /count` | `{"bytes": N, "checksum": C}` over the streamed body ([`crate::pattern::Checksum`]) |
//! | `GET /bytes/{n}` | `n` bytes of [`crate::pattern`], 64 KiB frames, no content-length (`?length`: with one) |
//! | `GET /drip/{n}?ms={t}` | `n` lines (`line 1`, ...), one every `t` ms, chunked |
//! | `GET /headers` | JSON of the request headers, plus `_method`, `_uri`, `_version` |
//! | any method, `/inspect` or `/inspect/...` | `{"method", "uri", "version", "headers", "body", "body_len", "trailers"}`: the whole request as received (a repeated header's values joined with `, `; the first MiB of the body) |
//! | `GET /status/{code}` | that status (200..=999; anything else is a 400) |
//! | `GET /ws` (WebSocket upgrade) | echoes text and binary messages, answers close |
//! | `GET /stats` | [`Stats`] as JSON |
//! | anything else | 404 |
//!
//! [`BackendConfig::latency`] delays every request but `/stats`. With
//! [`BackendConfig::concurrency`], at most that many requests are served at once, the rest
//! queue inside the backend, as with gunicorn's sync workers; every response then says how long
//! it queued (`x-backend-queued-us`) and how long it spent in the backend in all, from its head
//! arriving to its response head (`x-backend-time-us`). [`BackendConfig::workers`] goes one
//! step further to a gunicorn sync worker: the worker a request gets first reads the request's
//! whole body itself, however slowly it comes (a WSGI app reading `wsgi.input`), and only then
//! answers; [`Stats::max_body_read_us`] says how long the slowest such read held a worker.
//!
//! Malformed parameters get a 400, never a panic.

mod body;
mod routes;
mod server;
mod stats;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use stats::Stats;

/// How long in-flight requests get to finish after a graceful shutdown starts.
pub const GRACE_PERIOD: Duration = Duration::from_secs(5);

/// What a backend is.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Sent as the body of `GET /` and in `x-backend-id` on every response.
    pub id: String,
    /// After this many requests (not counting `/stats`) the backend stops as if it crashed:
    /// the last request is answered, later ones get their connection closed, and
    /// [`Backend::serve`] returns [`ServeOutcome::RequestLimitReached`].
    pub exit_after_requests: Option<u64>,
    /// Added to every request but `/stats` before it is handled, counted as in flight: a
    /// uniformly slow server, for load-aware balancing tests.
    pub latency: Duration,
    /// At most this many requests (not `/stats`) served at once; the rest wait in arrival
    /// order for a worker, like gunicorn with this many sync workers. `None`: no limit.
    pub concurrency: Option<usize>,
    /// With [`BackendConfig::concurrency`]: a request's worker reads its whole body before
    /// anything else is done with it, as a sync worker does.
    pub read_body_first: bool,
}

impl BackendConfig {
    /// A backend with this id, no request limit and no added latency.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            exit_after_requests: None,
            latency: Duration::ZERO,
            concurrency: None,
            read_body_first: false,
        }
    }

    /// `workers` sync workers, as gunicorn's: at most that many requests at once, each
    /// worker reading its request's whole body before answering; the others wait.
    pub fn workers(mut self, workers: usize) -> Self {
        self.concurrency = Some(workers);
        self.read_body_first = true;
        self
    }

    /// Sets [`BackendConfig::concurrency`].
    pub fn concurrency(mut self, workers: usize) -> Self {
        self.concurrency = Some(workers);
        self
    }

    /// Sets [`BackendConfig::exit_after_requests`].
    pub fn exit_after_requests(mut self, n: u64) -> Self {
        self.exit_after_requests = Some(n);
        self
    }

    /// Sets [`BackendConfig::latency`].
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
}

/// Why [`Backend::serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeOutcome {
    /// A shutdown was asked for.
    Shutdown,
    /// [`BackendConfig::exit_after_requests`] was reached.
    RequestLimitReached,
}

/// The id is not usable as a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId(pub String);

impl std::fmt::Display for InvalidId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "backend id {:?} is not a valid header value", self.0)
    }
}

impl std::error::Error for InvalidId {}

/// A backend's shared state. Cheap to clone; clones see the same counters.
#[derive(Debug, Clone)]
pub struct Backend {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    id: String,
    id_header: HeaderValue,
    exit_after_requests: Option<u64>,
    latency: Duration,
    workers: Option<Arc<tokio::sync::Semaphore>>,
    read_body_first: bool,
    counters: stats::Counters,
    // Cancelled when the request limit is reached, to take the server down.
    limit_reached: CancellationToken,
}

impl Backend {
    /// Checks the config.
    pub fn new(config: BackendConfig) -> Result<Self, InvalidId> {
        let id_header =
            HeaderValue::from_str(&config.id).map_err(|_| InvalidId(config.id.clone()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                id: config.id,
                id_header,
                exit_after_requests: config.exit_after_requests,
                latency: config.latency,
                workers: config
                    .concurrency
                    .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
                read_body_first: config.read_body_first,
                counters: stats::Counters::default(),
                limit_reached: CancellationToken::new(),
            }),
        })
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The same numbers `GET /stats` reports, without a request.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Serves connections from `listener` until stopped.
    ///
    /// Cancelling `graceful` (or reaching the request limit) stops accepting, lets in-flight
    /// requests finish for up to [`GRACE_PERIOD`] and closes idle connections. Cancelling
    /// `immediate` drops every connection at once, like a crash. The listener is closed by the
    /// time this returns.
    pub async fn serve(
        &self,
        listener: TcpListener,
        graceful: CancellationToken,
        immediate: CancellationToken,
    ) -> ServeOutcome {
        server::serve(self.clone(), listener, graceful, immediate).await
    }
}
