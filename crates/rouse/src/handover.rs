//! The wire between an old rouse and the new one it starts for `rouse upgrade`: a unix
//! `SOCK_SEQPACKET` connection carrying JSON messages, each with its file descriptors attached
//! (`SCM_RIGHTS`).
//!
//! # Why a socket, and not inheritance as nginx does
//! nginx's master clears `FD_CLOEXEC` on its listeners and execs the new binary, which finds
//! them by number in an environment variable. rouse is multi-threaded and spawns its embedded
//! children from any thread at any time: a descriptor made inheritable for one exec would leak
//! into a backend spawned in the same instant (which would then hold the listening socket open
//! for ever), and closing that race needs code between fork and exec (`pre_exec`), which is
//! unsafe. Turning a descriptor number back into a socket is unsafe too. Passing descriptors
//! over a unix socket, as haproxy and envoy do, needs neither: the new process is spawned
//! with nothing but stdio and `ROUSE_UPGRADE_SOCKET`, connects, and receives owned
//! descriptors (rustix's safe `recvmsg`). The same connection carries the new process's
//! answers (prepared, ready, failed), and its end of file tells the old one that the new one
//! died. `SOCK_SEQPACKET` keeps each message whole, with its descriptors.
//!
//! Every listening socket goes by the name it was configured with (its *spec*):
//! `tcp:127.0.0.1:8080` for a `[proxy] listen` address, `admin:127.0.0.1:9900` for the admin
//! API; other kinds of listener add their own prefix. The new process uses the inherited
//! socket of a spec when there is one, and binds otherwise ([`Inherited`]); what it does not
//! use is closed, so a listener removed from the config goes away with the old process.
//!
//! A listener with a file of its own (a unix socket's path) must not be unlinked by the old
//! process once it has handed over: `Rouse::handed_over()` says so.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType, sockopt,
};
use serde::{Deserialize, Serialize};

/// The variable that tells a new rouse where to fetch its predecessor's sockets.
pub const ENV_SOCKET: &str = "ROUSE_UPGRADE_SOCKET";

/// Largest message: a few hundred listeners and children fit many times over.
const MAX_MESSAGE: usize = 256 * 1024;
/// Most descriptors one message carries (the kernel's own limit is 253).
pub const MAX_FDS: usize = 250;

/// A child of the embedded supervisor as the old process hands it over.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChildRecord {
    pub program: String,
    pub pid: u32,
    pub pgid: i32,
    pub starttime: Option<u64>,
    /// Whether the message carries its stdout's read end, then its stderr's, in that order.
    pub stdout: bool,
    pub stderr: bool,
}

/// One message of the handover, in the order they go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Msg {
    /// old → new: the listening sockets, one descriptor per spec, in order.
    Listeners { specs: Vec<String> },
    /// new → old: config valid, listeners set up; waiting for the children.
    Prepared { pid: u32 },
    /// old → new: the old has stopped accepting; here are its embedded children.
    Children { children: Vec<ChildRecord> },
    /// new → old: serving.
    Ready { pid: u32 },
    /// new → old: giving up, and why (the old keeps serving).
    Failed { error: String },
}

/// One end of the handover connection.
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// Connects to the old process's socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Channel> {
        let fd = seqpacket()?;
        rustix::net::connect(&fd, &SocketAddrUnix::new(path)?)?;
        Ok(Channel { fd })
    }

    /// The pid of the process at the other end.
    pub fn peer_pid(&self) -> io::Result<u32> {
        let cred = sockopt::socket_peercred(&self.fd)?;
        Ok(cred.pid.as_raw_nonzero().get().unsigned_abs())
    }

    pub fn send(&self, msg: &Msg, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        if fds.len() > MAX_FDS {
            return Err(io::Error::other(format!(
                "{} descriptors to hand over; at most {MAX_FDS} fit",
                fds.len()
            )));
        }
        let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
        let mut space =
            vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::other(
                "the descriptors do not fit the control buffer",
            ));
        }
        rustix::net::sendmsg(
            &self.fd,
            &[IoSlice::new(&body)],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
        Ok(())
    }

    /// The next message and its descriptors, waiting at most `timeout`: `TimedOut` (or
    /// `WouldBlock`) when nothing came, `UnexpectedEof` when the other end is gone.
    pub fn recv(&self, timeout: Duration) -> io::Result<(Msg, Vec<OwnedFd>)> {
        sockopt::set_socket_timeout(&self.fd, sockopt::Timeout::Recv, Some(timeout))?;
        let mut body = vec![0u8; MAX_MESSAGE];
        let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            &self.fd,
            &mut [IoSliceMut::new(&mut body)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        let mut fds = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        if got.bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the other process closed the handover connection",
            ));
        }
        let msg = serde_json::from_slice(&body[..got.bytes.min(body.len())])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok((msg, fds))
    }
}

