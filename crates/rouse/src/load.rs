//! Reading a config file so that what rouse keeps of it is compact.
//!
//! The parse of a large file is a burst of small temporaries (the TOML tokens and values, the
//! spans of every key) among which the config it returns is allocated. With glibc's allocator
//! the config then lies scattered over pages that the freed temporaries leave mostly empty and
//! that `malloc_trim` cannot return: 1,000 upstreams x 10 servers held 46 MB after start for
//! 24 MB in use, and each reload shuffled it further (52 MB after 10). So the file is parsed on
//! a thread of its own, whose allocations glibc serves from another arena, and the config is
//! copied on the caller's thread before the parse's copy is dropped: the kept copy is dense,
//! and the parse's arena is left wholly free for `rouse_alloc::release_free_memory`.
//!
//! The reload's parse off the runtime's threads also keeps a 1.4 MB file from stalling the
//! requests of `threads = 1` for the parse's ~150 ms.

use std::path::Path;

use rouse_config::{Config, ConfigErrors};

type Parsed = Result<Config, ConfigErrors>;

/// Starts the parse of `path` on a thread of its own; `None` when no thread could be had.
fn parse_apart(path: &Path) -> Option<tokio::sync::oneshot::Receiver<Parsed>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("rouse-config".into())
        .spawn(move || {
            let _ = tx.send(rouse_config::load(&path));
        })
        .ok()
        .map(|_| rx)
}

/// What the parse thread sent, or (it dropped its sender unsent: it panicked, which the
/// parse does not) an error of the file rather than rouse taken down.
fn received(path: &Path, got: Result<Parsed, tokio::sync::oneshot::error::RecvError>) -> Parsed {
    got.unwrap_or_else(|_| {
        Err(ConfigErrors::whole_file(
            path.display().to_string(),
            "reading the file failed unexpectedly",
        ))
    })
}

/// Reads and validates `path` (as `rouse_config::load`), blocking this thread meanwhile.
/// Not for async callers: see [`load_async`].
pub fn load(path: &Path) -> Parsed {
    let parsed = match parse_apart(path) {
        Some(rx) => received(path, rx.blocking_recv()),
        // No thread to be had: parse here, scattered but correct.
        None => rouse_config::load(path),
    };
    parsed.map(|config| config.unshared())
}

/// [`load`] for async callers: the runtime's thread is free while the file is parsed.
pub async fn load_async(path: &Path) -> Parsed {
    let parsed = match parse_apart(path) {
        Some(rx) => received(path, rx.await),
        None => rouse_config::load(path),
    };
    parsed.map(|config| config.unshared())
}
