//! rouse's control plane.
//!
//! One reconciler loop ([`Control`]) owns every lifecycle decision: it builds a view of each
//! supervised upstream from the shared table, asks the pure scaling policy
//! (`rouse-core::policy`) what to do, moves servers through the pure state machine
//! (`rouse-core::transition`), and carries the actions out through the upstream's supervisor
//! driver. Slow work (supervisor calls, readiness probes) runs in tasks that report back to the
//! loop as events, so the loop itself never waits on a process or a socket.
#![forbid(unsafe_code)]

pub mod probe;
mod rate;
mod reconciler;
pub mod resolver;

pub use reconciler::supervisors::SupervisorReport;
pub use reconciler::{Control, ControlHandle, Drivers, Manual, ManualError, ManualOp};
pub use resolver::Resolver;
