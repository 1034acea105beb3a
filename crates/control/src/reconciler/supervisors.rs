//! What the admin API shows of the supervisors: whether each answers, and its programs'
//! states, pids and uptimes, asked of it when someone looks (as `rouse check --online` does),
//! not kept by the loop.

use std::time::Duration;

use rouse_supervisor::{ProcessInfo, Supervisor};

use super::ControlHandle;

/// How long one supervisor may take to say what it runs.
const ASK_WITHIN: Duration = Duration::from_secs(3);

/// One supervisor as last asked.
#[derive(Debug, Clone)]
pub struct SupervisorReport {
    /// `embedded`, or the `[supervisors.NAME]` name.
    pub name: String,
    /// "embedded" or "supervisord".
    pub kind: &'static str,
    /// Why it could not be asked; `None` when it answered.
    pub error: Option<String>,
    /// The programs it runs for rouse (empty when it did not answer). Their `description` is
    /// supervisord's (`pid 123, uptime 0:01:02`), which the embedded supervisor follows.
    pub programs: Vec<ProcessInfo>,
}

impl ControlHandle {
    /// Asks every supervisor of the current config, all at once, each within 3 s.
    pub async fn supervisors(&self) -> Vec<SupervisorReport> {
        let drivers = self
            .drivers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut asked: Vec<(&'static str, std::sync::Arc<dyn Supervisor>)> = Vec::new();
        if let Some(e) = &drivers.embedded {
            asked.push(("embedded", std::sync::Arc::clone(e) as _));
        }
        let mut named: Vec<_> = drivers.supervisord.into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        asked.extend(named.into_iter().map(|(_, s)| ("supervisord", s)));
        let answers = asked.iter().map(|(kind, s)| async move {
            let answer = tokio::time::timeout(ASK_WITHIN, s.observe()).await;
            let (error, mut programs) = match answer {
                Ok(Ok(p)) => (None, p),
                Ok(Err(e)) => (Some(e.to_string()), Vec::new()),
                Err(_) => (Some(format!("no answer within {ASK_WITHIN:?}")), Vec::new()),
            };
            programs.sort_by(|a, b| a.program.cmp(&b.program));
            SupervisorReport {
                name: s.name().to_owned(),
                kind,
                error,
                programs,
            }
        });
        futures_util::future::join_all(answers).await
    }
}
