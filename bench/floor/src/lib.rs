//! What the floors (and floor-backend) share: the listener, the one upstream connection per
//! client, and the framing of the benchmark's exchanges. A floor is not a proxy: it takes only
//! bodiless requests (a head ending at the blank line) and responses framed by
//! Content-Length, which is all `bench/proxy.sh` (`FLOOR=1`) sends through it, and it
//! forwards bytes untouched.

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

/// Bytes of an exchange's buffer: request or response, one at a time.
pub const BUF: usize = 8192;

/// Where a connection's exchange is: the one operation it waits for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    ReadRequest,
    WriteUpstream,
    ReadResponse,
    WriteClient,
}

/// One client connection's exchange, whatever drives its reads and writes: the bytes of the
/// request or the response in hand, how much of them is written, and the next step.
pub struct Exchange {
    pub buf: Box<[u8; BUF]>,
    /// Bytes in `buf`.
    pub len: usize,
    /// Of those, written on.
    pub sent: usize,
    pub step: Step,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange {
            buf: Box::new([0; BUF]),
            len: 0,
            sent: 0,
            step: Step::ReadRequest,
        }
    }
}

impl Exchange {
    /// What the next read fills, or the next write sends.
    pub fn room(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    pub fn unsent(&self) -> &[u8] {
        &self.buf[self.sent..self.len]
    }

    /// Takes `n`, the result of the step's read or write; false once the connection is over
    /// (the peer closed, or a head does not fit).
    pub fn took(&mut self, n: usize) -> bool {
        match self.step {
            Step::ReadRequest | Step::ReadResponse => {
                if n == 0 {
                    return false;
                }
                self.len += n;
                let whole = if self.step == Step::ReadRequest {
                    head_end(&self.buf[..self.len]).is_some()
                } else {
                    response_len(&self.buf[..self.len]).is_some_and(|l| l <= self.len)
                };
                if whole {
                    self.sent = 0;
                    self.step = if self.step == Step::ReadRequest {
                        Step::WriteUpstream
                    } else {
                        Step::WriteClient
                    };
                } else if self.len == BUF {
                    return false;
                }
            }
            Step::WriteUpstream | Step::WriteClient => {
                self.sent += n;
                if self.sent == self.len {
                    self.len = 0;
                    self.step = if self.step == Step::WriteUpstream {
                        Step::ReadResponse
                    } else {
                        Step::ReadRequest
                    };
                }
            }
        }
        true
    }
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

/// [`listen`]'s socket for mio, registered with `poll` for readability under `token`.
pub fn listen_mio(
    poll: &mio::Poll,
    addr: SocketAddr,
    token: mio::Token,
) -> std::io::Result<mio::net::TcpListener> {
    let std_listener = listen(addr)?;
    std_listener.set_nonblocking(true)?;
    let mut listener = mio::net::TcpListener::from_std(std_listener);
    poll.registry()
        .register(&mut listener, token, mio::Interest::READABLE)?;
    Ok(listener)
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
    fn an_exchange_goes_round() {
        let mut x = Exchange::default();
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        x.room()[..10].copy_from_slice(&req[..10]);
        assert!(x.took(10));
        assert_eq!(x.step, Step::ReadRequest);
        x.room()[..req.len() - 10].copy_from_slice(&req[10..]);
        assert!(x.took(req.len() - 10));
        assert_eq!((x.step, x.unsent()), (Step::WriteUpstream, &req[..]));
        assert!(x.took(5));
        assert!(x.took(req.len() - 5));
        assert_eq!((x.step, x.len), (Step::ReadResponse, 0));
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        x.room()[..resp.len()].copy_from_slice(resp);
        assert!(x.took(resp.len()));
        assert!(x.took(resp.len()));
        assert_eq!(x.step, Step::ReadRequest);
        assert!(!x.took(0), "the client closed");
    }

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
