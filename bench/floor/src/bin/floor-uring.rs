//! The io_uring floor: one thread, one ring, the same four operations per exchange as the
//! epoll floor, submitted and reaped in batches (one `io_uring_enter` for every operation
//! the last batch of completions called for). The ring is set up as recommended for one
//! thread: single issuer, deferred task running.
//!
//! Unsafe: a submission hands the kernel a raw pointer into a buffer. Each connection has
//! exactly one operation in flight, on its own boxed buffer, and is dropped only once that
//! operation has completed, so no buffer is freed or moved while the kernel may use it.

use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{IoUring, opcode, squeue, types};
use rouse_floor::{Exchange, Step, args, listen, upstream};

const ACCEPT: u64 = u64::MAX;

struct Conn {
    client: OwnedFd,
    server: OwnedFd,
    x: Exchange,
}

impl Conn {
    /// The operation that moves this connection on, tagged with its index.
    fn next_op(&mut self, at: usize) -> squeue::Entry {
        let peer = match self.x.step {
            Step::ReadRequest | Step::WriteClient => &self.client,
            Step::WriteUpstream | Step::ReadResponse => &self.server,
        };
        let fd = types::Fd(peer.as_raw_fd());
        let op = if matches!(self.x.step, Step::ReadRequest | Step::ReadResponse) {
            let room = self.x.room();
            opcode::Recv::new(fd, room.as_mut_ptr(), room.len() as u32).build()
        } else {
            let unsent = self.x.unsent();
            opcode::Send::new(fd, unsent.as_ptr(), unsent.len() as u32).build()
        };
        op.user_data(at as u64)
    }
}

fn main() -> std::io::Result<()> {
    let (addr, backend) = args();
    let listener: TcpListener = listen(addr)?;
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .setup_defer_taskrun()
        .build(4096)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut pending: Vec<squeue::Entry> = vec![
        opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
            .build()
            .user_data(ACCEPT),
    ];
    let mut done: Vec<(u64, i32, bool)> = Vec::new();
    loop {
        for op in pending.drain(..) {
            // SAFETY: see the module's doc: the buffer an operation names outlives it.
            while unsafe { ring.submission().push(&op) }.is_err() {
                ring.submit()?;
            }
        }
        ring.submit_and_wait(1)?;
        done.clear();
        done.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), io_uring::cqueue::more(c.flags()))),
        );
        for &(tag, result, more) in &done {
            if tag == ACCEPT {
                if !more {
                    // The multishot accept ended (an error): arm it again.
                    pending.push(
                        opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
                            .build()
                            .user_data(ACCEPT),
                    );
                }
                if result >= 0 {
                    // SAFETY: a completed accept's result is a new descriptor we own.
                    let client = unsafe { OwnedFd::from_raw_fd(result as RawFd) };
                    nodelay(&client);
                    let server = OwnedFd::from(upstream(backend)?);
                    let at = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    let mut c = Conn {
                        client,
                        server,
                        x: Exchange::default(),
                    };
                    pending.push(c.next_op(at));
                    conns[at] = Some(c);
                }
                continue;
            }
            let at = tag as usize;
            let Some(c) = conns[at].as_mut() else {
                continue;
            };
            if result < 0 || !c.x.took(result as usize) {
                conns[at] = None;
                continue;
            }
            pending.push(c.next_op(at));
        }
    }
}

fn nodelay(fd: &OwnedFd) {
    let _ = socket2::SockRef::from(fd).set_nodelay(true);
}
