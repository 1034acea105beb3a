//! The part of systemd's `sd_notify` protocol rouse needs. Once serving, `READY=1` (for
//! `Type=notify` units) and `MAINPID=` with its own pid, so that after `rouse upgrade` systemd
//! follows the new process instead of taking the old one's exit for the service's end. The
//! unit needs `NotifyAccess=all`: the new process is not yet the main one when it says so.
//! Around a reload, `RELOADING=1` (with `MONOTONIC_USEC=`, which `Type=notify-reload` wants
//! since systemd 253) then `READY=1`; at a graceful stop, `STOPPING=1`; `STATUS=` lines for
//! `systemctl status`; and `WATCHDOG=1` when the unit has `WatchdogSec=` ([`watchdog`]).
//! Without `NOTIFY_SOCKET` (not under systemd) nothing is sent.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Tells systemd, if it is listening, that this process serves and is the main one. No
/// `STATUS=` here: `systemctl status` says "active (running)" already.
pub fn ready() {
    notify(&format!("READY=1\nMAINPID={}\n", std::process::id()));
}

/// A reload begins: systemd shows the unit as reloading until [`reloaded`].
pub fn reloading(status: &str) {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = now.tv_sec as u128 * 1_000_000 + now.tv_nsec as u128 / 1_000;
    notify(&format!(
        "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={}\n",
        one_line(status)
    ));
}

/// The reload is over, applied or refused: serving again.
pub fn reloaded(status: &str) {
    notify(&format!("READY=1\nSTATUS={}\n", one_line(status)));
}

/// A graceful stop begins. Never sent by a rouse that handed over to a new process: systemd
/// would take it for the whole service stopping.
pub fn stopping(status: &str) {
    notify(&format!("STOPPING=1\nSTATUS={}\n", one_line(status)));
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// advises, when it is set and `WATCHDOG_PID` is absent or names this process (a
/// `WATCHDOG_PID` of another process is for that one, e.g. a predecessor).
pub fn watchdog_interval() -> Option<Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// Sends `WATCHDOG=1` every `interval` for as long as the runtime it is spawned on runs its
/// tasks: a runtime stuck in a blocking call or a busy loop misses its pings, and systemd
/// restarts the service (`Restart=on-failure`).
pub async fn watchdog(interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        notify("WATCHDOG=1\n");
    }
}

fn notify(message: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&socket, message) {
        tracing::warn!(socket = ?socket, "cannot notify systemd: {e}");
    }
}

/// A `STATUS=` value must not break the newline-separated message.
fn one_line(status: &str) -> String {
    status.trim().replace('\n', "; ")
}

/// Sends `message` to the datagram socket `socket`: a path, or `@name` in the abstract
/// namespace.
pub fn send(socket: &OsStr, message: &str) -> io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    // Called on the runtime's thread: a listener that stopped reading must not block it.
    sender.set_nonblocking(true)?;
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

    #[test]
    fn a_status_stays_on_one_line() {
        assert_eq!(one_line("a\nb\n"), "a; b");
    }
}
