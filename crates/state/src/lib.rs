//! The live table that rouse's planes share.
//!
//! The control plane (reconciler, admin) writes server states; the data plane reads them on every
//! request and reports outcomes (in-flight counts, passive failures) back through atomics. Nothing
//! here blocks: the hot path takes no lock unless a server has recently failed.
#![forbid(unsafe_code)]

mod changes;
pub mod journal;
pub mod metrics;
mod responses;
mod server;
mod table;
mod tls;
mod upstream;
mod waiters;

pub use changes::{Changes, Placement, Reloaded, ServerChange, UpstreamChange};
pub use journal::{Entry, Journal};
pub use metrics::Metrics;
pub use server::{InFlightGuard, Server, ServerId};
pub use table::Table;
pub use tls::TlsClient;
pub use upstream::{Admission, HeldGuard, Upstream};
pub use waiters::Waiters;
