//! Where access-log lines go without the data plane ever waiting for a disk: each thread
//! appends to a buffer of its own (its lock is only ever contended by the writer, once per
//! flush), and one writer thread swaps the buffers out and writes them, every 100 ms, when one
//! grows large, when asked (shutdown), and before it reopens the file (SIGUSR1), so that every
//! line lands exactly once, in the old file or the new one.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;

/// Lines wait at most this long in a thread's buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A buffer this large asks the writer to come now.
const EAGER: usize = 64 * 1024;
/// A buffer this large means the writer is stuck (a disk that blocks): further lines are
/// dropped, and counted, rather than growing memory without bound.
const CAP: usize = 16 * 1024 * 1024;
/// At most one warning this often about lines that could not be written.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// One thread's lines not yet written.
#[derive(Default)]
struct Buffer {
    lines: Vec<u8>,
    /// The writer was asked to come for this buffer already.
    asked: bool,
}

enum Command {
    /// A buffer grew large.
    Wake,
    /// Write everything, then reopen the file.
    Reopen,
    /// Write everything; answer when done.
    Flush(mpsc::Sender<()>),
}

struct Shared {
    buffers: Mutex<Vec<Arc<Mutex<Buffer>>>>,
    dropped: AtomicU64,
    /// Set when the writer thread ended (it never does while the sink lives, but a panic).
    gone: AtomicBool,
}

/// The access log's destination, shared by every thread of the data plane.
pub struct Sink {
    shared: Arc<Shared>,
    commands: SyncSender<Command>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

/// Where the writer writes.
enum Target {
    Stderr,
    File { path: PathBuf, file: Option<File> },
}

/// A thread's buffer for each sink it has written to (one, outside tests).
type Local = Vec<(Weak<Shared>, Arc<Mutex<Buffer>>)>;

thread_local! {
    static LOCAL: RefCell<Local> = const { RefCell::new(Vec::new()) };
}

impl Sink {
    /// Lines to stderr.
    pub fn stderr() -> io::Result<Sink> {
        Sink::start(Target::Stderr)
    }

    /// Lines appended to `path`, created if need be; an error if it cannot be opened now.
    pub fn file(path: &Path) -> io::Result<Sink> {
        let file = open(path)?;
        Sink::start(Target::File {
            path: path.to_owned(),
            file: Some(file),
        })
    }

    fn start(target: Target) -> io::Result<Sink> {
        let shared = Arc::new(Shared {
            buffers: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            gone: AtomicBool::new(false),
        });
        // Bounded: a thread that cannot queue a wake-up finds one queued already.
        let (tx, rx) = mpsc::sync_channel(16);
        let writer = Writer {
            shared: Arc::clone(&shared),
            target,
            spare: Vec::new(),
            last_warning: None,
            lost: 0,
        };
        std::thread::Builder::new()
            .name("rouse-access-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(Sink {
            shared,
            commands: tx,
        })
    }

