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
use rouse_floor::{args, head_end, listen, response_len, upstream};

const BUF: usize = 8192;
const ACCEPT: u64 = u64::MAX;

#[derive(Clone, Copy, PartialEq)]
enum Step {
    ReadRequest = 0,
    WriteUpstream = 1,
    ReadResponse = 2,
    WriteClient = 3,
}

struct Conn {
    client: OwnedFd,
    server: OwnedFd,
    buf: Box<[u8; BUF]>,
    len: usize,
    sent: usize,
    step: Step,
}

impl Conn {
    /// The operation that moves this connection on, tagged with its index.
    fn next_op(&mut self, at: usize) -> squeue::Entry {
        let fd = |f: &OwnedFd| types::Fd(f.as_raw_fd());
        let op = match self.step {
            Step::ReadRequest => opcode::Recv::new(
                fd(&self.client),
                self.buf[self.len..].as_mut_ptr(),
                (BUF - self.len) as u32,
            )
            .build(),
            Step::WriteUpstream => opcode::Send::new(
                fd(&self.server),
                self.buf[self.sent..].as_ptr(),
                (self.len - self.sent) as u32,
            )
            .build(),
            Step::ReadResponse => opcode::Recv::new(
                fd(&self.server),
                self.buf[self.len..].as_mut_ptr(),
                (BUF - self.len) as u32,
            )
            .build(),
            Step::WriteClient => opcode::Send::new(
                fd(&self.client),
                self.buf[self.sent..].as_ptr(),
                (self.len - self.sent) as u32,
            )
            .build(),
        };
        op.user_data(at as u64)
    }

    /// Takes the result `n` of the operation in flight; false once the connection is over.
    fn complete(&mut self, n: usize) -> bool {
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
                        buf: Box::new([0; BUF]),
                        len: 0,
                        sent: 0,
                        step: Step::ReadRequest,
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
            if result < 0 || !c.complete(result as usize) {
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
