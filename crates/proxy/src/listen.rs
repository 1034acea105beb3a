//! Binding a listening socket with an explicit backlog.
//!
//! tokio's `TcpListener::bind` listens with a fixed backlog of 1024, which the kernel may
//! further cut; under a burst of connects the accept queue overflowed (`ListenOverflows` rose
//! and clients waited 1 s for a SYN retransmit). nginx passes 511 on Linux and lets the
//! operator raise it; so does rouse (`listen_backlog`), capped by `net.core.somaxconn` as the
//! kernel would cap it anyway, so that the value logged is the one in force.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

const SOMAXCONN: &str = "/proc/sys/net/core/somaxconn";

/// A nonblocking listener on `addr` with SO_REUSEADDR (a restart does not wait for the old
/// process's TIME_WAIT sockets) and a backlog of `backlog`, capped by somaxconn. Must be called
/// inside a tokio runtime.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let somaxconn = std::fs::read_to_string(SOMAXCONN)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    socket.listen(effective_backlog(backlog, somaxconn))?;
    TcpListener::from_std(socket.into())
}

/// What `listen(2)` is given: `requested`, at most somaxconn when known, at least 1, and
/// within the `int` the call takes.
fn effective_backlog(requested: u32, somaxconn: Option<u32>) -> i32 {
    let capped = somaxconn.map_or(requested, |max| requested.min(max)).max(1);
    i32::try_from(capped).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_is_capped_by_somaxconn_and_fits_an_int() {
        assert_eq!(effective_backlog(511, Some(4096)), 511);
        assert_eq!(effective_backlog(8192, Some(4096)), 4096);
        assert_eq!(effective_backlog(u32::MAX, None), i32::MAX);
        assert_eq!(effective_backlog(0, Some(4096)), 1);
    }

    #[tokio::test]
    async fn binds_port_zero_and_accepts() {
        let l = bind("127.0.0.1:0".parse().unwrap(), 511).unwrap();
        let addr = l.local_addr().unwrap();
        let (connected, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        connected.unwrap();
        accepted.unwrap();
    }
}
