//! The part of systemd's `sd_notify` protocol rouse needs: once serving, `READY=1` (for
//! `Type=notify` units) and `MAINPID=` with its own pid, so that after `rouse upgrade` systemd
//! follows the new process instead of taking the old one's exit for the service's end. The
//! unit needs `NotifyAccess=all`: the new process is not yet the main one when it says so.
//! Without `NOTIFY_SOCKET` (not under systemd) nothing is sent.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Tells systemd, if it is listening, that this process serves and is the main one.
pub fn ready() {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message = format!("READY=1\nMAINPID={}\n", std::process::id());
    if let Err(e) = send(&socket, &message) {
        tracing::warn!(socket = ?socket, "cannot notify systemd: {e}");
    }
}

/// Sends `message` to the datagram socket `socket`: a path, or `@name` in the abstract
/// namespace.
pub fn send(socket: &OsStr, message: &str) -> io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        sender.send_to_addr(message.as_bytes(), &SocketAddr::from_abstract_name(name)?)?;
    } else {
        sender.send_to(message.as_bytes(), socket)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
    }
}
