//! rouse, wired together: the binary's `main` parses the command line and calls into here; tests
//! call [`Rouse::start`] to run a whole rouse in-process on port 0.
//!
//! # Layout
//! - `rouse-config`: the file, validated into runtime types.
//! - `rouse-core`: pure decisions (balancing, states, backoff).
//! - `rouse-state`: the live table both planes share.
//! - `rouse-proxy`: the data plane.
//! - here: listeners, signals, reload, logging, the admin API client of
//!   `rouse status|start|stop` ([`client`]), and whether supervisord knows the configured
//!   programs ([`online`]).
#![forbid(unsafe_code)]

pub mod activation;
mod app;
pub mod certs;
pub mod client;
pub mod cluster;
mod handed;
pub mod handover;
pub mod load;
pub mod locate;
pub mod logging;
pub mod notify;
pub mod online;
mod reload;
mod serving;
pub mod upgrade;

pub use app::{Options, ReloadRefused, Rouse, bind_admin, bind_listeners, bind_listeners_from};
pub use reload::Reloaded;
