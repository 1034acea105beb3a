//! Free ports.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// A port on 127.0.0.1 that was free a moment ago.
///
/// The listener that found it is closed before this returns, so another process can take the
/// port before the caller binds it. That race is rare on a test machine but real: prefer
/// binding port 0 and reading the address back (what the backends here do) whenever the thing
/// under test allows it, and use this only for something that must be told a port up front.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// [`free_port`] as `127.0.0.1:PORT`, with the same race.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read a bound listener's address: {e}"))
}
