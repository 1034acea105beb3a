//! Binding a listening socket with an explicit backlog.
//!
//! tokio's `TcpListener::bind` listens with a fixed backlog of 1024, which the kernel may
//! further cut; under a burst of connects the accept queue overflowed (`ListenOverflows` rose
//! and clients waited 1 s for a SYN retransmit). nginx passes 511 on Linux and lets the
//! operator raise it; so does rouse (`listen_backlog`), capped by `net.core.somaxconn` as the
//! kernel would cap it anyway, so that the value logged is the one in force.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use rouse_config::{ListenAddr, ProxyConfig};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::{TcpListener, UnixListener};

const SOMAXCONN: &str = "/proc/sys/net/core/somaxconn";

/// A nonblocking listener on `addr` with SO_REUSEADDR (a restart does not wait for the old
/// process's TIME_WAIT sockets) and a backlog of `backlog`, capped by somaxconn. Must be called
/// inside a tokio runtime.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(effective_backlog(backlog, somaxconn()))?;
    TcpListener::from_std(socket.into())
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `listen`: plain HTTP/1.1 and h2c.
    Plain,
    /// `listen_tls`: HTTPS, HTTP/2 by ALPN.
    Tls,
    /// `redirect_https`: a 308 to `https://` for everything but ACME challenges.
    Redirect,
}

/// One listener as the config asks for it. Its text form (`tcp:127.0.0.1:8080`,
/// `unix:/run/rouse/http.sock`, `tls:0.0.0.0:443`, `redirect:0.0.0.0:80`) names it: a
/// handover of listening sockets between two rouse processes matches them by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spec {
    pub kind: Kind,
    pub addr: ListenAddr,
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, &self.addr) {
            (_, ListenAddr::Unix(path)) => write!(f, "unix:{}", path.display()),
            (Kind::Plain, ListenAddr::Tcp(a)) => write!(f, "tcp:{a}"),
            (Kind::Tls, ListenAddr::Tcp(a)) => write!(f, "tls:{a}"),
            (Kind::Redirect, ListenAddr::Tcp(a)) => write!(f, "redirect:{a}"),
        }
    }
}

impl Spec {
    /// A spec from its text form, as [`fmt::Display`] writes it (a handover names sockets so).
    pub fn parse(text: &str) -> Option<Spec> {
        if let Some(path) = text.strip_prefix("unix:") {
            return Some(Spec {
                kind: Kind::Plain,
                addr: ListenAddr::Unix(path.into()),
            });
        }
        let (kind, addr) = text.split_once(':')?;
        let kind = match kind {
            "tcp" => Kind::Plain,
            "tls" => Kind::Tls,
            "redirect" => Kind::Redirect,
            _ => return None,
        };
        Some(Spec {
            kind,
            addr: ListenAddr::Tcp(addr.parse().ok()?),
        })
    }
}

/// A bound listening socket.
#[derive(Debug)]
pub enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A bound listener with the spec it was bound for.
#[derive(Debug)]
pub struct Listener {
    pub spec: Spec,
    pub socket: Bound,
}

impl Listener {
    /// A plain TCP listener (tests bind port 0 themselves).
    pub fn plain(socket: TcpListener) -> io::Result<Listener> {
        Listener::tcp(Kind::Plain, socket)
    }

    pub fn tcp(kind: Kind, socket: TcpListener) -> io::Result<Listener> {
        Ok(Listener {
            spec: Spec {
                kind,
                addr: ListenAddr::Tcp(socket.local_addr()?),
            },
            socket: Bound::Tcp(socket),
        })
    }

    /// The bound TCP address (the port the kernel chose for port 0); `None` for a unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.socket {
            Bound::Tcp(l) => l.local_addr().ok(),
            Bound::Unix(_) => None,
        }
    }
}

/// Every listener `[proxy]` asks for, in the order `listen`, `listen_tls`, `redirect_https`.
pub fn specs(proxy: &ProxyConfig) -> Vec<Spec> {
    let tcp = |kind, list: &[SocketAddr]| {
        list.iter()
            .map(move |a| Spec {
                kind,
                addr: ListenAddr::Tcp(*a),
            })
            .collect::<Vec<_>>()
    };
    proxy
        .listen
        .iter()
        .map(|addr| Spec {
            kind: Kind::Plain,
            addr: addr.clone(),
        })
        .chain(tcp(Kind::Tls, &proxy.listen_tls))
        .chain(tcp(Kind::Redirect, &proxy.redirect_https))
        .collect()
}

