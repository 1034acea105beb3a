//! One request to a server: admission, holding and retries exactly as `Proxy::forward` does,
//! then the request written on a raw pooled connection (or a new one) and the response head
//! read back.

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::Arc;

use http::{Response, StatusCode};
use rouse_state::{InFlightGuard, Server};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, Sleep};

use super::request::Field;
use super::response::{self, Info};
use crate::answer;
use crate::body::ProxyBody;
use crate::connect::Stream;
use crate::forward::Pick;
use crate::hold::Waiter;
use crate::pool::Pool;
use crate::proxy::{Proxy, RouteUpstream, Routes};

/// The longest response head rouse reads from a server.
const MAX_HEAD: usize = 64 * 1024;

/// A server answering: its connection, the response head at the start of the read buffer.
pub(crate) struct Answering {
    pub stream: Stream,
    pub pool: Arc<Pool>,
    pub guard: InFlightGuard,
    pub info: Info,
}

/// rouse's own answer, and the server it concerns if any.
pub(crate) type Refused = (Response<ProxyBody>, Option<Arc<Server>>);

/// Why reading a response head failed.
pub(crate) enum HeadError {
    /// The connection failed or closed before any byte of a response.
    Nothing(String),
    /// Bytes came, but not a response head rouse can forward.
    Malformed(String),
    TimedOut,
}

impl HeadError {
    /// Why no final answer followed an interim one (100, 103), for the 502 that says so.
    pub(crate) fn after_interim(self) -> String {
        match self {
            HeadError::Nothing(why) | HeadError::Malformed(why) => why,
            HeadError::TimedOut => "no final answer in time".into(),
        }
    }
}

/// Sends `wire` (the whole request) to a server of `up` and reads its response head into
/// `rbuf`, the offsets of its fields into `fields`, within `read_timeout` (on `timer`, see
/// [`read_head`]). `moved` is set when a reload replaced the upstream while the request was
/// held.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send(
    proxy: &Arc<Proxy>,
    routes: &Arc<Routes>,
    up_at: usize,
    wire: &[u8],
    is_head: bool,
    waiter: &Waiter<'_>,
    rbuf: &mut Vec<u8>,
    fields: &mut Vec<Field>,
    moved: &mut Option<(Arc<Routes>, usize)>,
    mut timer: Pin<&mut Sleep>,
) -> Result<Answering, Refused> {
    let settings = &proxy.settings;
    let mut tried: Vec<usize> = Vec::new();
    let mut waited = false;
    'servers: loop {
        let up: &RouteUpstream = match moved {
            Some((routes, at)) => &routes.upstreams[*at],
            None => &routes.upstreams[up_at],
        };
        let (at, guard) = match proxy
            .pick(&routes.table, up, &mut tried, &mut waited, waiter)
            .await
        {
            Ok(Pick::Server(at, guard)) => (at, guard),
            Ok(Pick::Moved(routes, at)) => {
                *moved = Some((routes, at));
                continue 'servers;
            }
            Err(resp) => return Err((resp, None)),
        };
        // Borrowed from the guard, cloned only for an answer of rouse's own: an `Arc` clone
        // and its drop are two locked operations a request.
        let server = guard.server();
        let pool = Arc::clone(&up.pools[at]);
        let mut pooled_allowed = true;
        loop {
            // The instant the request was ready serves as now, unless it was held or another
            // server's connect timed out since.
            let mut now = if waited || !tried.is_empty() {
                Instant::now()
            } else {
                waiter.arrived
            };
            let pooled = if pooled_allowed {
                pool.raw_checkout(now)
            } else {
                None
            };
            let is_pooled = pooled.is_some();
            let mut stream = match pooled {
                Some(s) => s,
                // Boxed: a new connection is the rare path (see `forward::pick`'s hold).
                None => match Box::pin(pool.connect_raw(settings.connect_timeout)).await {
                    Ok(s) => {
                        now = Instant::now();
                        s
                    }
                    Err(e) => {
                        proxy.note_failure(up, server, &e.to_string());
                        tried.push(at);
                        continue 'servers;
                    }
                },
            };
            rbuf.clear();
            let sent = stream.write_all(wire).await;
            let got = match sent {
                Ok(()) => {
                    // From the instant the request was ready to go (a clock read saved):
                    // the write just done (a head and at most 64 KiB of body, which the
                    // server's socket takes at once unless it stopped reading) counts too,
                    // so a server that reads nothing is bounded by it as well.
                    let deadline = rouse_core::time::deadline(now, settings.read_timeout);
                    read_head(&mut stream, rbuf, fields, is_head, timer.as_mut(), deadline).await
                }
                Err(e) => Err(HeadError::Nothing(e.to_string())),
            };
            match got {
                Ok(info) => {
                    server.record_success();
                    return Ok(Answering {
                        stream,
                        pool,
                        guard,
                        info,
                    });
                }
                // A pooled connection the server closed while idle (or just then): a fresh
                // one before blaming the server.
                Err(HeadError::Nothing(_)) if is_pooled => {
                    pooled_allowed = false;
                    continue;
                }
                Err(HeadError::Nothing(why)) | Err(HeadError::Malformed(why)) => {
                    let resp = answer::server_failed(server.address(), up.state.name(), why);
                    return Err((resp, Some(Arc::clone(server))));
                }
                Err(HeadError::TimedOut) => {
                    let msg = format!(
                        "server {} of upstream {:?} did not answer within {:?}",
                        server.address(),
                        up.state.name(),
                        settings.read_timeout
                    );
                    tracing::warn!("{msg}");
                    let resp = answer::error(StatusCode::GATEWAY_TIMEOUT, "read-timeout", msg);
                    return Err((resp, Some(Arc::clone(server))));
                }
            }
        }
    }
}

/// Reads one response head into `rbuf` (which may already hold its start) by `deadline`, on
/// the client connection's own `timer` (see `h1::timer`); its fields' offsets into `fields`.
pub(crate) async fn read_head(
    stream: &mut Stream,
    rbuf: &mut Vec<u8>,
    fields: &mut Vec<Field>,
    is_head: bool,
    timer: Pin<&mut Sleep>,
    deadline: Instant,
) -> Result<Info, HeadError> {
    let reading = async {
        loop {
            if !rbuf.is_empty() {
                match response::parse(rbuf, is_head, fields) {
                    Ok(Some(info)) => return Ok(info),
                    Ok(None) if rbuf.len() >= MAX_HEAD => {
                        return Err(HeadError::Malformed(format!(
                            "a response head over {MAX_HEAD} bytes"
                        )));
                    }
                    Ok(None) => {}
                    Err(e) => return Err(HeadError::Malformed(e.to_string())),
                }
            }
            if rbuf.capacity() - rbuf.len() < 4096 {
                rbuf.reserve(16 * 1024);
            }
            match poll_fn(|cx| stream.poll_recv(cx, rbuf)).await {
                Ok(0) if rbuf.is_empty() => {
                    return Err(HeadError::Nothing(
                        "the server closed the connection".into(),
                    ));
                }
                Ok(0) => {
                    return Err(HeadError::Malformed(
                        "the server closed the connection within a response head".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) if rbuf.is_empty() => return Err(HeadError::Nothing(e.to_string())),
                Err(e) => return Err(HeadError::Malformed(e.to_string())),
            }
        }
    };
    super::timer::within(timer, deadline, pin!(reading), || Err(HeadError::TimedOut)).await
}
