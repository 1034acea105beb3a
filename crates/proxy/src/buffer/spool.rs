//! A first-in first-out store of body bytes: in memory up to one size, then in an unlinked
//! temporary file up to another, as nginx's proxy buffers and temp files.
//!
//! Chunks keep their order whichever part holds them: the queue records, chunk by chunk,
//! whether it sits in memory or in the file. The file is used as a ring of at most
//! `file_cap` bytes, so a long stream that a reader drains as it goes never grows it past
//! that, however much passes through. The file is created on first need (most bodies never
//! need one) and unlinked at once, so nothing is left behind even if rouse is killed.
//!
//! File I/O is positional (`pread`/`pwrite`) on the blocking pool: a slow disk stalls only
//! the body that spills, never a runtime thread.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// How much of the file is read back at once.
const READ_CHUNK: u64 = 64 * 1024;

#[derive(Debug)]
enum Seg {
    Mem(Bytes),
    /// This many bytes, next in the file's ring.
    File(u64),
}

#[derive(Debug)]
pub(crate) struct Spool {
    segs: VecDeque<Seg>,
    mem_used: usize,
    mem_cap: usize,
    file_cap: u64,
    dir: Arc<Path>,
    file: Option<Arc<File>>,
    /// Bytes ever written to / read from the file; their difference is what it holds, and
    /// each modulo `file_cap` is where the next write / read goes.
    written: u64,
    read: u64,
    /// The file could not be created or written: memory only from then on.
    file_broken: bool,
}

impl Spool {
    /// A spool that holds up to `mem_cap` bytes in memory and `file_cap` more in a file in
    /// `dir` (0: never a file).
    pub fn new(mem_cap: usize, file_cap: u64, dir: &Arc<Path>) -> Spool {
        Spool {
            segs: VecDeque::new(),
            mem_used: 0,
            mem_cap,
            file_cap,
            dir: Arc::clone(dir),
            file: None,
            written: 0,
            read: 0,
            file_broken: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Bytes held, in memory and in the file.
    pub fn len(&self) -> u64 {
        self.mem_used as u64 + self.file_used()
    }

    fn file_used(&self) -> u64 {
        self.written - self.read
    }

    /// Whether a chunk of `len` bytes can be stored now. An empty spool takes any chunk,
    /// however big, so a chunk larger than both parts can never wedge a body.
    pub fn has_room(&self, len: usize) -> bool {
        self.is_empty() || self.fits_memory(len) || self.fits_file(len)
    }

    fn fits_memory(&self, len: usize) -> bool {
        self.mem_used.saturating_add(len) <= self.mem_cap
    }

    fn fits_file(&self, len: usize) -> bool {
        !self.file_broken && self.file_used().saturating_add(len as u64) <= self.file_cap
    }

    /// Stores `data` after what is held. Call when [`Spool::has_room`] says so; a chunk that
    /// fits neither part goes to memory.
    ///
    /// When the file cannot be created or written, the chunk is kept in memory all the same,
    /// the file is not used again, and the error is returned for the caller to judge.
    pub async fn push(&mut self, data: Bytes) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let len = data.len();
        if self.fits_memory(len) || !self.fits_file(len) {
            self.push_memory(data);
            return Ok(());
        }
        if let Err(e) = self.push_file(data.clone()).await {
            self.file_broken = true;
            self.push_memory(data);
            return Err(e);
        }
        Ok(())
    }

    fn push_memory(&mut self, data: Bytes) {
        self.mem_used += data.len();
        self.segs.push_back(Seg::Mem(data));
    }

    async fn push_file(&mut self, data: Bytes) -> io::Result<()> {
        let len = data.len();
        let file = self.file().await?;
        let (cap, at) = (self.file_cap, self.written % self.file_cap);
        blocking(move || write_ring(&file, cap, at, &data)).await?;
        self.written += len as u64;
        match self.segs.back_mut() {
            Some(Seg::File(n)) => *n += len as u64,
            _ => self.segs.push_back(Seg::File(len as u64)),
        }
        Ok(())
    }

    /// The next bytes held (in order), or `None` when it holds nothing.
    pub async fn pop(&mut self) -> io::Result<Option<Bytes>> {
        match self.segs.front_mut() {
            None => Ok(None),
            Some(Seg::Mem(_)) => {
                let Some(Seg::Mem(data)) = self.segs.pop_front() else {
                    return Ok(None);
                };
                self.mem_used -= data.len();
                Ok(Some(data))
            }
            Some(Seg::File(left)) => {
                let Some(file) = self.file.clone() else {
                    return Err(io::Error::other("spool lost its file"));
                };
                let at = self.read % self.file_cap;
                // Up to the end of the ring at most: the rest comes on the next call.
                let n = (*left).min(READ_CHUNK).min(self.file_cap - at);
                let data = blocking(move || {
                    let mut buf = BytesMut::zeroed(n as usize);
                    file.read_exact_at(&mut buf, at)?;
                    Ok(buf.freeze())
                })
                .await?;
                *left -= n;
                if *left == 0 {
                    self.segs.pop_front();
                }
                self.read += n;
                if self.read == self.written {
                    // Drained: start again at the front, which keeps reads and writes
                    // contiguous for the common fill-then-drain pattern.
                    self.read = 0;
                    self.written = 0;
                }
                Ok(Some(data))
            }
        }
    }

    async fn file(&mut self) -> io::Result<Arc<File>> {
        if let Some(f) = &self.file {
            return Ok(Arc::clone(f));
        }
        let dir = Arc::clone(&self.dir);
        let file = Arc::new(blocking(move || tempfile::tempfile_in(&dir)).await?);
        self.file = Some(Arc::clone(&file));
        Ok(file)
    }
}

/// Writes `data` at ring position `at` of a ring of `cap` bytes, wrapping to the front.
fn write_ring(file: &File, cap: u64, at: u64, data: &[u8]) -> io::Result<()> {
    let first = ((cap - at) as usize).min(data.len());
    file.write_all_at(&data[..first], at)?;
    if first < data.len() {
        file.write_all_at(&data[first..], 0)?;
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("file task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(tag: u8, len: usize) -> Bytes {
        Bytes::from(
            (0..len)
                .map(|i| tag.wrapping_add(i as u8))
                .collect::<Vec<_>>(),
        )
    }

    async fn drain(s: &mut Spool) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(d) = s.pop().await.unwrap() {
            out.extend_from_slice(&d);
        }
        out
    }

    #[tokio::test]
    async fn memory_then_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(10, 1000, &Arc::from(dir.path()));
        let mut want = Vec::new();
        for (i, len) in [6, 6, 3, 200, 1].into_iter().enumerate() {
            let c = chunk(i as u8 * 40, len);
            assert!(s.has_room(len));
            want.extend_from_slice(&c);
            s.push(c).await.unwrap();
        }
        assert!(s.file.is_some(), "spilled");
        assert_eq!(s.len(), want.len() as u64);
        assert_eq!(drain(&mut s).await, want);
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
        // Nothing named is left in the directory: the file was unlinked from the start.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_made_leaves_memory_only() {
        let mut s = Spool::new(
            2,
            100,
            &Arc::from(Path::new("/nonexistent/rouse-spool-test")),
        );
        s.push(chunk(1, 2)).await.unwrap();
        assert!(
            s.push(chunk(2, 5)).await.is_err(),
            "the file cannot be made"
        );
        assert!(!s.has_room(1), "no file any more, and memory is full");
        assert_eq!(drain(&mut s).await, [chunk(1, 2), chunk(2, 5)].concat());
    }

