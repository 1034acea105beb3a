//! The supervisord driver: a `[supervisors.NAME]` supervisord, driven over XML-RPC.
//!
//! - `start` is `supervisor.startProcess(name, wait=false)`: it returns once supervisord has
//!   spawned the process, not after `startsecs`, since rouse probes readiness itself.
//!   supervisord then retries a failing start on its own (`startretries`, with backoff) until
//!   FATAL; the real state follows through [`Supervisor::observe`] and the poll. The start
//!   goes in one `system.multicall` with the state before it (supervisord silently ignores a
//!   start while the process is STOPPING: the driver then waits and starts again) and after
//!   it (a spawn error's reason).
//! - `stop` is `supervisor.stopProcess(name, wait=false)`, then `getProcessInfo` until the
//!   process is STOPPED, EXITED or FATAL (bounded).
//! - The real state is polled with `getAllProcessInfo` every `poll_interval`, and every change
//!   broadcast to [`Supervisor::subscribe`]rs: a process stopped with supervisorctl, started by
//!   hand or crashed is noticed within a poll interval.
//!
//! Program names are `name` (supervisord's `name:name`) or `group:name`; infos carry the
//! spelling rouse was configured with.
//!
//! Errors: a refused connection, a timeout, a broken connection, supervisord shutting down,
//! and a 401 (wrong or missing credentials, said so in the message) are
//! [`SupervisorError::Unreachable`]: rouse cannot use this supervisord, whatever the program;
//! retrying the same call later is the remedy (after fixing the credentials, for a 401). A
//! program supervisord does not know is [`SupervisorError::BadName`], which names the program
//! and says where to add it. A failed spawn is [`SupervisorError::Spawn`]
//! with supervisord's reason. Anything else (an unexpected fault, a malformed answer, an HTTP
//! status other than 200 and 401) is [`SupervisorError::Other`].

mod client;
mod names;
mod poll;
// Public so that tests/xmlrpc_props.rs (and bench/fuzz.sh through it) can feed the decoder
// directly; rouse itself only reaches it through the driver.
pub mod xmlrpc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rouse_config::SupervisordConfig;
use tokio::sync::broadcast;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use crate::driver::{BoxFuture, ProcessInfo, ProcessState, Supervisor, SupervisorError};
use client::{Client, RpcError};
use names::{Namespec, Programs};
use xmlrpc::{Fault, Value, codes};

const EVENTS_CAPACITY: usize = 1024;
/// How long `stop` waits for supervisord to report the process gone. supervisord itself
/// SIGKILLs after the program's `stopwaitsecs` (default 10 s).
const STOP_BOUND: Duration = Duration::from_secs(60);
/// How often `stop` asks whether the process is gone yet.
const STOP_POLL: Duration = Duration::from_millis(50);

pub struct Supervisord {
    inner: Arc<Inner>,
    /// Stops the poll task when the driver is dropped.
    cancel: CancellationToken,
    polling: AtomicBool,
}

/// What the poll task shares with the driver.
struct Inner {
    name: String,
    client: Client,
    poll_interval: Duration,
    programs: RwLock<Programs>,
    events: broadcast::Sender<ProcessInfo>,
    /// What subscribers were last told; every send goes through it, under its lock, so that
    /// the poll and the starts never send out of order.
    told: Mutex<poll::Told>,
    last_error: Mutex<Option<String>>,
}

impl Inner {
    fn set_last_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    fn told(&self) -> std::sync::MutexGuard<'_, poll::Told> {
        self.told.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The managed programs' current infos.
    async fn snapshot(&self) -> Result<Vec<ProcessInfo>, SupervisorError> {
        let all = self
            .client
            .call("supervisor.getAllProcessInfo", &[])
            .await
            .map_err(|e| self.error(e))?;
        self.programs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot(&all, &self.name)
            .map_err(|why| self.malformed(why))
    }

    async fn info(&self, spec: &Namespec) -> Result<ProcessInfo, RpcError> {
        let answer = self
            .client
            .call("supervisor.getProcessInfo", &[Value::str(spec.to_string())])
            .await?;
        Ok(names::process_info(&answer)
            .map_err(|why| self.malformed_rpc(why))?
            .1)
    }

