//! Keeps the C allocator from holding on to memory rouse has freed.
//!
//! Reading a configuration is rouse's one large, short-lived burst of allocations: the TOML
//! parser lexes a 1.4 MB file of 10,000 servers into a 20 MB token vector. glibc then raises
//! its mmap threshold to that size (its dynamic threshold follows the largest chunk freed) and
//! its trim threshold to twice that, so later allocations come from arenas that keep up to
//! 40 MB of free space at their top, and every reload left RSS higher (66 → 108 MB over 10
//! reloads of that file, with 42 MB in use throughout). Two calls fix it:
//! - [`bound_retention`], at start: fixed thresholds of 1 MiB, so a burst's large blocks are
//!   mapped and unmapped on their own, and an arena's free top past 1 MiB goes back at once.
//!   Nothing on the data plane's path allocates blocks that large (buffers are 16–128 KiB).
//! - [`release_free_memory`], after a configuration is loaded: `malloc_trim(0)` returns the
//!   free pages inside every arena, which no threshold reaches.
//!
//! These are rouse's only unsafe calls. No well-kept crate wraps them; `libc` declares them,
//! and they take no pointers, so each unsafe surface is one line.

/// Largest block served from an arena, and most free space kept at an arena's top.
pub const RETAINED_MAX: usize = 1024 * 1024;

/// Sets glibc's mmap and trim thresholds to [`RETAINED_MAX`] (which also turns off their
/// dynamic growth), unless the operator set either through glibc's own environment variables
/// (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`), which then win. Call first thing in
/// `main`, before the allocations it is meant to shape. Whether the thresholds were set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn bound_retention() -> bool {
    let operator_chose = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if operator_chose {
        return false;
    }
    let max = RETAINED_MAX as libc::c_int;
    // SAFETY: `mallopt` takes two integers and no pointers; glibc checks the values and takes
    // the main arena's lock itself, so it is sound on any thread at any time.
    let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, max) } == 1;
    // SAFETY: as above.
    let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, max) } == 1;
    mmap && trim
}

/// Other C libraries (musl) have no such thresholds to set.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn bound_retention() -> bool {
    false
}

/// Returns the allocator's free pages to the system; whether any came back. Call after a burst
/// is over (it locks each arena in turn while it walks it): after a configuration is loaded.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` has no arguments to get wrong (a padding size) and no caller-side
    // invariants: glibc takes each arena's lock itself, so any thread may call it at any time.
    unsafe { libc::malloc_trim(0) != 0 }
}

/// Other C libraries (musl) and systems return freed memory without being asked, or have no
/// such call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    /// The thresholds are accepted (glibc answers 1 to a value it takes).
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn the_thresholds_are_set() {
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none()
            && std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none()
        {
            assert!(super::bound_retention());
        }
    }

    /// Freed memory in the middle of the heap (a large block below a live one) comes back.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn a_freed_burst_is_given_back() {
        // Many small blocks (from arenas, below the mmap threshold), the later ones kept, so
        // the freed ones are not at the top of the heap and only a trim returns them.
        let mut freed: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 16 * 1024]).collect();
        let kept: Vec<u8> = vec![1; 1024];
        freed.clear();
        freed.shrink_to_fit();
        assert!(
            super::release_free_memory(),
            "64 MiB freed, nothing given back"
        );
        assert_eq!(kept.len(), 1024);
    }
}
