//! rouse's data plane.
//!
//! A request flows: `server` accepts the connection (HTTP/1.1 or h2c) → `Proxy::handle` finds
//! the upstream with `router` → the upstream's balancer picks a ready server → `headers` rewrites
//! the request → `pool` lends a keep-alive connection (or connects) → the response streams back
//! through `body`, which returns the connection to its pool and ends the in-flight count.
//! Connect failures are reported to the server's passive-failure tracker and the request, whose
//! body was not touched, is retried on another server. WebSocket upgrades are spliced by
//! `upgrade`. The data plane never starts or stops anything: it reads the shared table
//! (`rouse-state`) and reports outcomes into it.
#![forbid(unsafe_code)]

mod accept;
pub mod access;
mod activity;
pub mod answer;
pub mod body;
mod buffer;
mod client_body;
mod client_io;
mod conn_limit;
pub mod connect;
mod connection;
mod forward;
mod h1;
pub mod headers;
mod hold;
mod http2;
mod idle;
pub mod limits;
pub mod listen;
pub mod pool;
mod proxy;
mod redirect;
mod request_body;
pub mod router;
mod send_timeout;
mod server;
mod signal;
mod sock;
mod tls;
mod upgrade;
mod workers;

pub use listen::{Bound, Kind, Listener, Spec};
pub use proxy::{Proxy, Settings};
pub use server::{serve, serve_on};
pub use workers::Workers;