    /// A call's failure, for a caller that has no better reading of it.
    fn error(&self, e: RpcError) -> SupervisorError {
        call_error(&self.name, e)
    }

    fn malformed(&self, why: String) -> SupervisorError {
        SupervisorError::Other(self.malformed_rpc(why).to_string())
    }

    fn malformed_rpc(&self, why: String) -> RpcError {
        RpcError::Malformed {
            target: format!("supervisord \"{}\"", self.name),
            why,
        }
    }

    fn bad_name(&self, program: &str) -> SupervisorError {
        SupervisorError::BadName {
            program: program.to_owned(),
            why: names::missing(&self.name),
        }
    }
}

/// A call's failure, for a caller that has no better reading of it.
fn call_error(supervisor: &str, e: RpcError) -> SupervisorError {
    match e.fault() {
        Some(f) if f.code == codes::SHUTDOWN_STATE => {
            SupervisorError::Unreachable(format!("supervisord {supervisor} is shutting down"))
        }
        _ if matches!(e, RpcError::Unauthorized { .. }) => SupervisorError::Refused(e.to_string()),
        _ if e.is_unreachable() => SupervisorError::Unreachable(e.to_string()),
        _ => SupervisorError::Other(e.to_string()),
    }
}

/// Which of `programs` (`"name"` or `"group:name"`) the supervisord `config` describes has no
/// process for, in the order given: what `rouse check --online` and a reload warn about, before
/// a start finds out. A name that cannot name one supervisord process is unknown too.
///
/// One `getAllProcessInfo` on a connection of its own (a running driver's poll is left
/// alone), bounded by `config.timeout`, connecting included.
pub async fn unknown_programs(
    config: &SupervisordConfig,
    programs: &[String],
) -> Result<Vec<String>, SupervisorError> {
    let client = Client::new(config);
    let all = client
        .call("supervisor.getAllProcessInfo", &[])
        .await
        .map_err(|e| call_error(&config.name, e))?;
    let malformed = |why: String| {
        SupervisorError::Other(
            RpcError::Malformed {
                target: format!("supervisord \"{}\"", config.name),
                why,
            }
            .to_string(),
        )
    };
    let Some(items) = all.as_array() else {
        return Err(malformed(format!(
            "getAllProcessInfo answered a {}, not an array",
            all.kind()
        )));
    };
    let known = items
        .iter()
        .map(|item| names::process_info(item).map(|(spec, _)| spec))
        .collect::<Result<std::collections::BTreeSet<Namespec>, String>>()
        .map_err(malformed)?;
    Ok(programs
        .iter()
        .filter(|p| Namespec::parse(p).map_or(true, |spec| !known.contains(&spec)))
        .cloned()
        .collect())
}

impl Supervisord {
    /// A driver for the supervisord `config` describes, managing `programs` (`"name"` or
    /// `"group:name"`). Connects lazily: nothing fails here. Inside a tokio runtime the poll
    /// task starts at once; otherwise at the first [`Supervisor::subscribe`].
    pub fn new(config: &SupervisordConfig, programs: Vec<String>) -> Arc<Supervisord> {
        let (events, _) = broadcast::channel(EVENTS_CAPACITY);
        let driver = Arc::new(Supervisord {
            inner: Arc::new(Inner {
                name: config.name.clone(),
                client: Client::new(config),
                poll_interval: config.poll_interval,
                programs: RwLock::new(Programs::new(programs)),
                events,
                told: Mutex::new(poll::Told::default()),
                last_error: Mutex::new(None),
            }),
            cancel: CancellationToken::new(),
            polling: AtomicBool::new(false),
        });
        driver.ensure_polling();
        driver
    }

    /// Replaces the managed programs (on reload). Newly managed programs are broadcast at the
    /// next poll; no process is started or stopped.
    pub fn set_programs(&self, programs: Vec<String>) {
        *self
            .inner
            .programs
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Programs::new(programs);
    }