/// The old process's listening socket, waiting for the new process to connect.
pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    pub fn bind(path: &Path) -> io::Result<Listener> {
        let fd = seqpacket()?;
        rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
        rustix::net::listen(&fd, 1)?;
        Ok(Listener { fd })
    }

    /// Accepts one connection, waiting at most `timeout` (`WouldBlock`/`TimedOut` then).
    pub fn accept(&self, timeout: Duration) -> io::Result<Channel> {
        // Linux bounds accept(2) by the receive timeout.
        sockopt::set_socket_timeout(&self.fd, sockopt::Timeout::Recv, Some(timeout))?;
        let fd = rustix::net::accept_with(&self.fd, SocketFlags::CLOEXEC)?;
        Ok(Channel { fd })
    }
}

/// Whether an I/O error only means "nothing yet".
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Listening sockets inherited from the previous rouse, by spec.
#[derive(Default)]
pub struct Inherited {
    sockets: Vec<(String, OwnedFd)>,
}

impl Inherited {
    pub fn new(sockets: Vec<(String, OwnedFd)>) -> Inherited {
        Inherited { sockets }
    }

    /// The inherited socket configured as `spec`, if any (each one is given out once).
    pub fn take(&mut self, spec: &str) -> Option<OwnedFd> {
        let i = self.sockets.iter().position(|(s, _)| s == spec)?;
        Some(self.sockets.remove(i).1)
    }

    /// The specs nobody took: listeners the new config no longer has.
    pub fn unused(&self) -> Vec<String> {
        self.sockets.iter().map(|(s, _)| s.clone()).collect()
    }
}

/// The spec of the admin API's listener.
pub fn admin_spec(addr: &std::net::SocketAddr) -> String {
    format!("admin:{addr}")
}

/// A tokio listener on an inherited socket: it must be a listening TCP socket.
pub fn tcp_listener(fd: OwnedFd) -> io::Result<tokio::net::TcpListener> {
    let listening = sockopt::socket_acceptconn(&fd)?;
    if !listening || sockopt::socket_type(&fd)? != SocketType::STREAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the inherited descriptor is not a listening stream socket",
        ));
    }
    let std = std::net::TcpListener::from(fd);
    std.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(std)
}

/// A proxy listener on an inherited socket, by the spec it was handed over as (`tcp:ADDR`,
/// `tls:ADDR`, `redirect:ADDR`, `unix:PATH`; see `rouse_proxy::Spec`).
pub fn listener(spec: &str, fd: OwnedFd) -> io::Result<rouse_proxy::Listener> {
    use rouse_config::ListenAddr;
    use rouse_proxy::{Bound, Listener, Spec};
    let Some(spec) = Spec::parse(spec) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("no listener is handed over as {spec:?}"),
        ));
    };
    let socket = match &spec.addr {
        ListenAddr::Tcp(_) => Bound::Tcp(tcp_listener(fd)?),
        ListenAddr::Unix(_) => {
            let std = std::os::unix::net::UnixListener::from(fd);
            std.set_nonblocking(true)?;
            Bound::Unix(tokio::net::UnixListener::from_std(std)?)
        }
    };
    Ok(Listener { spec, socket })
}

/// A unix SEQPACKET socket (message boundaries kept, so each message arrives with its
/// descriptors), closed on exec.
fn seqpacket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Borrows every descriptor of `fds`.
pub fn borrow_all(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(AsFd::as_fd).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_descriptors_go_across() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sock");
        let listener = Listener::bind(&path).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let c = Channel::connect(&path).unwrap();
            let (msg, mut fds) = c.recv(Duration::from_secs(5)).unwrap();
            assert_eq!(
                msg,
                Msg::Listeners {
                    specs: vec!["tcp:x".into()]
                }
            );
            let fd = fds.remove(0);
            let got = std::net::TcpListener::from(fd);
            assert_eq!(got.local_addr().unwrap(), addr);
            c.send(&Msg::Ready { pid: 7 }, &[]).unwrap();
        });
        let server = listener.accept(Duration::from_secs(5)).unwrap();
        assert_eq!(server.peer_pid().unwrap(), std::process::id());
        server
            .send(
                &Msg::Listeners {
                    specs: vec!["tcp:x".into()],
                },
                &[tcp.as_fd()],
            )
            .unwrap();
        let (msg, fds) = server.recv(Duration::from_secs(5)).unwrap();
        assert_eq!(msg, Msg::Ready { pid: 7 });
        assert!(fds.is_empty());
        client.join().unwrap();
        let e = server.recv(Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn nothing_to_accept_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let listener = Listener::bind(&dir.path().join("h.sock")).unwrap();
        let e = listener
            .accept(Duration::from_millis(50))
            .err()
            .expect("nobody connects");
        assert!(is_timeout(&e), "{e:?}");
    }

    #[test]
    fn inherited_sockets_are_given_out_once_by_spec() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut inh = Inherited::new(vec![
            ("tcp:a".into(), a.into()),
            ("admin:b".into(), b.into()),
        ]);
        assert!(inh.take("tcp:b").is_none());
        assert!(inh.take("tcp:a").is_some());
        assert!(inh.take("tcp:a").is_none());
        assert_eq!(inh.unused(), vec!["admin:b".to_owned()]);
    }
}