    #[tokio::test]
    async fn full_means_no_room_until_drained() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(4, 8, &Arc::from(dir.path()));
        s.push(chunk(1, 4)).await.unwrap();
        s.push(chunk(2, 8)).await.unwrap();
        assert!(!s.has_room(1));
        assert_eq!(s.pop().await.unwrap().unwrap(), chunk(1, 4));
        assert!(s.has_room(4));
        assert!(!s.has_room(5));
    }

    #[tokio::test]
    async fn an_oversized_chunk_goes_through_an_empty_spool() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(2, 0, &Arc::from(dir.path()));
        assert!(s.has_room(100));
        s.push(chunk(3, 100)).await.unwrap();
        assert!(!s.has_room(1));
        assert_eq!(drain(&mut s).await, chunk(3, 100).to_vec());
    }

    /// Streaming through a small ring many times its size, drained as it goes, keeps the
    /// file at its cap and every byte in order.
    #[tokio::test]
    async fn the_file_is_a_ring_that_never_outgrows_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(0, 100, &Arc::from(dir.path()));
        let mut want = Vec::new();
        let mut got = Vec::new();
        for i in 0..200u32 {
            let c = chunk(i as u8, 7 + (i % 30) as usize);
            while !s.has_room(c.len()) {
                got.extend_from_slice(&s.pop().await.unwrap().unwrap());
            }
            want.extend_from_slice(&c);
            s.push(c).await.unwrap();
            if i % 3 == 0 {
                got.extend_from_slice(&s.pop().await.unwrap().unwrap());
            }
        }
        got.extend(drain(&mut s).await);
        assert_eq!(got, want);
        let size = s.file.as_ref().unwrap().metadata().unwrap().len();
        assert!(size <= 100, "file size {size}");
    }
}
