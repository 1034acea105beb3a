//! A child's stdout and stderr, line by line, to rouse's log or to a file of its own, which is
//! reopened when asked (SIGUSR1, after logrotate renamed it), as rouse's access log is.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

/// A line longer than this is cut into pieces, so a child printing without newlines cannot
/// make rouse buffer without bound.
const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

/// The two read ends, as [`forward`] gives them back when asked to let go.
pub(super) struct Streams {
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
}

/// A forwarding task that can be asked to stop and give its pipes back, so that another
/// rouse process reads them on (`rouse upgrade`): the child never sees its pipe close.
pub(super) struct Forwarding {
    release: CancellationToken,
    released: oneshot::Receiver<Streams>,
}

impl Forwarding {
    /// The read ends not yet at their end of file; `None` when the task is gone.
    pub async fn release(self) -> Option<Streams> {
        self.release.cancel();
        self.released.await.ok()
    }
}

/// Forwards both streams until the child (and whatever inherited its pipes) closes them, or
/// until released; the file is reopened each time `reopen` changes.
pub(super) fn forward(
    program: String,
    stdout: Option<pipe::Receiver>,
    stderr: Option<pipe::Receiver>,
    log_dir: Option<PathBuf>,
    mut reopen: watch::Receiver<u64>,
) -> Forwarding {
    let release = CancellationToken::new();
    let (give_back, released) = oneshot::channel();
    let stop = release.clone();
    tokio::spawn(async move {
        let mut sink = Sink::open(&program, log_dir.as_deref()).await;
        // Gone with the supervisor: nothing asks for a reopen any more.
        let mut reopening = true;
        let (mut out, mut err) = (stdout, stderr);
        let (mut out_lines, mut err_lines) = (Lines::default(), Lines::default());
        let (mut out_buf, mut err_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
        while out.is_some() || err.is_some() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    // A partial line is said now: the next reader starts afresh.
                    sink.emit(&program, Stream::Out, out_lines.finish()).await;
                    sink.emit(&program, Stream::Err, err_lines.finish()).await;
                    let _ = give_back.send(Streams { stdout: out, stderr: err });
                    return;
                }
                changed = reopen.changed(), if reopening => match changed {
                    Ok(()) => sink.reopen(&program, log_dir.as_deref()).await,
                    Err(_) => reopening = false,
                },
                n = read_some(&mut out, &mut out_buf) => {
                    let lines = match n {
                        0 => { out = None; out_lines.finish() }
                        n => out_lines.push(&out_buf[..n]),
                    };
                    sink.emit(&program, Stream::Out, lines).await;
                }
                n = read_some(&mut err, &mut err_buf) => {
                    let lines = match n {
                        0 => { err = None; err_lines.finish() }
                        n => err_lines.push(&err_buf[..n]),
                    };
                    sink.emit(&program, Stream::Err, lines).await;
                }
            }
        }
        let _ = give_back.send(Streams {
            stdout: None,
            stderr: None,
        });
    });
    Forwarding { release, released }
}

/// Bytes read, 0 at end of stream (a read error ends the stream too); pending forever once
/// the stream is gone, so the other stream's branch keeps the select going.
async fn read_some<R: AsyncRead + Unpin>(reader: &mut Option<R>, buf: &mut [u8]) -> usize {
    match reader {
        Some(r) => r.read(buf).await.unwrap_or(0),
        None => std::future::pending().await,
    }
}

#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn push(&mut self, mut chunk: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&chunk[..nl]);
            lines.push(take_line(&mut self.partial));
            chunk = &chunk[nl + 1..];
        }
        self.partial.extend_from_slice(chunk);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            lines.push(std::mem::replace(&mut self.partial, rest));
        }
        lines
    }

    fn finish(&mut self) -> Vec<Vec<u8>> {
        if self.partial.is_empty() {
            Vec::new()
        } else {
            vec![take_line(&mut self.partial)]
        }
    }
}

