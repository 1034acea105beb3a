//! rouse's HTTP/2 server (RFC 9113), made for proxying: one task per client connection reads
//! its frames, decodes request heads with HPACK (RFC 7541) straight into the request
//! `Proxy::handle` takes, polls each stream's handler and answer body in that same task, and
//! writes the answers as the client's flow control allows.
//!
//! It replaced h2 under hyper's server (and then h2 alone), whose general machinery (a task
//! and shared, locked state per stream, a dynamic HPACK table to encode with, a send
//! scheduler) cost an h2c request more user time than everything rouse does with the request
//! (docs/benchmarks.md, session 13). What it leaves out: server push (clients are told
//! ENABLE_PUSH 0 is all rouse does), stream priorities (ignored, as RFC 9113 lets a server
//! do), and extended CONNECT (WebSockets over HTTP/2 are not offered).

mod conn;
mod frame;
mod hpack;
mod huffman;
mod out;
mod recv;
mod request;
mod shared;
mod window;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use conn::Connection;
pub use recv::H2Body;

use crate::activity::Activity;
use crate::proxy::{Proxy, Settings};

/// An idle client is pinged this often, and closed when it has not answered by the next.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// What rouse's server announces and holds to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// The receive window of each stream and of the connection (`http2_body_preread_size`,
    /// 1 MiB by default, as hyper's server had it: the protocol's 64 KiB throttles an upload
    /// on any link with latency); at least the protocol's 65,535 (config validation).
    pub window: u32,
    /// `http2_max_concurrent_streams`.
    pub max_streams: usize,
    /// SETTINGS_MAX_HEADER_LIST_SIZE; a larger head is answered 431.
    pub max_header_list: usize,
    /// A header block (HEADERS and its CONTINUATIONs) past this closes the connection: no
    /// head within the limit compresses to more.
    pub max_block: usize,
}

impl Config {
    pub fn of(settings: &Settings) -> Config {
        let max_header_list = crate::limits::h2_header_list_size(&settings.head) as usize;
        Config {
            // The protocol's floor, whatever made the settings: a connection's window can only
            // grow from it.
            window: settings.http2_window.max(frame::DEFAULT_WINDOW as u32),
            max_streams: settings.http2_max_streams.max(1),
            max_header_list,
            max_block: max_header_list.saturating_mul(2).max(64 * 1024),
        }
    }
}

/// What each stream of a connection needs.
pub(crate) struct Streams {
    pub proxy: Arc<Proxy>,
    pub peer: SocketAddr,
    /// The connection came over TLS.
    pub https: bool,
    pub activity: Arc<Activity>,
}
