//! The access log: one line per answered request, like nginx's `access_log`, to stderr or to
//! a file reopened on SIGUSR1, as `combined` text or JSON, optionally only some statuses or a
//! sample of the successful answers.

mod clock;
mod format;
pub(crate) mod request_id;
mod seen;
mod sink;

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use rouse_config::{AccessLogFormat, LogConfig};

pub(crate) use format::Entry;
pub(crate) use seen::{Captured, Seen};
pub use sink::Sink;

/// `[log]`'s access-log settings with the sink they write to.
#[derive(Debug)]
pub struct AccessLog {
    sink: Arc<Sink>,
    format: AccessLogFormat,
    status: Vec<(u16, u16)>,
    /// Answers under 400 are logged when a random u64 is below this.
    sample_below: Option<u64>,
}

impl AccessLog {
    /// `None` when `[log] access_log = false`; an error when its file cannot be opened.
    pub fn start(log: &LogConfig) -> std::io::Result<Option<AccessLog>> {
        if !log.access_log {
            return Ok(None);
        }
        let sink = match &log.access_log_file {
            Some(path) => Sink::file(path)?,
            None => Sink::stderr()?,
        };
        Ok(Some(AccessLog::new(Arc::new(sink), log)))
    }

    pub fn new(sink: Arc<Sink>, log: &LogConfig) -> AccessLog {
        let sample = log.access_log_sample;
        AccessLog {
            sink,
            format: log.access_log_format,
            status: log.access_log_status.clone(),
            sample_below: (sample < 1.0).then_some((sample * u64::MAX as f64) as u64),
        }
    }

    pub fn sink(&self) -> &Arc<Sink> {
        &self.sink
    }

    /// Whether an answer with this status is logged (the sample draws here).
    pub(crate) fn wants(&self, status: u16) -> bool {
        if !self.status.is_empty() && !self.status.iter().any(|&(a, b)| (a..=b).contains(&status)) {
            return false;
        }
        match self.sample_below {
            Some(below) if status < 400 => random() < below,
            _ => true,
        }
    }

    pub(crate) fn log(&self, entry: &Entry<'_>) {
        clock::with_now(|now| {
            self.sink.line(|out| match self.format {
                AccessLogFormat::Combined => format::combined(out, entry, now),
                AccessLogFormat::Json => format::json(out, entry, now),
            });
        });
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(RandomState::new().hash_one(0x5a3b_u64) | 1);
}

/// xorshift64: enough to pick a sample, and no shared state.
fn random() -> u64 {
    RNG.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(status: Vec<(u16, u16)>, sample: f64) -> AccessLog {
        let mut config = rouse_config::parse(
            "t.toml",
            "[[upstream]]\nname = \"a\"\nsupervisor = \"none\"\n[[upstream.server]]\naddress = \"127.0.0.1:1\"\n",
        )
        .unwrap()
        .log;
        config.access_log_status = status;
        config.access_log_sample = sample;
        AccessLog::new(Arc::new(Sink::stderr().unwrap()), &config)
    }

    #[test]
    fn the_status_filter_keeps_only_what_it_names() {
        let l = log(vec![(400, 499), (502, 502)], 1.0);
        assert!(l.wants(404) && l.wants(502));
        assert!(!l.wants(200) && !l.wants(500) && !l.wants(503));
        let all = log(Vec::new(), 1.0);
        assert!(all.wants(200) && all.wants(599));
    }

    #[test]
    fn sampling_keeps_a_fraction_of_successes_and_every_error() {
        let l = log(Vec::new(), 0.1);
        let kept = (0..100_000).filter(|_| l.wants(200)).count();
        assert!((8_000..12_000).contains(&kept), "{kept}");
        assert!((0..1000).all(|_| l.wants(500) && l.wants(404)));
    }
}
