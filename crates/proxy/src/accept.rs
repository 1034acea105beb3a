//! Accepting client connections, and closing at once those past `max_connections`.
//!
//! The accept loops run on a thread and a runtime of their own. On the serving runtime, the
//! accept task waits its turn behind every connection task it has just spawned, so under a
//! burst of thousands of connects the listen queue filled faster than it was drained and
//! connects stalled a second for the SYN retransmission (bench/reliability.sh, part b: 2848 to
//! 3668 of 5000 stalled, against nginx's 1420 to 2252). A thread that does nothing but accept
//! is woken by the kernel as soon as a connection is queued and drains the queue at once; each
//! connection then moves to the serving runtime. It is accepted with `accept4` alone, never
//! registered with the acceptor's reactor: tokio's `accept` registers it there, and moving
//! it deregisters it (two epoll_ctl calls per connection, a seventh of the system calls of a
//! one-request connection). With [`Workers`], each connection goes to the data-plane
//! runtime with the fewest live tasks; without, to the runtime `serve` runs on.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{self, SocketFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::connection::{Accepted, Clients, UNIX_PEER};
use crate::listen::{Bound, Kind, Listener};
use crate::workers::Workers;

/// How long a refused connection waits before the next one is logged: under a flood, one line
/// per connection would bury everything else.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Where accepted connections are served.
#[derive(Clone)]
enum Serving {
    /// The runtime `serve` was called on.
    Caller(tokio::runtime::Handle),
    Workers(Arc<Workers>),
}

impl Serving {
    fn pick(&self) -> &tokio::runtime::Handle {
        match self {
            Serving::Caller(h) => h,
            Serving::Workers(w) => w.pick(),
        }
    }
}

/// A listener taken off one runtime's reactor, to be registered with another's.
enum Detached {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// A listener registered with the acceptor's runtime (for readiness only: see `accept`).
enum Registered {
    Tcp(AsyncFd<std::net::TcpListener>),
    Unix(AsyncFd<std::os::unix::net::UnixListener>),
}

impl Detached {
    fn of(bound: Bound) -> std::io::Result<Detached> {
        Ok(match bound {
            Bound::Tcp(l) => Detached::Tcp(l.into_std()?),
            Bound::Unix(l) => Detached::Unix(l.into_std()?),
        })
    }

    // tokio deprecated these constructors as unsound for types whose descriptor may change
    // or close while registered (a bare `RawFd`); a std listener owns its descriptor for
    // life, the condition its `unsafe` successor asks of callers. tokio's own listeners have
    // no way to accept without registering the connection (see `accept`).
    #[allow(deprecated)]
    fn register(self) -> std::io::Result<Registered> {
        Ok(match self {
            Detached::Tcp(l) => Registered::Tcp(AsyncFd::with_interest(l, Interest::READABLE)?),
            Detached::Unix(l) => Registered::Unix(AsyncFd::with_interest(l, Interest::READABLE)?),
        })
    }
}

/// What `accept4` gives every connection: the serving runtime's reactor needs it
/// non-blocking, and no child process may inherit it.
const ACCEPTED: SocketFlags = SocketFlags::NONBLOCK.union(SocketFlags::CLOEXEC);

impl Registered {
    /// The next connection, for the serving runtime, which registers it with its reactor.
    async fn accept(&self) -> io::Result<(Accepted, SocketAddr)> {
        match self {
            Registered::Tcp(l) => {
                let (fd, addr) = when_ready(l, |l| net::acceptfrom_with(l, ACCEPTED)).await?;
                // A TCP listener's peer is an IP address.
                let peer = addr
                    .and_then(|a| SocketAddr::try_from(a).ok())
                    .ok_or_else(|| io::Error::other("accept gave no IP peer address"))?;
                Ok((Accepted::Tcp(std::net::TcpStream::from(fd), peer), peer))
            }
            Registered::Unix(l) => {
                let fd = when_ready(l, |l| net::accept_with(l, ACCEPTED)).await?;
                let stream = std::os::unix::net::UnixStream::from(fd);
                Ok((Accepted::Unix(stream), UNIX_PEER))
            }
        }
    }
}

/// `accept` on `l` once it is readable, as often as it would block.
async fn when_ready<L: AsFd + AsRawFd, T>(
    l: &AsyncFd<L>,
    accept: impl Fn(&L) -> rustix::io::Result<T>,
) -> io::Result<T> {
    loop {
        let mut ready = l.readable().await?;
        if let Ok(accepted) = ready.try_io(|l| Ok(accept(l.get_ref())?)) {
            return accepted;
        }
    }
}

/// Starts accepting on `listeners` on a thread of its own; the returned receiver completes
/// when every loop has ended (after `clients.stop`). Connections are served on `workers`, or
/// on the current runtime without.
pub(crate) fn spawn_acceptor(
    listeners: Vec<Listener>,
    clients: Arc<Clients>,
    workers: Option<Arc<Workers>>,
) -> tokio::sync::oneshot::Receiver<()> {
    let serving = match workers {
        Some(w) => Serving::Workers(w),
        None => Serving::Caller(tokio::runtime::Handle::current()),
    };
    let (done, finished) = tokio::sync::oneshot::channel();
    // Taken off this runtime's reactor here, registered with the acceptor's there.
    let listeners: Vec<(Kind, String, Detached)> = listeners
        .into_iter()
        .filter_map(|l| {
            let spec = l.spec.to_string();
            match Detached::of(l.socket) {
                Ok(d) => Some((l.spec.kind, spec, d)),
                Err(e) => {
                    tracing::error!(error = %e, listener = spec, "cannot move a listener to the acceptor thread");
                    None
                }
            }
        })
        .collect();
    let spawned = std::thread::Builder::new()
        .name("rouse-accept".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the acceptor's runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let mut loops = Vec::new();
                for (kind, spec, listener) in listeners {
                    match listener.register() {
                        Ok(listener) => loops.push(tokio::spawn(accept_loop(
                            listener,
                            kind,
                            Arc::clone(&clients),
                            serving.clone(),
                        ))),
                        Err(e) => {
                            tracing::error!(error = %e, listener = spec, "cannot register a listener")
                        }
                    }
                }
                for l in loops {
                    let _ = l.await;
                }
            });
            let _ = done.send(());
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the acceptor thread");
    }
    finished
}

/// Accepts on `listener` until `clients.stop`; past `max_connections`, closes at once.
async fn accept_loop(listener: Registered, kind: Kind, clients: Arc<Clients>, serving: Serving) {
    let mut last_refusal_logged: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            () = clients.stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning; accepted sockets still
                    // get served and will free descriptors.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match clients.limit.admit() {
            Some(slot) => clients.spawn(serving.pick(), stream, kind, slot),
            None => {
                drop(stream);
                let now = Instant::now();
                if last_refusal_logged.is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_EVERY)
                {
                    last_refusal_logged = Some(now);
                    tracing::warn!(
                        client = %peer,
                        max_connections = clients.proxy.settings.max_connections,
                        "too many client connections; closing new ones \
                         (rouse_connections_refused_total counts them)"
                    );
                }
            }
        }
    }
}
