//! One start of a program, as a task: spawn, Starting, Running after `startsecs`, retries
//! with backoff, until it exits, is stopped or gives up. The task owns the `Child`, so
//! exits are seen by `wait()` the moment they happen.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use super::HandedChild;
use super::spawn::{self, Proc};
use super::spec::ProgramSpec;
use super::stale::GroupRecord;
use super::stop;
use super::table::{Report, Shared, running_description};

/// How long the output task may take to give the pipes back at a handover.
pub(super) const RELEASE_BOUND: Duration = Duration::from_secs(2);
use crate::driver::ProcessState;

pub(super) struct RunArgs {
    pub shared: Arc<Shared>,
    pub program: String,
    pub generation: u64,
    pub spec: ProgramSpec,
    pub cancel: CancellationToken,
    pub detach: CancellationToken,
    pub done: CancellationToken,
    /// The outcome of the first spawn, for `start` to return.
    pub first: oneshot::Sender<Result<(), String>>,
}

/// Ends the run however the task ends, panic included, so nobody waits on it forever.
pub(super) struct EndGuard {
    pub shared: Arc<Shared>,
    pub program: String,
    pub generation: u64,
    pub done: CancellationToken,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.shared.finish(&self.program, self.generation);
        self.done.cancel();
    }
}

enum Attempt {
    /// Exited before `startsecs`: counts as a failed try.
    Failed(String),
    /// Exited after Running, or stopped: the run is over.
    Over,
}

pub(super) async fn run(args: RunArgs) {
    let RunArgs {
        shared,
        program,
        generation,
        spec,
        cancel,
        detach,
        done,
        first,
    } = args;
    let _end = EndGuard {
        shared: shared.clone(),
        program: program.clone(),
        generation,
        done,
    };
    let run = Ctx {
        shared: &shared,
        program: &program,
        generation,
        spec: &spec,
        cancel: &cancel,
        detach: &detach,
    };
    let mut first = Some(first);
    let retries = shared.options.start_retries;
    let mut failures: u32 = 0;
    loop {
        if cancel.is_cancelled() {
            run.report(ProcessState::Stopped, None, "stopped".to_owned(), None);
            return;
        }
        if detach.is_cancelled() {
            return;
        }
        let failure = match spawn::spawn(
            &spec,
            shared.options.log_dir.as_deref(),
            shared.reopen.subscribe(),
        ) {
            Err(reason) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(reason.clone()));
                }
                reason
            }
            Ok(proc) => match run.attempt(proc, first.take()).await {
                Attempt::Failed(reason) => reason,
                Attempt::Over => return,
            },
        };
        failures = failures.saturating_add(1);
        if failures > retries {
            let tries = if failures == 1 { "try" } else { "tries" };
            run.report(
                ProcessState::Fatal,
                None,
                format!("{failure} (gave up after {failures} {tries})"),
                None,
            );
            return;
        }
        let delay = backoff(
            shared.options.backoff_base,
            shared.options.backoff_max,
            failures,
        );
        run.report(
            ProcessState::Backoff,
            None,
            format!("{failure}; retry {failures} of {retries} in {delay:?}"),
            None,
        );
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                run.report(ProcessState::Stopped, None, "stopped".to_owned(), None);
                return;
            }
            // Nothing runs to hand over; the next rouse starts it when it must.
            _ = detach.cancelled() => return,
            _ = sleep(delay) => {}
        }
    }
}

/// `base * 2^(failures-1)`, at most `max`.
fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    base.saturating_mul(1u32 << doublings).min(max)
}

struct Ctx<'a> {
    shared: &'a Shared,
    program: &'a str,
    generation: u64,
    spec: &'a ProgramSpec,
    cancel: &'a CancellationToken,
    detach: &'a CancellationToken,
}

