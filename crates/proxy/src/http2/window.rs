//! A receive window as rouse announced it to the client (RFC 9113 §6.9): what the client may
//! still send, and what its readers took and rouse has not yet given back. Window goes back
//! in pieces, not one WINDOW_UPDATE per DATA frame, and sooner the closer the client is to
//! running out.

#[derive(Debug, Clone, Copy)]
pub(crate) struct RecvWindow {
    left: i64,
    taken: u32,
}

impl RecvWindow {
    pub fn new(size: u32) -> RecvWindow {
        RecvWindow {
            left: i64::from(size),
            taken: 0,
        }
    }

    /// A DATA frame of `len` bytes came; false when it is past the window (FLOW_CONTROL_ERROR).
    pub fn receive(&mut self, len: usize) -> bool {
        self.left -= len as i64;
        self.left >= 0
    }

    /// `n` bytes were taken (read, or dropped unread): the increment to announce, when it is
    /// time to.
    pub fn release(&mut self, n: usize) -> Option<u32> {
        self.taken = self
            .taken
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        // As h2 does: once what was taken reaches half of what the client may still send.
        // A client with most of its window left waits for no update, and one about to run
        // out gets the window back as soon as some is taken, so an upload does not stall.
        if self.taken == 0 || i64::from(self.taken) < self.left.max(0) / 2 {
            return None;
        }
        let inc = std::mem::take(&mut self.taken);
        self.left += i64::from(inc);
        Some(inc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_may_send_its_window_and_no_more() {
        let mut w = RecvWindow::new(100);
        assert!(w.receive(60));
        assert!(w.receive(40));
        assert!(!w.receive(1), "one byte past the window");
    }

    #[test]
    fn window_goes_back_sooner_as_the_client_runs_out() {
        let mut w = RecvWindow::new(100);
        assert!(w.receive(20));
        // 80 left: 40 must be taken first.
        assert_eq!(w.release(20), None);
        let mut probe = w;
        assert!(
            probe.receive(80) && !probe.receive(1),
            "nothing announced yet"
        );
        assert!(w.receive(70));
        // 10 left: what was taken (20) is past half of it.
        assert_eq!(w.release(1), Some(21));
        assert!(w.receive(31));
        assert!(!w.receive(1));
        assert_eq!(w.release(0), None);
    }
}
