//! `POST /reload`: re-reads the config file rouse was started with, as SIGHUP does, and says
//! how it went: the errors of an invalid file come back to whoever asked (`rouse reload`),
//! instead of only to rouse's log.
//!
//! | answer | when |
//! |---|---|
//! | 202 | applied: the message says what changed, one line per upstream, and names the sections that need a restart, if any changed |
//! | 422 | the file is invalid: every error as `FILE:LINE:COL: message`; nothing changed |
//! | 409 | rouse was not started from a file, so there is nothing to re-read |
//! | 503 | reloading is not available here |

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;

use super::answer;
use crate::AdminState;

/// Why a reload was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadRefused {
    /// The config did not come from a file.
    NoFile,
    /// The file is invalid (or unreadable): one line per error.
    Invalid(Vec<String>),
}

/// What the admin API calls to reload: `Ok` carries what was applied, for people.
pub type ReloadHook = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, ReloadRefused>> + Send>> + Send + Sync,
>;

pub async fn handler(State(s): State<AdminState>) -> Response {
    let Some(reload) = &s.reload else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-running",
            "this rouse cannot reload from the admin API",
        );
    };
    match reload().await {
        Ok(done) => answer(StatusCode::ACCEPTED, "", done),
        Err(ReloadRefused::NoFile) => answer(
            StatusCode::CONFLICT,
            "no-file",
            "rouse was not started from a config file: there is nothing to re-read",
        ),
        Err(ReloadRefused::Invalid(errors)) => answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-config",
            format!(
                "the config file is invalid; the running configuration is kept:\n{}",
                errors.join("\n")
            ),
        ),
    }
}
