//! Stopping a child's whole process group: the stop signal, a bounded wait, then SIGKILL.

use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::{Instant, sleep, timeout, timeout_at};

use super::procfs;
use super::spawn::Proc;

/// After SIGKILL, how long the leader may take to be reaped before the stop is reported as
/// failed (it can only be stuck in the kernel, e.g. in uninterruptible I/O).
pub(super) const KILL_GRACE: Duration = Duration::from_secs(5);
const GROUP_POLL: Duration = Duration::from_millis(20);

/// "TERM", "SIGTERM", "term" or "15".
pub(super) fn parse_signal(name: &str) -> Option<Signal> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).ok()
}

/// The configured stop signal; a bad name (config validation should have caught it) must
/// still stop the program, so it falls back to TERM.
pub(super) fn stop_signal(program: &str, name: &str) -> Signal {
    parse_signal(name).unwrap_or_else(|| {
        tracing::warn!(program, signal = name, "unknown stop signal; using SIGTERM");
        Signal::SIGTERM
    })
}

/// Signals the group, gives it `stop_timeout` to go (the leader, then whoever else in the
/// group still runs: a server behind `sh -c` outlives its shell by the time its own
/// shutdown takes), then SIGKILLs what is left and waits for the leader to be reaped.
/// `Err` is the human reason when even that did not make the leader go away.
pub(super) async fn terminate(
    proc: &mut Proc,
    signal: Signal,
    stop_timeout: Duration,
) -> Result<(), String> {
    let deadline = rouse_core::time::deadline(Instant::now(), stop_timeout);
    proc.signal(signal);
    if !matches!(signal, Signal::SIGKILL | Signal::SIGCONT) {
        // A stopped (SIGSTOP) process would only act on the signal once continued.
        proc.signal(Signal::SIGCONT);
    }
    if timeout_at(deadline, proc.child.wait()).await.is_ok() {
        while Instant::now() < deadline && procfs::group_alive(proc.pgid) {
            sleep(GROUP_POLL).await;
        }
    } else {
        tracing::warn!(
            pid = proc.pid,
            "still running {stop_timeout:?} after {signal}: SIGKILL to its process group"
        );
    }
    proc.signal(Signal::SIGKILL);
    match timeout(KILL_GRACE, proc.child.wait()).await {
        Ok(_) => {
            proc.disarm();
            Ok(())
        }
        Err(_) => Err(format!(
            "pid {} still not gone {KILL_GRACE:?} after SIGKILL",
            proc.pid
        )),
    }
}

/// After the leader exited on its own: whatever it left in its group goes too, at once, so
/// that a restart does not find the port still held by an orphan.
pub(super) fn kill_leftovers(proc: &mut Proc) {
    proc.signal(Signal::SIGKILL);
    proc.disarm();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("TERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("sigint"), Some(Signal::SIGINT));
        assert_eq!(parse_signal("SIGHUP"), Some(Signal::SIGHUP));
        assert_eq!(parse_signal("9"), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal(""), None);
        assert_eq!(parse_signal("99999"), None);
    }
}
