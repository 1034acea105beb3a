//! Whether each `[supervisors.NAME]` supervisord knows every program the config names:
//! `rouse check --online`, and a warning after each reload. A program supervisord does not
//! have is otherwise only found out when rouse first tries to start it, under load.
//!
//! Embedded and static upstreams have nothing to ask. Every supervisord is asked at once, each
//! with one `getAllProcessInfo` bounded by its `timeout` (and by `limit`, when given).

use std::fmt;
use std::time::Duration;

use rouse_config::{Config, SupervisorRef, SupervisordConfig};
use rouse_supervisor::SupervisorError;

/// A server whose program its supervisord does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProgram {
    pub upstream: String,
    /// The server's position in the upstream (from 0).
    pub index: usize,
    pub program: String,
    pub supervisor: String,
    pub url: String,
}

impl fmt::Display for UnknownProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "upstream {:?} server {}: program {:?} is unknown to supervisord {:?} ({})",
            self.upstream, self.index, self.program, self.supervisor, self.url
        )
    }
}

/// A supervisord that could not be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unanswered {
    pub supervisor: String,
    pub url: String,
    pub why: String,
}

impl fmt::Display for Unanswered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot ask supervisord {:?} ({}): {}",
            self.supervisor, self.url, self.why
        )
    }
}

/// What the supervisords said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// In config order: by upstream, then server.
    pub unknown: Vec<UnknownProgram>,
    /// By supervisor name.
    pub unanswered: Vec<Unanswered>,
    /// How many programs each supervisord that answered was asked about, by name.
    pub asked: Vec<(String, usize)>,
}

/// How a supervisord URL is shown in messages.
pub fn url(sc: &SupervisordConfig) -> String {
    sc.shown_url()
}

/// Asks every supervisord of `config` whether it knows its servers' programs; a supervisord
/// no server uses is not asked. `limit` bounds each question below the supervisord's own
/// `timeout`, for callers that must answer someone soon.
pub async fn check_programs(config: &Config, limit: Option<Duration>) -> Findings {
    let mut asks = tokio::task::JoinSet::new();
    for sc in config.supervisors.values() {
        let mine = SupervisorRef::Supervisord(sc.name.clone());
        let programs: Vec<String> = config
            .upstreams
            .iter()
            .flat_map(|u| &u.servers)
            .filter(|s| s.supervisor == mine)
            .map(|s| s.program.clone())
            .collect();
        if programs.is_empty() {
            continue;
        }
        let sc = sc.clone();
        let bound = limit.map_or(sc.timeout, |l| l.min(sc.timeout));
        asks.spawn(async move {
            let answer = tokio::time::timeout(
                bound,
                rouse_supervisor::supervisord::unknown_programs(&sc, &programs),
            )
            .await
            .unwrap_or_else(|_| {
                Err(SupervisorError::Unreachable(format!(
                    "no answer within {bound:?}"
                )))
            });
            (sc, programs.len(), answer)
        });
    }
    let mut findings = Findings::default();
    let mut unknown_by_supervisor: Vec<(String, Vec<String>)> = Vec::new();
    let mut urls: Vec<(String, String)> = Vec::new();
    while let Some(joined) = asks.join_next().await {
        let Ok((sc, asked, answer)) = joined else {
            continue;
        };
        urls.push((sc.name.clone(), url(&sc)));
        match answer {
            Ok(unknown) => {
                findings.asked.push((sc.name.clone(), asked));
                unknown_by_supervisor.push((sc.name.clone(), unknown));
            }
            Err(e) => findings.unanswered.push(Unanswered {
                supervisor: sc.name.clone(),
                url: url(&sc),
                why: e.to_string(),
            }),
        }
    }
    for u in &config.upstreams {
        for s in &u.servers {
            let SupervisorRef::Supervisord(name) = &s.supervisor else {
                continue;
            };
            let is_unknown = unknown_by_supervisor
                .iter()
                .any(|(n, programs)| n == name && programs.contains(&s.program));
            if is_unknown {
                findings.unknown.push(UnknownProgram {
                    upstream: u.name.clone(),
                    index: s.index,
                    program: s.program.clone(),
                    supervisor: name.clone(),
                    url: urls
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, u)| u.clone())
                        .unwrap_or_default(),
                });
            }
        }
    }
    findings
        .unanswered
        .sort_by(|a, b| a.supervisor.cmp(&b.supervisor));
    findings.asked.sort();
    findings
}
