//! The driver trait every supervisor implements, and the states it reports.

use std::fmt;

/// A process as a supervisor reports it, in supervisord's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessState {
    Stopped,
    Starting,
    Running,
    Backoff,
    Stopping,
    Exited,
    Fatal,
    Unknown,
}

impl ProcessState {
    /// supervisord's `state` code (SV:states.py), as found in `getProcessInfo`.
    pub fn code(self) -> i32 {
        match self {
            ProcessState::Stopped => 0,
            ProcessState::Starting => 10,
            ProcessState::Running => 20,
            ProcessState::Backoff => 30,
            ProcessState::Stopping => 40,
            ProcessState::Exited => 100,
            ProcessState::Fatal => 200,
            ProcessState::Unknown => 1000,
        }
    }

    /// The inverse of [`code`](Self::code); anything unrecognised is `Unknown`, as supervisord
    /// itself would say.
    pub fn from_code(code: i64) -> ProcessState {
        match code {
            0 => ProcessState::Stopped,
            10 => ProcessState::Starting,
            20 => ProcessState::Running,
            30 => ProcessState::Backoff,
            40 => ProcessState::Stopping,
            100 => ProcessState::Exited,
            200 => ProcessState::Fatal,
            _ => ProcessState::Unknown,
        }
    }

    /// supervisord's `statename`: "RUNNING", "BACKOFF", ...
    pub fn name(self) -> &'static str {
        match self {
            ProcessState::Stopped => "STOPPED",
            ProcessState::Starting => "STARTING",
            ProcessState::Running => "RUNNING",
            ProcessState::Backoff => "BACKOFF",
            ProcessState::Stopping => "STOPPING",
            ProcessState::Exited => "EXITED",
            ProcessState::Fatal => "FATAL",
            ProcessState::Unknown => "UNKNOWN",
        }
    }

    /// The inverse of [`name`](Self::name) (case-insensitive); anything else is `Unknown`.
    pub fn from_name(name: &str) -> ProcessState {
        [
            ProcessState::Stopped,
            ProcessState::Starting,
            ProcessState::Running,
            ProcessState::Backoff,
            ProcessState::Stopping,
            ProcessState::Exited,
            ProcessState::Fatal,
        ]
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
        .unwrap_or(ProcessState::Unknown)
    }
}

impl fmt::Display for ProcessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The program name (`ServerConfig.program`).
    pub program: String,
    pub state: ProcessState,
    pub pid: Option<u32>,
    /// Human text: "pid 123, uptime 0:01:02", "exited with status 1",
    /// "spawn error: No such file or directory (os error 2)".
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The supervisor does not know the program: a configuration problem, said in `why`.
    #[error("unknown program {program:?}: {why}")]
    BadName { program: String, why: String },
    #[error("cannot spawn {program:?}: {reason}")]
    Spawn { program: String, reason: String },
    /// It could not be talked to; the text says why. Asking again later is the remedy.
    #[error("{0}")]
    Unreachable(String),
    /// It answered, but refused rouse's credentials (HTTP 401): asking again will not help
    /// until the config is fixed.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub trait Supervisor: Send + Sync + 'static {
    /// Name for logs and errors ("embedded", or the `[supervisors.NAME]`).
    fn name(&self) -> &str;

    /// Issues a start and returns at once (it does NOT wait for Running).
    /// Already starting/running = Ok.
    fn start<'a>(&'a self, program: &'a str) -> BoxFuture<'a, Result<(), SupervisorError>>;

    /// Stops and returns when the process is gone (bounded: stop_timeout, then SIGKILL, then
    /// reaped). Not running = Ok.
    fn stop<'a>(&'a self, program: &'a str) -> BoxFuture<'a, Result<(), SupervisorError>>;

    /// The current state of every program it manages (like getAllProcessInfo).
    fn observe(&self) -> BoxFuture<'_, Result<Vec<ProcessInfo>, SupervisorError>>;

    /// State changes as they happen (the embedded driver pushes each transition at once; a
    /// process exit must be seen within milliseconds, not at the next poll).
    ///
    /// A receiver that falls behind gets `RecvError::Lagged`; it should then `observe()` to
    /// resynchronise rather than trust the gap.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ProcessInfo>;

    /// Replaces the servers it manages (a reload): what it observes and may start. Programs
    /// no longer listed are forgotten; the caller stops them first (drained), since rouse
    /// decides when a server goes, not the driver.
    fn manage(&self, servers: &[&rouse_config::ServerConfig]);
}
