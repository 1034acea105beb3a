//! The JSON and text endpoints, and the answer every command and error shares.

pub mod cluster;
pub mod history;
pub mod manual;
pub mod metrics;
pub mod reload;
pub mod status;
pub mod supervisors;
pub mod upgrade;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, Uri};
use serde::{Deserialize, Serialize};

/// The body of every answer to a command (202) and of every refusal (4xx, 5xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// True for a command the control plane took on (202).
    pub accepted: bool,
    /// Why it was refused, as a stable word: `unknown-upstream`, `unknown-server`, `static`,
    /// `nothing-to-do`, `not-running`, `unauthorized`, `forbidden`, `not-found`, `timeout`,
    /// `no-file`, `invalid-config`, `no-upgrade`, `upgrade-failed`, `misdirected` (a foreign `Host`), `bad-request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was done, or why not, for people.
    pub message: String,
    /// The server a manual start or stop acted on (the one it chose when none was named),
    /// so `rouse start|stop --wait` can follow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<usize>,
    /// `POST /upgrade`: the pid of the new rouse process that took over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// A refusal (or, with 202, an acceptance) as JSON.
pub fn answer(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    let accepted = status == StatusCode::ACCEPTED;
    let body = Answer {
        accepted,
        error: (!accepted).then(|| error.to_owned()),
        message: message.into(),
        server: None,
        pid: None,
    };
    (status, Json(body)).into_response()
}

/// A manual command's 202: [`answer`]'s, naming the server it acted on.
pub fn accepted_for(server: usize, message: impl Into<String>) -> Response {
    let body = Answer {
        accepted: true,
        error: None,
        message: message.into(),
        server: Some(server),
        pid: None,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

pub async fn not_found(uri: Uri) -> Response {
    answer(
        StatusCode::NOT_FOUND,
        "not-found",
        format!(
            "no such admin endpoint: {}; see GET /status, GET /history, GET /supervisors, \
             GET /metrics, GET /, POST /upstreams/NAME/start|stop, POST /upstreams/NAME/servers/INDEX/start|stop, \
             POST /reload, POST /upgrade",
            uri.path()
        ),
    )
}
