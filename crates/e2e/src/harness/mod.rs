//! Helpers for end-to-end tests.
//!
//! - [`BackendProcess`]: a `rouse-test-backend` child process (crashes, slow starts, signals).
//! - [`spawn_in_process`]: the same server on a tokio task, when a process is not the point.
//! - [`free_port`] / [`free_addr`]: an address to give something that must be told one;
//!   [`unique_port`] / [`unique_addr`] for one that is bound again after a kill or restart.
//! - [`SupervisordProcess`]: a real supervisord of the test's own, with [`Program`] sections.
//! - [`Etcd`]: a real etcd of the test's own, stopped and started again at will; over TLS
//!   (and client certificates) with [`Etcd::start_tls`].
//! - [`Pebble`]: a real ACME CA (Debian's pebble) of the test's own, validating HTTP-01.
//! - [`wait_until`]: poll for a condition instead of sleeping and hoping.
//! - [`stats`] / [`http_get`]: a minimal HTTP/1.1 client, so the lib needs no reqwest.
//!
//! The helpers panic with a message on failure: they are for tests.

mod client;
mod etcd;
mod in_process;
mod net;
mod pebble;
mod pki;
mod process;
mod supervisord;
mod wait;

pub use client::{SimpleResponse, http_get, stats, try_stats, url};
pub use etcd::Etcd;
pub use in_process::{
    InProcessBackend, spawn_in_process, spawn_in_process_at, spawn_in_process_with,
};
pub use net::{free_addr, free_port, unique_addr, unique_port};
pub use pebble::Pebble;
pub use process::{BackendProcess, BackendProcessBuilder, backend_bin};
pub use supervisord::{Program, SupervisordBuilder, SupervisordProcess};
pub use wait::{Ready, wait_until};
