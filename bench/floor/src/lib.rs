//! What both floors share: the listener, the one upstream connection per client, and the
//! framing of the benchmark's exchanges. A floor is not a proxy: it takes only bodiless
//! requests (a head ending at the blank line) and responses framed by Content-Length, which
//! is all `bench/floor.sh` sends through it, and it forwards bytes untouched.

use std::net::{SocketAddr, TcpStream};

/// The end of a head at the start of `b` (past its blank line), if it is whole.
pub fn head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The length of the response at the start of `b` (head and Content-Length body), once its
/// head is whole; `None` before, or for a head it cannot frame.
pub fn response_len(b: &[u8]) -> Option<usize> {
    let end = head_end(b)?;
    let head = std::str::from_utf8(&b[..end]).ok()?;
    let mut length = 0;
    for line in head.split("\r\n") {
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    Some(end + length)
}

/// A listening socket with SO_REUSEPORT, so that several floors (one per core) share an
/// address as rouse's workers and nginx's do.
pub fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

/// The upstream connection of one client connection (opened with it, as a warm pool would
/// give one), without Nagle's delay as every proxy here runs.
pub fn upstream(backend: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(backend)?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// `LISTEN BACKEND` from the command line.
pub fn args() -> (SocketAddr, SocketAddr) {
    let mut a = std::env::args().skip(1);
    let parse = |v: Option<String>| -> SocketAddr {
        v.and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("usage: floor-epoll|floor-uring LISTEN_ADDR BACKEND_ADDR"))
    };
    (parse(a.next()), parse(a.next()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(response_len(r), Some(r.len()));
        assert_eq!(response_len(b"HTTP/1.1 204 No Content\r\n\r\n"), Some(27));
        assert_eq!(
            response_len(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            None
        );
    }
}