    /// Whether supervisord answers and is RUNNING (`supervisor.getState`), for health
    /// reporting.
    pub async fn reachable(&self) -> Result<(), SupervisorError> {
        let state = self
            .inner
            .client
            .call("supervisor.getState", &[])
            .await
            .map_err(|e| self.inner.error(e))?;
        match state.member("statecode").and_then(Value::as_int) {
            Some(1) => Ok(()),
            Some(_) => Err(SupervisorError::Unreachable(format!(
                "supervisord {} is {}",
                self.inner.name,
                state
                    .member("statename")
                    .and_then(Value::as_str)
                    .unwrap_or("not running")
            ))),
            None => Err(self
                .inner
                .malformed(format!("getState answered {}", names::summary(&state)))),
        }
    }

    /// Why the last poll failed; `None` when it succeeded (or none has run yet).
    pub fn last_error(&self) -> Option<String> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Starts several programs in one round trip (`system.multicall`); one result per
    /// program, as [`Supervisor::start`] would give, except that a program being stopped
    /// (STOPPING) is not waited for and restarted, a spawn error's reason is only
    /// supervisord's fault text, and the processes are not reported to subscribers at once
    /// (the next poll reports them).
    pub async fn start_many(&self, programs: &[&str]) -> Vec<Result<(), SupervisorError>> {
        let mut results: Vec<Option<Result<(), SupervisorError>>> = Vec::new();
        let mut calls = Vec::new();
        for program in programs {
            match self.namespec(program) {
                Ok(spec) => {
                    results.push(None);
                    calls.push((
                        "supervisor.startProcess",
                        vec![Value::str(spec.to_string()), Value::Bool(false)],
                    ));
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let answers = if calls.is_empty() {
            Ok(Vec::new())
        } else {
            self.inner.client.multicall(&calls).await
        };
        let mut answers = match answers {
            Ok(a) => a.into_iter(),
            Err(e) => {
                let e = self.inner.error(e);
                return results
                    .into_iter()
                    .map(|r| r.unwrap_or_else(|| Err(same_error(&e))))
                    .collect();
            }
        };
        results
            .into_iter()
            .zip(programs)
            .map(|(r, program)| {
                r.unwrap_or_else(|| match answers.next() {
                    Some(Ok(_)) => Ok(()),
                    Some(Err(fault)) => self.start_fault(program, fault),
                    None => Err(self.inner.malformed("too few multicall results".to_owned())),
                })
            })
            .collect()
    }

    fn ensure_polling(&self) {
        if self.polling.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.polling.swap(true, Ordering::AcqRel) {
            runtime.spawn(poll::run(self.inner.clone(), self.cancel.clone()));
        }
    }

    fn namespec(&self, program: &str) -> Result<Namespec, SupervisorError> {
        Namespec::parse(program).map_err(|why| SupervisorError::BadName {
            program: program.to_owned(),
            why: why.to_owned(),
        })
    }

    /// A startProcess fault, read.
    fn start_fault(&self, program: &str, fault: Fault) -> Result<(), SupervisorError> {
        match fault.code {
            codes::ALREADY_STARTED => Ok(()),
            codes::BAD_NAME => Err(self.inner.bad_name(program)),
            codes::SPAWN_ERROR
            | codes::NO_FILE
            | codes::NOT_EXECUTABLE
            | codes::FAILED
            | codes::ABNORMAL_TERMINATION => Err(SupervisorError::Spawn {
                program: program.to_owned(),
                reason: fault.string,
            }),
            codes::SHUTDOWN_STATE => Err(SupervisorError::Unreachable(format!(
                "supervisord {} is shutting down",
                self.inner.name
            ))),
            _ => Err(SupervisorError::Other(format!(
                "supervisord {} cannot start {program}: {fault}",
                self.inner.name
            ))),
        }
    }

    async fn start_program(&self, program: &str) -> Result<(), SupervisorError> {
        let spec = self.namespec(program)?;
        let name = Value::str(spec.to_string());
        // A start racing a stop waits for the stop to finish, then starts afresh; the loop
        // only turns again if yet another stop slipped in between.
        for _ in 0..3 {
            // One round trip: the state before (a STOPPING process makes supervisord's start
            // a silent no-op), the start, and the state after (a spawn error's reason).
            let answers = self
                .inner
                .client
                .multicall(&[
                    ("supervisor.getProcessInfo", vec![name.clone()]),
                    (
                        "supervisor.startProcess",
                        vec![name.clone(), Value::Bool(false)],
                    ),
                    ("supervisor.getProcessInfo", vec![name.clone()]),
                ])
                .await
                .map_err(|e| self.inner.error(e))?;
            let [before, started, after] = <[_; 3]>::try_from(answers)
                .map_err(|_| self.inner.malformed("not 3 multicall results".to_owned()))?;
            let state = |answer: Result<Value, Fault>| {
                answer
                    .ok()
                    .and_then(|v| names::process_info(&v).ok())
                    .map(|(_, info)| info)
            };
            // Say at once which process is now the program's, so subscribers can tell reports
            // about it from late ones about an earlier run. Left to the poll, which reports
            // changes only, one already running (started by hand or by another replica since
            // the last poll) was never reported: stopped again before the next poll, it was
            // as STOPPED as the poll had last said, and rouse kept it ready.
            let tell = |after| {
                if let Some(mut info) = state(after) {
                    info.program = program.to_owned();
                    self.inner.told().tell(&self.inner, info);
                }
            };
            match started {
                Ok(_) => match state(before) {
                    Some(info) if info.state == ProcessState::Stopping => {
                        self.wait_stopped(&spec, program, info, Until::NotStopping)
                            .await?;
                    }
                    _ => {
                        tell(after);
                        return Ok(());
                    }
                },
                Err(fault) if fault.code == codes::ALREADY_STARTED => {
                    tell(after);
                    return Ok(());
                }
                Err(fault) => {
                    let spawn_error = fault.code == codes::SPAWN_ERROR;
                    return match self.start_fault(program, fault) {
                        // SPAWN_ERROR's text is only the name; the reason is the spawnerr.
                        Err(SupervisorError::Spawn { program, reason }) if spawn_error => {
                            let reason = match state(after) {
                                Some(info) if !info.description.is_empty() => {
                                    format!("{reason}: {}", info.description)
                                }
                                _ => reason,
                            };
                            Err(SupervisorError::Spawn { program, reason })
                        }
                        other => other,
                    };
                }
            }
        }
        Err(SupervisorError::Other(format!(
            "{program} keeps being stopped while starting (supervisord {})",
            self.inner.name
        )))
    }

    async fn stop_program(&self, program: &str) -> Result<(), SupervisorError> {
        let spec = self.namespec(program)?;
        let name = Value::str(spec.to_string());
        // The stop and the state right after it in one round trip.
        let answers = self
            .inner
            .client
            .multicall(&[
                (
                    "supervisor.stopProcess",
                    vec![name.clone(), Value::Bool(false)],
                ),
                ("supervisor.getProcessInfo", vec![name]),
            ])
            .await
            .map_err(|e| self.inner.error(e))?;
        let [stopped, after] = <[_; 2]>::try_from(answers)
            .map_err(|_| self.inner.malformed("not 2 multicall results".to_owned()))?;
        match stopped {
            Ok(_) => {}
            // STOPPING (being stopped already) is not "running" either: wait for it too.
            Err(f) if f.code == codes::NOT_RUNNING => {}
            Err(f) if f.code == codes::BAD_NAME => return Err(self.inner.bad_name(program)),
            Err(f) if f.code == codes::SHUTDOWN_STATE => {
                return Err(SupervisorError::Unreachable(format!(
                    "supervisord {} is shutting down",
                    self.inner.name
                )));
            }
            Err(f) => {
                return Err(SupervisorError::Other(format!(
                    "supervisord {} cannot stop {program}: {f}",
                    self.inner.name
                )));
            }
        }
        let info = match after {
            Ok(v) => {
                names::process_info(&v)
                    .map_err(|why| self.inner.malformed(why))?
                    .1
            }
            Err(f) => {
                return Err(SupervisorError::Other(format!(
                    "supervisord {} stopped {program} but cannot tell its state: {f}",
                    self.inner.name
                )));
            }
        };
        self.wait_stopped(&spec, program, info, Until::Stopped)
            .await
    }

    /// Asks until the process is STOPPED, EXITED or FATAL, or with [`Until::NotStopping`]
    /// until it is anything but STOPPING (bounded by [`STOP_BOUND`]); `info` is its latest
    /// state.
    async fn wait_stopped(
        &self,
        spec: &Namespec,
        program: &str,
        mut info: ProcessInfo,
        until: Until,
    ) -> Result<(), SupervisorError> {
        let deadline = Instant::now() + STOP_BOUND;
        let stopping = info.pid;
        loop {
            match (info.state, until) {
                (ProcessState::Stopped | ProcessState::Exited | ProcessState::Fatal, _) => {
                    return Ok(());
                }
                (ProcessState::Stopping, _) => {}
                // Started again meanwhile, or UNKNOWN: the caller's start says which.
                (_, Until::NotStopping) => return Ok(()),
                (ProcessState::Unknown, Until::Stopped) => {
                    return Err(SupervisorError::Other(format!(
                        "supervisord {} cannot stop {program}: its state is UNKNOWN ({})",
                        self.inner.name, info.description
                    )));
                }
                // The process being stopped is gone, and another one was started since.
                (
                    ProcessState::Starting | ProcessState::Running | ProcessState::Backoff,
                    Until::Stopped,
                ) if stopping.is_some() && info.pid != stopping => return Ok(()),
                (
                    ProcessState::Starting | ProcessState::Running | ProcessState::Backoff,
                    Until::Stopped,
                ) => {}
            }
            if Instant::now() >= deadline {
                return Err(SupervisorError::Other(format!(
                    "{program} still {} after {STOP_BOUND:?} (supervisord {})",
                    info.state, self.inner.name
                )));
            }
            sleep(STOP_POLL).await;
            info = self
                .inner
                .info(spec)
                .await
                .map_err(|e| self.inner.error(e))?;
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Until {
    Stopped,
    NotStopping,
}

/// `SupervisorError` is not `Clone`; the same error for several programs.
fn same_error(e: &SupervisorError) -> SupervisorError {
    match e {
        SupervisorError::BadName { program, why } => SupervisorError::BadName {
            program: program.clone(),
            why: why.clone(),
        },
        SupervisorError::Spawn { program, reason } => SupervisorError::Spawn {
            program: program.clone(),
            reason: reason.clone(),
        },
        SupervisorError::Unreachable(s) => SupervisorError::Unreachable(s.clone()),
        SupervisorError::Refused(s) => SupervisorError::Refused(s.clone()),
        SupervisorError::Other(s) => SupervisorError::Other(s.clone()),
    }
}

impl Supervisor for Supervisord {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn manage(&self, servers: &[&rouse_config::ServerConfig]) {
        self.set_programs(servers.iter().map(|s| s.program.clone()).collect());
    }

    fn start<'a>(&'a self, program: &'a str) -> BoxFuture<'a, Result<(), SupervisorError>> {
        Box::pin(self.start_program(program))
    }

    fn stop<'a>(&'a self, program: &'a str) -> BoxFuture<'a, Result<(), SupervisorError>> {
        Box::pin(self.stop_program(program))
    }

    fn observe(&self) -> BoxFuture<'_, Result<Vec<ProcessInfo>, SupervisorError>> {
        Box::pin(self.inner.snapshot())
    }

    /// Changes seen by the poll (every `poll_interval`): each program whose state or pid
    /// differs from what was last sent; after the first poll, and after supervisord could not
    /// be polled, every managed program. A successful start also sends its program's state at
    /// once.
    fn subscribe(&self) -> broadcast::Receiver<ProcessInfo> {
        let rx = self.inner.events.subscribe();
        self.ensure_polling();
        rx
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
