//! The epoll floor: one thread, mio (edge-triggered epoll, as tokio uses), four system calls
//! per exchange (read the request, write it upstream, read the response, write it back) and
//! nothing else: no parsing beyond finding a head's end, no header rewriting, no timers.
#![forbid(unsafe_code)]

use std::io::{ErrorKind, Read, Write};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rouse_floor::{Exchange, Step, args, listen_mio, upstream};

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    client: TcpStream,
    server: TcpStream,
    x: Exchange,
    /// Readiness known since the last WouldBlock (edge-triggered: an event says "changed").
    client_readable: bool,
    server_readable: bool,
    client_writable: bool,
    server_writable: bool,
}

fn main() -> std::io::Result<()> {
    let (addr, backend) = args();
    let mut poll = Poll::new()?;
    let listener = listen_mio(&poll, addr, LISTENER)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut woken = Vec::new();
    loop {
        poll.poll(&mut events, None)?;
        woken.clear();
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok((mut client, _)) = listener.accept() {
                    client.set_nodelay(true)?;
                    let server = upstream(backend)?;
                    server.set_nonblocking(true)?;
                    let mut server = TcpStream::from_std(server);
                    let at = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    let both = Interest::READABLE | Interest::WRITABLE;
                    poll.registry().register(&mut client, Token(at * 2), both)?;
                    poll.registry()
                        .register(&mut server, Token(at * 2 + 1), both)?;
                    conns[at] = Some(Conn {
                        client,
                        server,
                        x: Exchange::default(),
                        client_readable: true,
                        server_readable: false,
                        client_writable: true,
                        server_writable: true,
                    });
                    woken.push(at);
                }
                continue;
            }
            let at = ev.token().0 / 2;
            let server_side = ev.token().0 % 2 == 1;
            if let Some(c) = conns[at].as_mut() {
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                let writable = ev.is_writable() || ev.is_error();
                if server_side {
                    c.server_readable |= readable;
                    c.server_writable |= writable;
                } else {
                    c.client_readable |= readable;
                    c.client_writable |= writable;
                }
                woken.push(at);
            }
        }
        for &at in &woken {
            if let Some(c) = conns[at].as_mut()
                && !advance(c)
            {
                conns[at] = None;
            }
        }
    }
}

/// Moves `c` on as far as its sockets allow; false once it is over (closed or failed).
fn advance(c: &mut Conn) -> bool {
    loop {
        let step = c.x.step;
        let got = match step {
            Step::ReadRequest if c.client_readable => c.client.read(c.x.room()),
            Step::WriteUpstream if c.server_writable => c.server.write(c.x.unsent()),
            Step::ReadResponse if c.server_readable => c.server.read(c.x.room()),
            Step::WriteClient if c.client_writable => c.client.write(c.x.unsent()),
            _ => return true,
        };
        let room = c.x.room().len();
        let n = match got {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                *readiness(c, step) = false;
                continue;
            }
            Err(_) => return false,
        };
        // A short read emptied the socket, as tokio assumes: no read to WouldBlock.
        if matches!(step, Step::ReadRequest | Step::ReadResponse) && n > 0 && n < room {
            *readiness(c, step) = false;
        }
        if !c.x.took(n) {
            return false;
        }
    }
}

/// The readiness flag that `step` waits on.
fn readiness(c: &mut Conn, step: Step) -> &mut bool {
    match step {
        Step::ReadRequest => &mut c.client_readable,
        Step::WriteUpstream => &mut c.server_writable,
        Step::ReadResponse => &mut c.server_readable,
        Step::WriteClient => &mut c.client_writable,
    }
}
