//! systemd socket activation: the listening sockets a `.socket` unit passes (`LISTEN_FDS`
//! descriptors from 3, for `LISTEN_PID`, named by `LISTEN_FDNAMES`). Each one is matched to
//! the listener of the config with the same local address (a TCP address, or a unix socket's
//! path) and given to rouse as the sockets a predecessor hands over on `rouse upgrade` are
//! ([`Inherited`], by spec), so both go through one path; listeners nobody passed are bound
//! as usual. A passed socket that matches no listener is an error: systemd would keep
//! accepting connections on it that nobody serves.
//!
//! Turning a descriptor number into a socket is unsafe code, which rouse forbids; the
//! `listenfd` crate does it (checking that each one is a socket of the kind asked for, and
//! marking it close-on-exec so the embedded children never inherit it). It must run before
//! any thread starts: it unsets `LISTEN_FDS` and `LISTEN_PID`.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use rouse_config::{Config, ListenAddr};

use crate::handover::{self, Inherited};

/// One socket systemd passed.
pub struct Passed {
    /// Its descriptor number, for messages.
    fd: usize,
    /// Its `LISTEN_FDNAMES` name (systemd's default is the socket unit's name).
    name: String,
    addr: ListenAddr,
    socket: OwnedFd,
}

/// The sockets systemd passed to this process, taken from the environment once, at start.
#[derive(Default)]
pub struct Activation {
    passed: Vec<Passed>,
    /// Descriptors that are not listening TCP or unix stream sockets.
    errors: Vec<String>,
}

/// The first descriptor systemd passes (SD_LISTEN_FDS_START).
const FIRST_FD: usize = 3;

impl Activation {
    /// Takes the passed sockets, if `LISTEN_FDS` is set for this process. Call it while the
    /// process has one thread.
    pub fn from_env() -> Activation {
        let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
        let mut names = names.split(':');
        let mut fds = listenfd::ListenFd::from_env();
        let mut activation = Activation::default();
        for i in 0..fds.len() {
            let fd = FIRST_FD + i;
            let name = names.next().unwrap_or_default().to_owned();
            match take(&mut fds, i) {
                Ok((addr, socket)) => activation.passed.push(Passed {
                    fd,
                    name,
                    addr,
                    socket,
                }),
                Err(e) => activation
                    .errors
                    .push(format!("socket activation: {}: {e}", describe(fd, &name))),
            }
        }
        activation
    }

    pub fn is_empty(&self) -> bool {
        self.passed.is_empty() && self.errors.is_empty()
    }

    /// What was passed, for the log: `fd 3 "rouse-http" 127.0.0.1:8080`.
    pub fn describe(&self) -> Vec<String> {
        self.passed
            .iter()
            .map(|p| format!("{} {}", describe(p.fd, &p.name), p.addr))
            .collect()
    }

    /// The passed sockets by the spec of the listener each one serves, or every reason why
    /// not (a descriptor that is not a listening socket, or one that matches no listener).
    pub fn match_config(self, config: &Config) -> Result<Inherited, Vec<String>> {
        let mut wanted: Vec<(ListenAddr, String)> = rouse_proxy::listen::specs(&config.proxy)
            .into_iter()
            .map(|spec| (spec.addr.clone(), spec.to_string()))
            .collect();
        if let Some(admin) = &config.admin {
            wanted.push((
                ListenAddr::Tcp(admin.listen),
                handover::admin_spec(&admin.listen),
            ));
        }
        let mut errors = self.errors;
        let mut sockets = Vec::new();
        for p in self.passed {
            match wanted.iter().position(|(addr, _)| *addr == p.addr) {
                Some(i) => sockets.push((wanted.remove(i).1, p.socket)),
                None => errors.push(format!(
                    "socket activation: {} is bound to {}, which no listener of the config names \
                     ([proxy] listen, listen_tls, redirect_https, [admin] listen)",
                    describe(p.fd, &p.name),
                    p.addr
                )),
            }
        }
        if errors.is_empty() {
            Ok(Inherited::new(sockets))
        } else {
            Err(errors)
        }
    }
}

fn describe(fd: usize, name: &str) -> String {
    if name.is_empty() {
        format!("fd {fd}")
    } else {
        format!("fd {fd} ({name:?})")
    }
}

/// The socket at index `i`, as a TCP listener or else a unix stream listener, with its local
/// address.
fn take(fds: &mut listenfd::ListenFd, i: usize) -> std::io::Result<(ListenAddr, OwnedFd)> {
    match fds.take_tcp_listener(i) {
        Ok(Some(l)) => {
            let addr: SocketAddr = l.local_addr()?;
            return Ok((ListenAddr::Tcp(addr), l.into()));
        }
        Ok(None) => return Err(std::io::Error::other("already taken")),
        Err(_) => {}
    }
    let unix = fds
        .take_unix_listener(i)
        .map_err(|_| std::io::Error::other("not a TCP or unix stream socket"))?;
    match unix {
        Some(l) => {
            let addr = l.local_addr()?;
            let path: PathBuf = addr.as_pathname().map(PathBuf::from).ok_or_else(|| {
                std::io::Error::other("a unix socket without a path (rouse listens on paths)")
            })?;
            Ok((ListenAddr::Unix(path), l.into()))
        }
        None => Err(std::io::Error::other("already taken")),
    }
}
