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

use std::path::{Path, PathBuf};

use rouse_config::{Config, ConfigErrors};

/// Reads and validates `path` (as `rouse_config::load`), blocking this thread meanwhile.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let owned = path.to_owned();
    match std::thread::Builder::new()
        .name("rouse-config".into())
        .spawn(move || rouse_config::load(&owned))
    {
        Ok(thread) => match thread.join() {
            Ok(parsed) => parsed.map(|config| config.unshared()),
            Err(panic) => std::panic::resume_unwind(panic),
        },
        // No thread to be had: parse here, scattered but correct.
        Err(_) => rouse_config::load(path),
    }
}

/// [`load`] for async callers: the runtime's thread is free while the file is parsed.
pub async fn load_async(path: PathBuf) -> Result<Config, ConfigErrors> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("rouse-config".into())
        .spawn({
            let path = path.clone();
            move || {
                let _ = tx.send(rouse_config::load(&path));
            }
        });
    let parsed = match spawned {
        Ok(_) => match rx.await {
            Ok(parsed) => parsed,
            // The thread dropped its sender without sending: it panicked, which the parse
            // does not; say so as an error of the file rather than take rouse down.
            Err(_) => Err(ConfigErrors::whole_file(
                path.display().to_string(),
                "reading the file failed unexpectedly",
            )),
        },
        Err(_) => rouse_config::load(&path),
    };
    parsed.map(|config| config.unshared())
}
