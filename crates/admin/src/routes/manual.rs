//! `POST /upstreams/{name}/start|stop` and `POST /upstreams/{name}/servers/{index}/start|stop`:
//! manual commands, carried out by the control plane's loop (`ControlHandle::manual`).
//!
//! | answer | when |
//! |---|---|
//! | 202 | the control plane took the command on (or the server already is where it was asked to be); `server` names the server it acted on |
//! | 404 | no such upstream, or no such server index |
//! | 409 | a static upstream (`supervisor = "none"`), or nothing to do (every server up / none running) |
//! | 503 | the control plane is not running |

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use rouse_control::{ManualError, ManualOp};

use super::{accepted_for, answer};
use crate::AdminState;

pub async fn upstream_start(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    act(&s, &name, None, ManualOp::Start).await
}

pub async fn upstream_stop(State(s): State<AdminState>, Path(name): Path<String>) -> Response {
    act(&s, &name, None, ManualOp::Stop).await
}

pub async fn server_start(
    State(s): State<AdminState>,
    Path((name, index)): Path<(String, String)>,
) -> Response {
    with_index(&s, &name, &index, ManualOp::Start).await
}

pub async fn server_stop(
    State(s): State<AdminState>,
    Path((name, index)): Path<(String, String)>,
) -> Response {
    with_index(&s, &name, &index, ManualOp::Stop).await
}

async fn with_index(s: &AdminState, name: &str, index: &str, op: ManualOp) -> Response {
    match index.parse::<usize>() {
        Ok(i) => act(s, name, Some(i), op).await,
        // Not a number is not a server either.
        Err(_) => answer(
            StatusCode::NOT_FOUND,
            "unknown-server",
            format!("upstream {name:?} has no server {index:?} (servers are numbered from 0)"),
        ),
    }
}

/// Checks what the table can tell at once (names, indexes, static upstreams), then hands the
/// command to the control plane.
async fn act(s: &AdminState, name: &str, index: Option<usize>, op: ManualOp) -> Response {
    let table = s.table.load_full();
    let Some(up) = table.upstream(name) else {
        let known: Vec<&str> = table.upstreams.iter().map(|u| u.name()).collect();
        return answer(
            StatusCode::NOT_FOUND,
            "unknown-upstream",
            format!(
                "no upstream named {name:?} (upstreams: {})",
                known.join(", ")
            ),
        );
    };
    if let Some(i) = index.filter(|&i| i >= up.servers.len()) {
        return refusal(ManualError::UnknownServer {
            upstream: name.to_owned(),
            index: i,
        });
    }
    if up.is_static() {
        return refusal(ManualError::Static(name.to_owned()));
    }
    drop(table);
    let verb = match op {
        ManualOp::Start => "start",
        ManualOp::Stop => "stop",
    };
    match s.control.manual(name, index, op).await {
        Ok(done) => {
            tracing::info!(upstream = name, ?index, "manual {verb}: {}", done.message);
            accepted_for(done.index, done.message)
        }
        Err(e) => {
            tracing::info!(upstream = name, ?index, "manual {verb} refused: {e}");
            refusal(e)
        }
    }
}

/// The HTTP status and error word for a refused command.
pub fn status_of(e: &ManualError) -> (StatusCode, &'static str) {
    match e {
        ManualError::UnknownUpstream(_) => (StatusCode::NOT_FOUND, "unknown-upstream"),
        ManualError::UnknownServer { .. } => (StatusCode::NOT_FOUND, "unknown-server"),
        ManualError::Static(_) => (StatusCode::CONFLICT, "static"),
        ManualError::NothingToDo(_) => (StatusCode::CONFLICT, "nothing-to-do"),
        ManualError::NotRunning => (StatusCode::SERVICE_UNAVAILABLE, "not-running"),
    }
}

fn refusal(e: ManualError) -> Response {
    let (status, word) = status_of(&e);
    answer(status, word, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_the_documented_codes() {
        let cases = [
            (ManualError::UnknownUpstream("x".into()), 404),
            (
                ManualError::UnknownServer {
                    upstream: "x".into(),
                    index: 9,
                },
                404,
            ),
            (ManualError::Static("x".into()), 409),
            (ManualError::NothingToDo("every server is up".into()), 409),
            (ManualError::NotRunning, 503),
        ];
        for (e, code) in cases {
            assert_eq!(status_of(&e).0.as_u16(), code, "{e}");
        }
    }
}
