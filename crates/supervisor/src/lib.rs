//! Supervisor drivers: the seam between rouse's reconciler and whatever runs the processes.
//!
//! [`Supervisor`] is spoken in supervisord's vocabulary so that the embedded driver
//! ([`Embedded`]) and a supervisord driver over XML-RPC are interchangeable to the reconciler.
#![forbid(unsafe_code)]

pub mod driver;
pub mod embedded;
pub mod supervisord;

pub use driver::{BoxFuture, ProcessInfo, ProcessState, Supervisor, SupervisorError};
pub use embedded::{Embedded, EmbeddedOptions, HandedChild, ProgramSpec};
pub use supervisord::Supervisord;
