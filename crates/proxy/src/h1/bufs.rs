//! Buffers lent to a connection for one exchange and given back at its end, as nginx frees
//! its buffers between keep-alive requests: an idle client holds none.
//!
//! A free list per thread: a connection's task takes and gives on whatever worker runs it,
//! and the list is never borrowed across an await.

use std::cell::RefCell;

use super::request::{Field, Head};

/// Room for a typical head and a small body in one read.
const READ: usize = 16 * 1024;
/// Buffers that grew past this are not kept: one large exchange must not pin memory.
const KEEP_MAX: usize = 128 * 1024;
/// Free buffer sets kept per thread: enough for a burst of exchanges at once, small next to
/// what those connections cost anyway.
const FREE_MAX: usize = 32;

#[derive(Debug, Default)]
pub(crate) struct Bufs {
    /// The client's bytes: a head, its body, maybe the start of the next request.
    pub read: Vec<u8>,
    pub head: Head,
    /// What goes out next (to the server, then to the client).
    pub out: Vec<u8>,
    /// The server's bytes.
    pub up: Vec<u8>,
    /// Where the fields of the server's head are in `up`.
    pub up_fields: Vec<Field>,
}

thread_local! {
    // Boxed: a connection holds its set as one pointer, and hands it back the same way.
    #[allow(clippy::vec_box)]
    static FREE: RefCell<Vec<Box<Bufs>>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn take() -> Box<Bufs> {
    let reused = FREE.with(|f| f.borrow_mut().pop());
    reused.unwrap_or_else(|| {
        Box::new(Bufs {
            read: Vec::with_capacity(READ),
            head: Head::default(),
            // Grown as an exchange needs them, and kept with the rest.
            out: Vec::new(),
            up: Vec::new(),
            up_fields: Vec::new(),
        })
    })
}

pub(crate) fn give(mut b: Box<Bufs>) {
    if b.read.capacity() > KEEP_MAX || b.out.capacity() > KEEP_MAX || b.up.capacity() > KEEP_MAX {
        return;
    }
    b.read.clear();
    b.out.clear();
    b.up.clear();
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < FREE_MAX {
            f.push(b);
        }
    });
}
