//! `GET /supervisors`: each supervisor of the config (the embedded one, each
//! `[supervisors.NAME]`), whether it answers, and its programs' states, pids and uptimes,
//! asked of it now (each within 3 s).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use rouse_control::SupervisorReport;
use serde::{Deserialize, Serialize};

use crate::AdminState;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervisors {
    pub supervisors: Vec<SupervisorJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorJson {
    /// `embedded`, or the `[supervisors.NAME]` name.
    pub name: String,
    /// `embedded` or `supervisord`.
    pub kind: String,
    pub reachable: bool,
    /// Why it could not be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub programs: Vec<ProgramJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramJson {
    pub program: String,
    /// supervisord's state name: `RUNNING`, `STOPPED`, `BACKOFF`, ...
    pub state: String,
    pub pid: Option<u32>,
    /// supervisord's description: `pid 123, uptime 0:01:02`, `exited with status 1`, ...
    pub description: String,
}

impl From<SupervisorReport> for SupervisorJson {
    fn from(r: SupervisorReport) -> SupervisorJson {
        SupervisorJson {
            name: r.name,
            kind: r.kind.to_owned(),
            reachable: r.error.is_none(),
            error: r.error,
            programs: r
                .programs
                .into_iter()
                .map(|p| ProgramJson {
                    program: p.program,
                    state: p.state.name().to_owned(),
                    pid: p.pid,
                    description: p.description,
                })
                .collect(),
        }
    }
}

pub async fn handler(State(state): State<AdminState>) -> Response {
    let supervisors = state
        .control
        .supervisors()
        .await
        .into_iter()
        .map(SupervisorJson::from)
        .collect();
    (
        [(http::header::CACHE_CONTROL, "no-store")],
        Json(Supervisors { supervisors }),
    )
        .into_response()
}
