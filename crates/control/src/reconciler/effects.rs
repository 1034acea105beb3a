//! Carrying out what a lifecycle step asks: supervisor calls, probes and checks run in tasks
//! that answer the loop with the next input; held requests are woken or told; records go to
//! the journal, the log and the counters.

use rouse_core::lifecycle::{Checked, Effect, NotReady, Process, StartError};
use rouse_proxy::connect::Target;
use rouse_supervisor::{ProcessState, SupervisorError};

use super::*;

/// How long one read of a supervisor's process states may take (a connect check, or
/// `ready = "supervisor"`).
const CHECK_OBSERVE: Duration = Duration::from_secs(2);
/// How long a connect check waits for a stop someone else made to end.
const STOPPING_WITHIN: Duration = Duration::from_secs(15);
/// "supervisor" readiness polls the supervisor this often while a server starts.
const OBSERVE_INTERVAL: Duration = Duration::from_millis(20);

pub(super) fn process(p: ProcessState) -> Process {
    match p {
        ProcessState::Starting => Process::Starting,
        ProcessState::Running => Process::Running,
        ProcessState::Backoff => Process::Backoff,
        ProcessState::Stopping => Process::Stopping,
        ProcessState::Stopped => Process::Stopped,
        ProcessState::Exited => Process::Exited,
        ProcessState::Fatal => Process::Fatal,
        ProcessState::Unknown => Process::Unknown,
    }
}

fn start_error(e: SupervisorError) -> StartError {
    let why = e.to_string();
    match e {
        SupervisorError::Unreachable(_) => StartError::Unreachable(why),
        SupervisorError::BadName { .. } => StartError::BadName(why),
        _ => StartError::Failed(why),
    }
}

impl Reconciler {
    pub(super) fn carry_out(&mut self, u: usize, i: usize, effect: Effect) {
        let ctl = &self.ups[u];
        let up = Arc::clone(&ctl.upstream);
        let server = Arc::clone(&ctl.servers[i]);
        let driver = Arc::clone(&ctl.drivers[i]);
        let id = server.id();
        let probe = Arc::clone(&self.probe);
        let tx = self.tx.clone();
        let answer = move |input| {
            let _ = tx.send(Msg::Answer { id, input });
        };
        match effect {
            Effect::CallStart { attempt } => {
                tokio::spawn(async move {
                    let result = driver
                        .start(&server.config.program)
                        .await
                        .map_err(start_error);
                    answer(Input::StartAnswered { attempt, result });
                });
            }
            Effect::CallStop => {
                tokio::spawn(async move {
                    let result = driver
                        .stop(&server.config.program)
                        .await
                        .map_err(|e| e.to_string());
                    answer(Input::StopAnswered { result });
                });
            }
            Effect::Probe { attempt, deadline } => {
                tokio::spawn(async move {
                    let result = match &up.config.ready {
                        Readiness::Supervisor => until_running(&*driver, &server, deadline).await,
                        r => {
                            let target = Target::new(Arc::clone(&server), up.tls.as_ref());
                            probe
                                .until_ready(&target, r, deadline)
                                .await
                                .map_err(NotReady::TimedOut)
                        }
                    };
                    answer(Input::ProbeAnswered { attempt, result });
                });
            }
            Effect::Check { attempt } => {
                tokio::spawn(async move {
                    let target = Target::new(Arc::clone(&server), up.tls.as_ref());
                    let result = check(&*probe, &*driver, &target).await;
                    answer(Input::Checked { attempt, result });
                });
            }
            Effect::ForgetConnectFailures => server.forget_failures(),
            Effect::WakeHeld => up.notify_changed(),
            Effect::ForgetStartError => up.set_start_error(None),
            Effect::StartDelayed(why) => up.set_start_delay(why),
            Effect::TellHeld(why) => {
                let coming = ctl.servers.iter().enumerate().any(|(j, s)| {
                    j != i && matches!(s.state(), ServerState::Ready | ServerState::Starting)
                });
                if coming {
                    up.notify_changed();
                } else {
                    up.fail_held(why);
                }
            }
            Effect::Record(r) => self.record(u, i, r),
        }
    }
}

/// A connect failure the data plane saw on a ready server: a connect that timed out under a
/// burst (a SYN dropped by a busy listener) says little about the process, while stopping it
/// costs every request in flight on it, so one connect of the loop's own decides. When it is
/// refused, the supervisor says whether the program was stopped behind rouse's back (not a
/// failure) or died.
async fn check(probe: &dyn Probe, driver: &dyn Supervisor, target: &Target) -> Checked {
    let server = target.server();
    let why = match probe.accepts(target).await {
        Ok(()) => return Checked::Accepts,
        Err(why) => why,
    };
    // Someone else stopping it (`supervisorctl stop`: the process closes its listener first)
    // is seen as STOPPING: wait for the end of that stop, which says what it was.
    let until = Instant::now() + STOPPING_WITHIN;
    loop {
        let process = observe(driver, &server.config.program)
            .await
            .ok()
            .flatten()
            .map(|p| process(p.state));
        if process != Some(Process::Stopping) || Instant::now() >= until {
            return Checked::Refused { why, process };
        }
        tokio::time::sleep(OBSERVE_INTERVAL).await;
    }
}

/// For `ready = "supervisor"`: polls the supervisor until the program is RUNNING.
async fn until_running(
    driver: &dyn Supervisor,
    server: &Server,
    deadline: Instant,
) -> Result<(), NotReady> {
    let program = &server.config.program;
    loop {
        match observe(driver, program).await {
            Ok(Some(p)) => match p.state {
                ProcessState::Running => return Ok(()),
                ProcessState::Fatal | ProcessState::Exited => {
                    return Err(NotReady::Died(format!("{}: {}", p.state, p.description)));
                }
                _ => {}
            },
            Ok(None) => {}
            Err(e) => tracing::debug!("observe failed: {e}"),
        }
        if Instant::now() + OBSERVE_INTERVAL >= deadline {
            return Err(NotReady::TimedOut(format!("{program} not RUNNING in time")));
        }
        tokio::time::sleep(OBSERVE_INTERVAL).await;
    }
}

/// What `driver` says of `program` now (`None`: it does not list it), within `CHECK_OBSERVE`.
async fn observe(driver: &dyn Supervisor, program: &str) -> Result<Option<ProcessInfo>, String> {
    match tokio::time::timeout(CHECK_OBSERVE, driver.observe()).await {
        Ok(Ok(infos)) => Ok(infos.into_iter().find(|p| p.program == program)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_OBSERVE:?}")),
    }
}
