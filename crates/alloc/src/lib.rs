//! Gives the C allocator's free memory back to the system.
//!
//! Reading a configuration is rouse's one large, short-lived burst of allocations: the TOML
//! parser lexes a 1.4 MB file of 10,000 servers into a 20 MB token vector. glibc then raises
//! its mmap threshold to that size (its dynamic threshold follows the largest chunk freed), so
//! later allocations come from arenas that it trims only past twice that, and every reload
//! left RSS higher (66 → 108 MB over 10 reloads of that file, with 42 MB in use throughout).
//! `malloc_trim(0)` returns the free pages of every arena, not only the top of the heap.
//!
//! This is rouse's only unsafe call. No well-kept crate wraps it; `libc` declares it, and the
//! call takes no pointers, so the whole unsafe surface is this one line.

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
