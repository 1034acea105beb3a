//! rouse's HTTP/1.1 fast path: a forwarding loop made for a proxy, in front of hyper.
//!
//! A client connection is served here first: its request head is parsed once (httparse) into
//! offsets over the read buffer, written again for the server straight from those bytes, and
//! sent on a raw pooled connection; the response head is parsed and written back the same
//! way and the body copied, all in the connection's own task, with buffers lent only for the
//! length of an exchange. What the fast path does not take (see `request` and `conn`) is
//! handed to hyper at a request boundary with the bytes already read (`fallback`); hyper
//! serves that request and gives the connection back (`connection::hyper_once`), or keeps it
//! when it would not keep it alive itself or the fast path would decline all that follows. hyper's side sends its requests without a body to
//! `http1` servers the same way (`relay`, `raw_body`).

mod bufs;
pub(crate) mod conn;
mod copy;
pub(crate) mod date;
mod decode;
mod exchange;
pub(crate) mod fallback;
mod lines;
pub(crate) mod raw_body;
pub(crate) mod relay;
pub(crate) mod request;
mod response;
mod rewrite;
mod timer;
pub(crate) mod upstream;

pub(crate) use conn::{ClientStream, Outcome, serve};
pub(crate) use rewrite::push_ip;