fn take_line(partial: &mut Vec<u8>) -> Vec<u8> {
    if partial.last() == Some(&b'\r') {
        partial.pop();
    }
    std::mem::take(partial)
}

enum Sink {
    Log,
    File(tokio::fs::File, PathBuf),
}

impl Sink {
    async fn open_file(path: &Path) -> std::io::Result<tokio::fs::File> {
        tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
    }

    async fn open(program: &str, log_dir: Option<&Path>) -> Sink {
        let Some(dir) = log_dir else {
            return Sink::Log;
        };
        let path = dir.join(format!("{}.log", file_stem(program)));
        let opened = async {
            tokio::fs::create_dir_all(dir).await?;
            Self::open_file(&path).await
        };
        match opened.await {
            Ok(file) => Sink::File(file, path),
            Err(e) => {
                tracing::warn!(program, path = %path.display(), %e, "cannot open the child's log file; its output goes to rouse's log");
                Sink::Log
            }
        }
    }

    /// The file opened again by its name, so that what the child writes next goes to the file
    /// now there (a new one, after a rename); lines written before went to the old one, so each
    /// lands once. The old file is kept if the name cannot be opened; output that went to
    /// rouse's log for want of a file (`log_dir` not writable) tries the file again.
    async fn reopen(&mut self, program: &str, log_dir: Option<&Path>) {
        let Sink::File(file, path) = self else {
            if log_dir.is_some() {
                *self = Sink::open(program, log_dir).await;
            }
            return;
        };
        match Self::open_file(path).await {
            Ok(new) => *file = new,
            Err(e) => {
                tracing::warn!(program, path = %path.display(), %e, "cannot reopen the child's log file; writing on to the one open")
            }
        }
    }

    async fn emit(&mut self, program: &str, stream: Stream, lines: Vec<Vec<u8>>) {
        if lines.is_empty() {
            return;
        }
        if let Sink::File(file, path) = self {
            let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
            for line in &lines {
                buf.extend_from_slice(line);
                buf.push(b'\n');
            }
            // tokio's File buffers internally: without the flush a line could sit unwritten.
            let written = async {
                file.write_all(&buf).await?;
                file.flush().await
            };
            match written.await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(program, path = %path.display(), %e, "cannot write the child's log file; its output goes to rouse's log from now on");
                    *self = Sink::Log;
                }
            }
        }
        for line in lines {
            let line = String::from_utf8_lossy(&line);
            match stream {
                Stream::Out => tracing::info!(target: "rouse::child", program = %program, "{line}"),
                Stream::Err => tracing::warn!(target: "rouse::child", program = %program, "{line}"),
            }
        }
    }
}

/// A program name made safe as a file name: no path separators, no hidden or parent names.
fn file_stem(program: &str) -> String {
    let stem: String = program
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() || stem.starts_with('.') {
        format!("_{stem}")
    } else {
        stem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_chunks_and_caps_long_ones() {
        let mut l = Lines::default();
        assert!(l.push(b"ab").is_empty());
        assert_eq!(l.push(b"c\r\nd\ne"), vec![b"abc".to_vec(), b"d".to_vec()]);
        assert_eq!(l.finish(), vec![b"e".to_vec()]);
        assert!(l.finish().is_empty());
        let long = vec![b'x'; MAX_LINE * 2 + 3];
        let cut = l.push(&long);
        assert_eq!(cut.len(), 2);
        assert!(cut.iter().all(|c| c.len() == MAX_LINE));
        assert_eq!(l.finish(), vec![b"xxx".to_vec()]);
    }

    #[test]
    fn file_stems_stay_in_the_directory() {
        assert_eq!(file_stem("app0"), "app0");
        assert_eq!(file_stem("grp:app"), "grp:app");
        assert_eq!(file_stem("../etc/x"), "_.._etc_x");
        assert_eq!(file_stem(".."), "_..");
        assert_eq!(file_stem(""), "_");
    }
}