/// Binds one listener with `backlog`. Must be called inside a tokio runtime.
pub fn bind_spec(spec: &Spec, backlog: u32) -> io::Result<Listener> {
    let socket = match &spec.addr {
        ListenAddr::Tcp(addr) => Bound::Tcp(bind(*addr, backlog)?),
        ListenAddr::Unix(path) => Bound::Unix(bind_unix(path, backlog)?),
    };
    Ok(Listener {
        spec: spec.clone(),
        socket,
    })
}

/// Binds every listener of `proxy`, the one place rouse binds them; the error names the
/// listener that failed.
pub fn bind_all(proxy: &ProxyConfig) -> io::Result<Vec<Listener>> {
    specs(proxy)
        .iter()
        .map(|spec| {
            bind_spec(spec, proxy.listen_backlog).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on {}: {e}", spec.addr))
            })
        })
        .collect()
}

/// A unix socket listener on `path`, mode 0666 as nginx makes its own: who may connect is
/// decided by the permissions of the directory it is in. A socket file left by a process that
/// died is removed first, but only once a connect to it is refused: one that answers belongs
/// to a live process (another rouse), and anything that is not a socket is never touched.
pub fn bind_unix(path: &Path, backlog: u32) -> io::Result<UnixListener> {
    remove_stale(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::unix(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    socket.listen(effective_backlog(backlog, somaxconn()))?;
    let listener: std::os::unix::net::UnixListener = socket.into();
    UnixListener::from_std(listener)
}

fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket (left alone)",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process answers on this socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}

fn somaxconn() -> Option<u32> {
    std::fs::read_to_string(SOMAXCONN)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
}

/// What `listen(2)` is given: `requested`, at most somaxconn when known, at least 1, and
/// within the `int` the call takes.
fn effective_backlog(requested: u32, somaxconn: Option<u32>) -> i32 {
    let capped = somaxconn.map_or(requested, |max| requested.min(max)).max(1);
    i32::try_from(capped).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_is_capped_by_somaxconn_and_fits_an_int() {
        assert_eq!(effective_backlog(511, Some(4096)), 511);
        assert_eq!(effective_backlog(8192, Some(4096)), 4096);
        assert_eq!(effective_backlog(u32::MAX, None), i32::MAX);
        assert_eq!(effective_backlog(0, Some(4096)), 1);
    }

    #[tokio::test]
    async fn binds_port_zero_and_accepts() {
        let l = bind("127.0.0.1:0".parse().unwrap(), 511).unwrap();
        let addr = l.local_addr().unwrap();
        let (connected, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        connected.unwrap();
        accepted.unwrap();
    }

    #[tokio::test]
    async fn a_stale_unix_socket_is_replaced_and_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let live = bind_unix(&path, 16).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
        let e = bind_unix(&path, 16).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        drop(live); // the file stays, as after a crash
        assert!(path.exists());
        let l = bind_unix(&path, 16).unwrap();
        let (c, a) = tokio::join!(tokio::net::UnixStream::connect(&path), l.accept());
        c.unwrap();
        a.unwrap();

        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(bind_unix(&file, 16).is_err());
        assert!(
            file.exists(),
            "a file that is not a socket is never removed"
        );
    }

    #[test]
    fn specs_name_each_listener_by_kind() {
        let config = rouse_config::parse(
            "t.toml",
            "[proxy]\nlisten = [\"127.0.0.1:1\", \"unix:/x.sock\"]\nlisten_tls = [\"127.0.0.1:2\"]\n\
             redirect_https = [\"127.0.0.1:3\"]\n[[proxy.tls]]\ncert = \"c\"\nkey = \"k\"\n\
             [[upstream]]\nname = \"a\"\nsupervisor = \"none\"\n[[upstream.server]]\naddress = \"127.0.0.1:9\"\n",
        )
        .unwrap();
        let specs = specs(&config.proxy);
        let names: Vec<String> = specs.iter().map(ToString::to_string).collect();
        let parsed: Vec<Spec> = names.iter().filter_map(|n| Spec::parse(n)).collect();
        assert_eq!(parsed, specs, "the text form reads back");
        assert_eq!(Spec::parse("admin:127.0.0.1:1"), None);
        assert_eq!(
            names,
            [
                "tcp:127.0.0.1:1",
                "unix:/x.sock",
                "tls:127.0.0.1:2",
                "redirect:127.0.0.1:3"
            ]
        );
    }
}
