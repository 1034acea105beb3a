//! Children adopted from the previous rouse process (`rouse upgrade`): they keep running and
//! serving while a new rouse takes over. They are not this process's children, so nothing can
//! `wait` for them: the run polls /proc for its leader (same pid, same start time, not a
//! zombie), and stops it by signalling its group and polling until the group is gone. Their
//! output pipes come along, so their stdout and stderr go on being logged here.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use super::HandedChild;
use super::output::{self, Streams};
use super::procfs;
use super::run::{EndGuard, RELEASE_BOUND};
use super::spawn::as_pipe;
use super::spec::ProgramSpec;
use super::stale::GroupRecord;
use super::stop;
use super::table::{Report, Shared};
use crate::driver::ProcessState;

/// How often an adopted leader is looked for in /proc: its exit is noticed this late at most.
const POLL: Duration = Duration::from_millis(100);

pub(super) struct AdoptArgs {
    pub shared: Arc<Shared>,
    pub generation: u64,
    pub spec: ProgramSpec,
    pub cancel: CancellationToken,
    pub detach: CancellationToken,
    pub done: CancellationToken,
    pub child: HandedChild,
}

/// Whether `pid` is still the adopted leader: alive, not a zombie, and started when recorded
/// (a recycled pid has another start time).
fn leader_alive(pid: u32, starttime: Option<u64>) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    procfs::stat(pid).is_some_and(|s| s.is_live() && starttime.is_none_or(|t| t == s.starttime))
}

fn signal_group(pgid: i32, signal: Signal) {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, %e, "cannot send {signal} to process group"),
    }
}

fn pipe_fd(r: Option<tokio::net::unix::pipe::Receiver>) -> Option<OwnedFd> {
    r.and_then(|r| r.into_nonblocking_fd().ok())
}

pub(super) async fn run(args: AdoptArgs) {
    let AdoptArgs {
        shared,
        generation,
        spec,
        cancel,
        detach,
        done,
        child,
    } = args;
    let program = child.program.clone();
    let _end = EndGuard {
        shared: shared.clone(),
        program: program.clone(),
        generation,
        done,
    };
    let (pid, pgid, starttime) = (child.pid, child.pgid, child.starttime);
    let report = |state, pid, description: String, since| {
        shared.report(
            &program,
            generation,
            Report {
                state,
                pid,
                description,
                since,
            },
        );
    };
    shared.groups().insert(
        pgid,
        GroupRecord {
            program: program.clone(),
            starttime,
            cmdline: spec.argv().join(" "),
        },
    );
    let output = output::forward(
        program.clone(),
        child.stdout.and_then(|fd| as_pipe(Ok(fd))),
        child.stderr.and_then(|fd| as_pipe(Ok(fd))),
        shared.options.log_dir.clone(),
        shared.reopen.subscribe(),
    );
    report(
        ProcessState::Running,
        Some(pid),
        format!("pid {pid}, adopted (rouse upgrade)"),
        Some(Instant::now()),
    );
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                report(ProcessState::Stopping, Some(pid), format!("pid {pid}, stopping"), None);
                let signal = stop::stop_signal(&program, &spec.stop_signal);
                match terminate(pgid, signal, spec.stop_timeout).await {
                    Ok(()) => {
                        shared.groups().remove(pgid);
                        report(ProcessState::Stopped, None, "stopped".to_owned(), None);
                    }
                    Err(reason) => report(ProcessState::Unknown, Some(pid), reason, None),
                }
                return;
            }
            _ = detach.cancelled() => {
                let record = shared.groups().forget(pgid);
                let streams = tokio::time::timeout(RELEASE_BOUND, output.release())
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(Streams { stdout: None, stderr: None });
                shared.handed().push(HandedChild {
                    program: program.clone(),
                    pid,
                    pgid,
                    starttime: record.and_then(|r| r.starttime).or(starttime),
                    stdout: pipe_fd(streams.stdout),
                    stderr: pipe_fd(streams.stderr),
                });
                tracing::info!(program, pid, "handed over to the next rouse");
                return;
            }
            _ = sleep(POLL) => {
                if !leader_alive(pid, starttime) {
                    // Taken back after a failed handover, it is this process's own child,
                    // whose zombie only this process can reap (ECHILD otherwise).
                    if let Ok(raw) = i32::try_from(pid) {
                        let _ = waitpid(Pid::from_raw(raw), Some(WaitPidFlag::WNOHANG));
                    }
                    // As for a child of ours: what it left in its group goes too.
                    if procfs::group_alive(pgid) {
                        signal_group(pgid, Signal::SIGKILL);
                    }
                    shared.groups().remove(pgid);
                    report(
                        ProcessState::Exited,
                        None,
                        "exited (adopted from the previous rouse: no exit status)".to_owned(),
                        None,
                    );
                    return;
                }
            }
        }
    }
}

/// The stop signal to the group, `stop_timeout` for it to go, then SIGKILL and
/// [`stop::KILL_GRACE`] more.
async fn terminate(pgid: i32, signal: Signal, stop_timeout: Duration) -> Result<(), String> {
    signal_group(pgid, signal);
    if !matches!(signal, Signal::SIGKILL | Signal::SIGCONT) {
        signal_group(pgid, Signal::SIGCONT);
    }
    if gone_by(
        pgid,
        rouse_core::time::deadline(Instant::now(), stop_timeout),
    )
    .await
    {
        return Ok(());
    }
    tracing::warn!(
        pgid,
        "still running {stop_timeout:?} after {signal}: SIGKILL to its process group"
    );
    signal_group(pgid, Signal::SIGKILL);
    if gone_by(pgid, Instant::now() + stop::KILL_GRACE).await {
        Ok(())
    } else {
        Err(format!(
            "process group {pgid} still not gone {:?} after SIGKILL",
            stop::KILL_GRACE
        ))
    }
}

async fn gone_by(pgid: i32, deadline: Instant) -> bool {
    loop {
        if !procfs::group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(20)).await;
    }
}
