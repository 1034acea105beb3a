//! What the embedded driver is told to run, and how it behaves.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rouse_config::{CommandLine, ServerConfig};

/// One program the embedded driver can run: the embedded keys of an `[[upstream.server]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramSpec {
    pub program: String,
    pub command: CommandLine,
    /// Added to rouse's own environment.
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// How long the process must stay up to count as Running (0 = at once).
    pub startsecs: Duration,
    /// Signal name, with or without "SIG" (e.g. "TERM"), or a number.
    pub stop_signal: String,
    /// After the stop signal, how long before the whole group gets SIGKILL.
    pub stop_timeout: Duration,
}

impl ProgramSpec {
    /// The spec of a server the embedded supervisor runs; `None` when it has no `command`.
    pub fn from_server(server: &ServerConfig) -> Option<ProgramSpec> {
        Some(ProgramSpec {
            program: server.program.clone(),
            command: server.command.clone()?,
            env: server.env.clone(),
            cwd: server.cwd.clone(),
            startsecs: server.startsecs,
            stop_signal: server.stop_signal.clone(),
            stop_timeout: server.stop_timeout,
        })
    }

    /// The argv actually executed. A shell string is not rewritten into `exec ...`: the
    /// signals go to the whole process group, so the server gets them even behind `sh`.
    pub(crate) fn argv(&self) -> Vec<String> {
        match &self.command {
            CommandLine::Shell(s) => vec!["/bin/sh".to_owned(), "-c".to_owned(), s.to_string()],
            CommandLine::Argv(v) => v.to_vec(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// Where the process groups of running children are recorded, so that the next rouse
    /// can kill what a crashed one left behind.
    pub state_file: Option<PathBuf>,
    /// When set, each child's stdout and stderr are appended to `<log_dir>/<program>.log`
    /// instead of going to rouse's log.
    pub log_dir: Option<PathBuf>,
    /// Failed starts retried before giving up (Fatal); supervisord's `startretries`.
    pub start_retries: u32,
    /// Delay after the first failed start; doubled after each further one.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            state_file: None,
            log_dir: None,
            start_retries: 3,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }
}
