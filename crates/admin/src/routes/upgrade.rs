//! `POST /upgrade`: a new rouse process takes over the listening sockets and the embedded
//! children, and this one drains and exits (`rouse upgrade`, as SIGUSR2). The answer comes
//! once the new process serves, or has failed.
//!
//! | answer | when |
//! |---|---|
//! | 202 | the new process serves; `pid` is its pid, and this one is draining |
//! | 500 | the new process failed (invalid config, crash, timeout): every word of why; this one keeps serving |
//! | 409 | this rouse cannot start another (not run as `rouse run`) |
//! | 503 | upgrading is not available here |

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::{Answer, answer};
use crate::AdminState;

/// Why an upgrade did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeRefused {
    /// This rouse cannot start another.
    Unavailable(String),
    /// The new process failed; the old one keeps serving.
    Failed(String),
}

/// What the admin API calls to upgrade: `Ok` carries the new process's pid.
pub type UpgradeHook = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<u32, UpgradeRefused>> + Send>> + Send + Sync,
>;

pub async fn handler(State(s): State<AdminState>) -> Response {
    let Some(upgrade) = &s.upgrade else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-running",
            "this rouse cannot upgrade from the admin API",
        );
    };
    match upgrade().await {
        Ok(pid) => {
            let body = Answer {
                accepted: true,
                error: None,
                message: format!(
                    "upgraded: rouse pid {pid} serves now; pid {} finishes its requests and exits",
                    std::process::id()
                ),
                server: None,
                pid: Some(pid),
            };
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(UpgradeRefused::Unavailable(why)) => answer(StatusCode::CONFLICT, "no-upgrade", why),
        Err(UpgradeRefused::Failed(why)) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "upgrade-failed",
            format!("upgrade failed; this rouse keeps serving: {why}"),
        ),
    }
}