    /// Appends one line, written by `fill`, to this thread's buffer.
    pub(crate) fn line(&self, fill: impl FnOnce(&mut Vec<u8>)) {
        LOCAL.with_borrow_mut(|local| {
            let mine = Arc::as_ptr(&self.shared);
            let at = match local.iter().position(|(s, _)| s.as_ptr() == mine) {
                Some(at) => at,
                None => self.register(local),
            };
            let mut b = local[at].1.lock().unwrap_or_else(|e| e.into_inner());
            if b.lines.len() >= CAP {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            fill(&mut b.lines);
            if b.lines.len() >= EAGER && !b.asked {
                b.asked = true;
                let _ = self.commands.try_send(Command::Wake);
            }
        });
    }

    /// This thread's first line to this sink: a buffer of its own, which the writer knows.
    fn register(&self, local: &mut Local) -> usize {
        // Sinks that are gone (tests that start several) leave their entries behind.
        local.retain(|(s, _)| s.strong_count() > 0);
        let b = Arc::new(Mutex::new(Buffer {
            lines: Vec::with_capacity(EAGER),
            asked: false,
        }));
        self.shared
            .buffers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&b));
        local.push((Arc::downgrade(&self.shared), b));
        local.len() - 1
    }

    /// Writes what was logged so far to the file (SIGUSR1): lines logged before go to the
    /// old file (renamed by logrotate), later ones to the new.
    pub fn reopen(&self) {
        let _ = self.commands.send(Command::Reopen);
    }

    /// Writes every line logged so far; waits for it at most `limit`. Whether it was done.
    pub fn flush(&self, limit: Duration) -> bool {
        if self.shared.gone.load(Ordering::Relaxed) {
            return false;
        }
        let (tx, rx) = mpsc::channel();
        self.commands.send(Command::Flush(tx)).is_ok() && rx.recv_timeout(limit).is_ok()
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct Writer {
    shared: Arc<Shared>,
    target: Target,
    /// Swapped with a thread's buffer, so that neither allocates in the steady state.
    spare: Vec<u8>,
    last_warning: Option<Instant>,
    /// Lines (or bytes of them) that could not be written since the last warning.
    lost: u64,
}

impl Writer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        loop {
            match commands.recv_timeout(FLUSH_EVERY) {
                Ok(Command::Wake) | Err(RecvTimeoutError::Timeout) => self.drain(),
                Ok(Command::Reopen) => {
                    self.drain();
                    self.reopen();
                }
                Ok(Command::Flush(done)) => {
                    self.drain();
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.drain();
                    break;
                }
            }
        }
        self.shared.gone.store(true, Ordering::Relaxed);
    }

    /// Writes every thread's buffer.
    fn drain(&mut self) {
        let buffers: Vec<Arc<Mutex<Buffer>>> = {
            let mut all = self
                .shared
                .buffers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // A thread that ended holds its buffer no more; once written, it goes.
            all.retain(|b| {
                Arc::strong_count(b) > 1
                    || !b.lock().unwrap_or_else(|e| e.into_inner()).lines.is_empty()
            });
            all.clone()
        };
        for buffer in buffers {
            {
                let mut b = buffer.lock().unwrap_or_else(|e| e.into_inner());
                if b.lines.is_empty() {
                    continue;
                }
                std::mem::swap(&mut b.lines, &mut self.spare);
                b.asked = false;
            }
            self.write_spare();
        }
        let dropped = self.shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.lost += dropped;
            self.warn("the writer fell behind: lines dropped");
        }
    }

    fn write_spare(&mut self) {
        let written = match &mut self.target {
            Target::Stderr => io::stderr().lock().write_all(&self.spare),
            Target::File { file: Some(f), .. } => f.write_all(&self.spare),
            Target::File { file: None, .. } => Err(io::Error::other("the file is not open")),
        };
        if let Err(e) = written {
            self.lost += self.spare.iter().filter(|&&b| b == b'\n').count() as u64;
            self.warn(&e.to_string());
        }
        self.spare.clear();
        // A burst leaves a large buffer behind; most of the time a small one does.
        self.spare.shrink_to(EAGER);
    }

    fn reopen(&mut self) {
        if let Target::File { path, file } = &mut self.target {
            match open(path) {
                Ok(f) => *file = Some(f),
                Err(e) => {
                    let why = format!("cannot reopen {}: {e}", path.display());
                    // The old file, renamed or not, still takes lines.
                    self.warn(&why);
                }
            }
        }
    }

    fn warn(&mut self, why: &str) {
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            return;
        }
        self.last_warning = Some(now);
        let what = match &self.target {
            Target::Stderr => "stderr".to_owned(),
            Target::File { path, .. } => path.display().to_string(),
        };
        tracing::warn!(lines_lost = self.lost, "access log {what}: {why}");
        self.lost = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn lines_from_many_threads_land_once_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let sink = Arc::new(Sink::file(&path).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        sink.line(|out| out.extend_from_slice(format!("{t} {i}\n").as_bytes()));
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        std::fs::rename(&path, &rotated).unwrap();
        sink.reopen();
        for t in threads {
            t.join().unwrap();
        }
        sink.flush(Duration::from_secs(10));
        let mut all = lines(&rotated);
        all.extend(lines(&path));
        assert_eq!(all.len(), 20_000);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 20_000);
    }

    #[test]
    fn a_file_that_cannot_be_written_loses_lines_not_the_writer() {
        let sink = Sink::file(Path::new("/dev/full")).unwrap();
        for _ in 0..3 {
            sink.line(|out| out.extend_from_slice(b"lost\n"));
            assert!(sink.flush(Duration::from_secs(10)), "the writer is gone");
        }
    }

    #[test]
    fn a_flush_writes_lines_of_a_thread_that_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let sink = Arc::new(Sink::file(&path).unwrap());
        let s = Arc::clone(&sink);
        std::thread::spawn(move || s.line(|out| out.extend_from_slice(b"one\n")))
            .join()
            .unwrap();
        sink.flush(Duration::from_secs(10));
        assert_eq!(lines(&path), ["one"]);
    }
}
