//! Reading a config file so that what rouse keeps of it is compact.
//!
//! The parse of a large file is a burst of small temporaries (the TOML tokens and values, the
//! spans of every key) among which the config it returns is allocated. Kept as parsed, the
//! config lies scattered over pages that the freed temporaries leave mostly empty and that
//! the allocator cannot return: 1,000 upstreams x 10 servers held 46 MB after start for 24 MB
//! in use, and each reload shuffled it further. So the file is parsed in an allocator heap of
//! its own (`rouse_alloc::apart`), a copy of the config that shares nothing with the parse's
//! is made outside it, and the whole heap is then freed and given back.
//!
//! A reload's parse runs off the runtime's threads: a 1.4 MB file would otherwise stall the
//! requests of `threads = 1` for the parse's ~150 ms.

use std::path::Path;
use std::time::Duration;

use rouse_config::{Config, ConfigErrors};

type Parsed = Result<Config, ConfigErrors>;

/// Reads and validates `path` (as `rouse_config::load`), blocking this thread meanwhile.
/// Not for async callers: see [`load_async`].
pub fn load(path: &Path) -> Parsed {
    rouse_alloc::apart(
        || rouse_config::load(path),
        |parsed| parsed.map(|config| config.unshared()),
    )
}

/// How long the parse's thread waits for the caller to copy the config out of its heap.
/// The copy takes ~10 ms for 10,000 servers; past the wait the heap is deleted anyway, which
/// keeps the blocks still in use (only scattered).
const COPY_WAIT: Duration = Duration::from_secs(30);

/// [`load`] for async callers: the file is parsed on a blocking thread, so the runtime's
/// thread stays free, and the kept copy is made here, on the caller's thread, where the config
/// will be used and later freed (made on the blocking thread, it would sit in that thread's
/// heap, whose freed pages are only collected when that thread next allocates: each reload of
/// 10,000 servers left RSS 2 MB higher).
pub async fn load_async(path: &Path) -> Parsed {
    let (parsed_tx, parsed_rx) = tokio::sync::oneshot::channel();
    let (copied_tx, copied_rx) = std::sync::mpsc::channel::<()>();
    let owned = path.to_owned();
    let parse = tokio::task::spawn_blocking(move || {
        let heap = rouse_alloc::Burst::new();
        if parsed_tx
            .send(heap.run(|| rouse_config::load(&owned)))
            .is_ok()
        {
            // Until the caller has dropped its copy of the parse's config (or gone).
            let _ = copied_rx.recv_timeout(COPY_WAIT);
        }
    });
    let kept = match parsed_rx.await {
        Ok(parsed) => parsed.map(|config| config.unshared()),
        // The parse does not panic; if it did, an error of the file rather than rouse
        // taken down.
        Err(_) => Err(ConfigErrors::whole_file(
            path.display().to_string(),
            "reading the file failed unexpectedly",
        )),
    };
    drop(copied_tx);
    // The heap's deletion is the thread's last step; waiting for it keeps reloads in order.
    let _ = parse.await;
    kept
}