impl Ctx<'_> {
    fn report(
        &self,
        state: ProcessState,
        pid: Option<u32>,
        description: String,
        since: Option<Instant>,
    ) {
        self.shared.report(
            self.program,
            self.generation,
            Report {
                state,
                pid,
                description,
                since,
            },
        );
    }

    /// Supervises one spawned process until it fails to start, exits, or is stopped.
    /// `first` is answered once Starting is recorded, so `start` returns with the pid known.
    async fn attempt(
        &self,
        mut proc: Proc,
        first: Option<oneshot::Sender<Result<(), String>>>,
    ) -> Attempt {
        let pid = proc.pid;
        let since = Instant::now();
        let record = GroupRecord::of_leader(proc.pgid, self.program, &self.spec.argv());
        self.shared.groups().insert(proc.pgid, record);
        self.report(
            ProcessState::Starting,
            Some(pid),
            format!("pid {pid}, starting"),
            Some(since),
        );
        if let Some(tx) = first {
            let _ = tx.send(Ok(()));
        }
        if !self.spec.startsecs.is_zero() {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    self.stop(&mut proc).await;
                    return Attempt::Over;
                }
                _ = self.detach.cancelled() => {
                    self.hand_over(proc).await;
                    return Attempt::Over;
                }
                status = proc.child.wait() => {
                    return Attempt::Failed(self.exited(&mut proc, status));
                }
                _ = sleep(self.spec.startsecs) => {}
            }
        }
        self.report(
            ProcessState::Running,
            Some(pid),
            running_description(pid, since.elapsed()),
            Some(since),
        );
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => self.stop(&mut proc).await,
            _ = self.detach.cancelled() => self.hand_over(proc).await,
            status = proc.child.wait() => {
                let why = self.exited(&mut proc, status);
                // No restart here: whether it should run again is the reconciler's call.
                self.report(ProcessState::Exited, None, why, None);
            }
        }
        Attempt::Over
    }

    /// The leader is gone on its own: clears its group and says why it went.
    fn exited(&self, proc: &mut Proc, status: io::Result<ExitStatus>) -> String {
        stop::kill_leftovers(proc);
        self.shared.groups().remove(proc.pgid);
        describe_exit(status)
    }

    /// Lets go of the process, still running, for the next rouse: its group leaves the state
    /// file, its pipes leave the forwarding task, and the `Child` is forgotten rather than
    /// dropped (dropping would kill it).
    async fn hand_over(&self, mut proc: Proc) {
        let record = self.shared.groups().forget(proc.pgid);
        proc.disarm();
        let streams = match proc.output.take() {
            Some(output) => tokio::time::timeout(RELEASE_BOUND, output.release())
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let fd = |r: Option<tokio::net::unix::pipe::Receiver>| {
            r.and_then(|r| r.into_nonblocking_fd().ok())
        };
        let (stdout, stderr) = match streams {
            Some(s) => (fd(s.stdout), fd(s.stderr)),
            None => (None, None),
        };
        self.shared.handed().push(HandedChild {
            program: self.program.to_owned(),
            pid: proc.pid,
            pgid: proc.pgid,
            starttime: record.and_then(|r| r.starttime),
            stdout,
            stderr,
        });
        tracing::info!(
            program = self.program,
            pid = proc.pid,
            "handed over to the next rouse"
        );
        // Its zombie, should it exit before this process does, is reaped by init after.
        std::mem::forget(proc);
    }

    async fn stop(&self, proc: &mut Proc) {
        let pid = proc.pid;
        self.report(
            ProcessState::Stopping,
            Some(pid),
            format!("pid {pid}, stopping"),
            None,
        );
        let signal = stop::stop_signal(self.program, &self.spec.stop_signal);
        match stop::terminate(proc, signal, self.spec.stop_timeout).await {
            Ok(()) => {
                self.shared.groups().remove(proc.pgid);
                self.report(ProcessState::Stopped, None, "stopped".to_owned(), None);
            }
            // Left in the state file: if it ever comes back to life, the next rouse kills it.
            Err(reason) => self.report(ProcessState::Unknown, Some(pid), reason, None),
        }
    }
}

/// "exited with status 3", "killed by SIGKILL (signal 9)".
fn describe_exit(status: io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => match Signal::try_from(sig) {
                Ok(name) => format!("killed by {name} (signal {sig})"),
                Err(_) => format!("killed by signal {sig}"),
            },
            (None, None) => format!("exited: {s}"),
        },
        Err(e) => format!("lost track of the process: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (b, m) = (Duration::from_secs(1), Duration::from_secs(30));
        let got: Vec<u64> = (1..=7).map(|n| backoff(b, m, n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(b, m, u32::MAX), m);
        assert_eq!(backoff(Duration::MAX, Duration::MAX, 40), Duration::MAX);
    }

    #[test]
    fn exit_descriptions() {
        assert_eq!(
            describe_exit(Ok(ExitStatus::from_raw(3 << 8))),
            "exited with status 3"
        );
        assert_eq!(
            describe_exit(Ok(ExitStatus::from_raw(9))),
            "killed by SIGKILL (signal 9)"
        );
    }

    #[test]
    fn uptime_reads_like_supervisord() {
        assert_eq!(
            running_description(7, Duration::from_secs(3723)),
            "pid 7, uptime 1:02:03"
        );
    }
}
