//! End-to-end test support for rouse.
//!
//! Two halves:
//!
//! - [`backend`]: the test backend (`rouse-test-backend`), an HTTP/1.1 + h2c + WebSocket
//!   server whose endpoints make proxy behaviour observable (which server answered, how many
//!   connections it saw, how much is in flight, whether a streamed body arrived intact). The
//!   binary is a thin CLI over it, and [`harness::spawn_in_process`] runs the same server on a
//!   tokio task when a test does not need a real process.
//! - [`harness`]: helpers for tests: spawn backends as child processes or in process, run a
//!   real supervisord ([`SupervisordProcess`]), pick free ports, poll for conditions instead
//!   of sleeping, read a backend's `/stats`.
//!
//! [`grpc`] is a small gRPC service (`rouse-test-grpc`) and its client, for HTTP/2 upstreams.
//!
//! The byte pattern and checksum that `/bytes` and `/count` use live in [`pattern`], so a test
//! can produce or verify the same data without holding it all in memory.
#![forbid(unsafe_code)]

pub mod backend;
pub mod grpc;
pub mod harness;
pub mod pattern;

pub use backend::{Backend, BackendConfig, ServeOutcome, Stats};
pub use harness::{
    BackendProcess, BackendProcessBuilder, Etcd, InProcessBackend, Pebble, Program, SimpleResponse,
    SupervisordBuilder, SupervisordProcess, backend_bin, free_addr, free_port, http_get,
    spawn_in_process, spawn_in_process_at, spawn_in_process_with, stats, try_stats, unique_addr,
    unique_port, url, wait_until,
};

/// The path of the `rouse-test-backend` binary, as Cargo knows it.
///
/// Prefer this over [`backend_bin()`] in integration tests of this package: Cargo sets
/// `CARGO_BIN_EXE_rouse-test-backend` only when compiling those, and guarantees the binary is
/// built first. The lib function has to guess from the test executable's location instead.
#[macro_export]
macro_rules! backend_bin {
    () => {
        ::std::path::PathBuf::from(env!("CARGO_BIN_EXE_rouse-test-backend"))
    };
}
