//! rouse's log, captured: every test of one binary shares the process, so one subscriber
//! collects every test's lines, and tests look for theirs by the words they contain.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::EnvFilter;

static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// Starts capturing (the first call installs the subscriber with `filter`; later calls only
/// return the buffer). Lines are also printed to stderr when `RUST_LOG` is set.
pub fn capture(filter: impl FnOnce() -> EnvFilter) -> &'static Mutex<Vec<u8>> {
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let echo = std::env::var_os("RUST_LOG").is_some();
        let writer = {
            let buf = Arc::clone(&buf);
            move || Capture {
                buf: Arc::clone(&buf),
                echo,
            }
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(false)
            .with_writer(writer)
            .try_init();
        buf
    })
}

/// The captured lines that contain every one of `words`.
pub fn logged(words: &[&str]) -> Vec<String> {
    let buf = LOG
        .get()
        .expect("call capture before looking at the log")
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&buf)
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .map(str::to_owned)
        .collect()
}

struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    echo: bool,
}

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        if self.echo {
            let _ = std::io::stderr().write_all(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
