//! Starting one child in its own process group.

use std::path::Path;
use std::process::Stdio;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::output;
use super::spec::ProgramSpec;

/// A spawned child and its process group, which it leads.
pub(super) struct Proc {
    pub child: Child,
    pub pid: u32,
    pub pgid: i32,
    /// The task reading its stdout and stderr.
    pub output: Option<output::Forwarding>,
    /// Until the group is known to be dead, dropping a `Proc` kills the whole group: a task
    /// aborted by a runtime shutdown or a panic must not leave grandchildren behind
    /// (`kill_on_drop` alone would reach the leader only).
    armed: bool,
}

impl Proc {
    /// Signals the whole group. ESRCH only means everybody is already gone.
    pub fn signal(&self, signal: Signal) {
        match killpg(Pid::from_raw(self.pgid), signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => tracing::warn!(pgid = self.pgid, %e, "cannot send {signal} to process group"),
        }
    }

    /// Called once the leader is reaped and the rest of the group has been sent SIGKILL:
    /// after that the pgid may be recycled, so it must not be signalled again.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.armed {
            self.signal(Signal::SIGKILL);
        }
    }
}

/// rouse's environment that its children do not get.
const CHILD_ENV_REMOVED: [&str; 5] = [
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "ROUSE_UPGRADE_SOCKET",
];

/// Spawns `spec` (stdin null, output forwarded); `Err` is the human reason, starting with
/// "spawn error:".
pub(super) fn spawn(
    spec: &ProgramSpec,
    log_dir: Option<&Path>,
    reopen: watch::Receiver<u64>,
) -> Result<Proc, String> {
    let argv = spec.argv();
    let Some((exe, args)) = argv.split_first() else {
        return Err("spawn error: empty command".to_owned());
    };
    if let Some(cwd) = &spec.cwd {
        // exec's ENOENT cannot tell a missing cwd from a missing binary; say which it was.
        match std::fs::metadata(cwd) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("spawn error: cwd {cwd:?} is not a directory")),
            Err(e) => return Err(format!("spawn error: cwd {cwd:?}: {e}")),
        }
    }
    let mut cmd = Command::new(exe);
    cmd.args(args);
    // rouse's own business with systemd and its predecessor: a child that speaks sd_notify
    // (gunicorn does) would otherwise tell systemd it is the service, and one that takes
    // sockets by LISTEN_FDS would look for descriptors it does not have. Its `env` may still
    // set any of them.
    for var in CHILD_ENV_REMOVED {
        cmd.env_remove(var);
    }
    cmd.envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawn error: {exe}: {e}"))?;
    // Both are impossible right after a successful spawn; they are checked, not unwrapped.
    let pid = child.id().ok_or("spawn error: the child has no pid")?;
    let pgid = i32::try_from(pid).map_err(|_| format!("spawn error: pid {pid} out of range"))?;
    // As plain pipes, which another rouse can be given and read on (`rouse upgrade`).
    let stdout = child.stdout.take().and_then(|s| as_pipe(s.into_owned_fd()));
    let stderr = child.stderr.take().and_then(|s| as_pipe(s.into_owned_fd()));
    let output = output::forward(
        spec.program.clone(),
        stdout,
        stderr,
        log_dir.map(Path::to_path_buf),
        reopen,
    );
    Ok(Proc {
        child,
        pid,
        pgid,
        output: Some(output),
        armed: true,
    })
}

/// A pipe's read end for tokio; `None` (output lost, said once) if it cannot be one.
pub(super) fn as_pipe(fd: std::io::Result<std::os::fd::OwnedFd>) -> Option<pipe::Receiver> {
    match fd.and_then(pipe::Receiver::from_owned_fd) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(%e, "cannot read a child's output pipe; its output is lost");
            None
        }
    }
}
