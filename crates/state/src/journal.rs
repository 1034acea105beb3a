//! Recent lifecycle events (starts, readiness, stops, failures, with their reasons), for the
//! dashboard and `/status`: operators see why a server changed without reading logs.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

/// How many events are kept.
const KEEP: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Wall-clock time, for people.
    pub at: SystemTime,
    pub upstream: String,
    pub server: usize,
    pub address: String,
    /// "start", "ready", "adopt", "drain", "stop", "stopped", "failed", "start-failed".
    pub what: &'static str,
    /// Why: a stop reason, an error, a duration.
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Journal {
    entries: Mutex<VecDeque<Entry>>,
}

impl Journal {
    pub fn record(&self, entry: Entry) {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if e.len() == KEEP {
            e.pop_front();
        }
        e.push_back(entry);
    }

    /// Whether older events may have been let go: the journal holds as many as it keeps.
    pub fn is_full(&self) -> bool {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len() == KEEP
    }

    /// Newest first.
    pub fn recent(&self, limit: usize) -> Vec<Entry> {
        let e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.iter().rev().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_lists_them_first() {
        let j = Journal::default();
        for i in 0..(KEEP + 5) {
            j.record(Entry {
                at: SystemTime::UNIX_EPOCH,
                upstream: "u".into(),
                server: i,
                address: String::new(),
                what: "start",
                detail: String::new(),
            });
        }
        let r = j.recent(3);
        assert_eq!(
            r.iter().map(|e| e.server).collect::<Vec<_>>(),
            [KEEP + 4, KEEP + 3, KEEP + 2]
        );
        assert_eq!(j.recent(usize::MAX).len(), KEEP);
        assert!(j.is_full());
        assert!(!Journal::default().is_full());
    }
}
