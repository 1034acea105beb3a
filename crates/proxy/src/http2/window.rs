//! A receive window as rouse announced it to the client (RFC 9113 §6.9): what the client may
//! still send, and what its readers took and rouse has not yet given back. Window goes back
//! once half of it was taken, so a steady upload costs one WINDOW_UPDATE per half window,
//! not one per DATA frame.

#[derive(Debug, Clone, Copy)]
pub(crate) struct RecvWindow {
    left: i64,
    taken: u32,
    size: u32,
}

impl RecvWindow {
    pub fn new(size: u32) -> RecvWindow {
        RecvWindow {
            left: i64::from(size),
            taken: 0,
            size,
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
        if self.taken < self.size / 2 {
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
    fn window_goes_back_once_half_of_it_was_taken() {
        let mut w = RecvWindow::new(100);
        assert!(w.receive(100));
        assert_eq!(w.release(30), None);
        let mut probe = w;
        assert!(
            !probe.receive(1),
            "nothing announced yet: nothing more may come"
        );
        assert_eq!(w.release(20), Some(50));
        assert!(w.receive(50));
        assert!(!w.receive(1));
        assert_eq!(w.release(50), Some(50));
        assert_eq!(w.release(49), None);
    }
}
