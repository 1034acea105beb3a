//! rouse's allocator, and the one burst of allocations it keeps apart.
//!
//! mimalloc serves every allocation: HTTP/2 requests come in bursts (160 streams in flight
//! allocate each size by the hundred) deeper than glibc's per-thread cache of 7 blocks a size,
//! and with glibc a tenth of an h2c request's instructions went to its arena code; mimalloc's
//! free lists are per page and unbounded.
//!
//! Reading a configuration is the other kind of load: a 1.4 MB file of 10,000 servers is
//! lexed into 20 MB of tokens and values, among which the config that is kept gets allocated.
//! Left to any allocator, the kept config lies scattered over pages the temporaries leave
//! mostly empty, and the freed pages are handed back lazily or not at all (RSS grew with every
//! reload). [`apart`] runs such a burst in a heap of its own, copies out what is kept, frees
//! the rest and returns the memory: pages are never shared between the burst and the rest.
//!
//! These are rouse's only unsafe calls. No well-kept crate wraps mimalloc's heaps;
//! `libmimalloc-sys` declares them, and none is handed a pointer rouse made up.

/// The allocator of every program that links this crate (the `rouse` binary, its tests).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use libmimalloc_sys as mi;

/// Runs `burst` with every allocation this thread makes taken from a heap of its own, then
/// `keep` on its result with the thread's heap back (so what `keep` copies out lies in
/// pages of its own), then frees the burst's heap and returns its pages to the system.
pub fn apart<T, U>(burst: impl FnOnce() -> T, keep: impl FnOnce(T) -> U) -> U {
    let heap = Burst::new();
    let result = heap.run(burst);
    keep(result)
    // `heap` is dropped last: what `keep` dropped of the burst is freed by then.
}

/// An allocator heap of its own for a burst of allocations on one thread (it is not `Send`:
/// mimalloc's heaps allocate only on the thread that made them; their blocks may be freed on
/// any). Dropped, it is deleted and its free pages go back to the system. Blocks still alive
/// then (what the burst returned and was not dropped yet, a thread-local it made) are kept,
/// moved to the thread's heap: nothing in use is freed, only scattered.
pub struct Burst {
    heap: *mut mi::mi_heap_t,
}

impl Burst {
    /// A new heap on this thread; when mimalloc has no memory for one, bursts share the
    /// thread's heap (correct, only scattered).
    #[allow(unsafe_code)]
    pub fn new() -> Burst {
        // SAFETY: takes nothing; returns a new heap owned by this thread, or null.
        Burst {
            heap: unsafe { mi::mi_heap_new() },
        }
    }

    /// Runs `burst` with this thread's allocations taken from this heap; the thread's
    /// previous default heap is back when it returns or unwinds.
    #[allow(unsafe_code)]
    pub fn run<T>(&self, burst: impl FnOnce() -> T) -> T {
        if self.heap.is_null() {
            return burst();
        }
        // SAFETY: `self.heap` was made on this thread (`Burst` is not `Send`) and is deleted
        // only when `self` drops, after `Restore` has put the previous default back.
        let _restore = Restore(unsafe { mi::mi_heap_set_default(self.heap) });
        burst()
    }
}

impl Default for Burst {
    fn default() -> Self {
        Burst::new()
    }
}

impl Drop for Burst {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if self.heap.is_null() {
            return;
        }
        // SAFETY: this thread's heap (`Burst` is not `Send`), not the default any more (each
        // `run` restored the previous one), deleted once. `mi_heap_delete`, unlike
        // `mi_heap_destroy`, moves the blocks still alive to the thread's heap.
        unsafe { mi::mi_heap_delete(self.heap) };
        release_free_memory();
    }
}

/// Puts a thread's default heap back when dropped.
struct Restore(*mut mi::mi_heap_t);

impl Drop for Restore {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the heap `mi_heap_set_default` replaced on this thread (its own or an
        // enclosing `Burst`'s, which outlives this guard), still alive.
        unsafe { mi::mi_heap_set_default(self.0) };
    }
}

/// Returns memory freed anywhere in the process to the system now instead of after
/// mimalloc's purge delay (which only runs when the allocator is next busy on the thread
/// that freed it, so an idle thread's freed pages would wait).
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: takes no pointer; mimalloc synchronises the arenas it walks.
    unsafe { mi::mi_collect(true) };
}

#[cfg(test)]
mod tests {
    use super::*;

    // That a burst's memory goes back to the system is tests/burst_rss.rs, alone in its
    // process: RSS is the whole process's, and other tests allocate beside it.

    /// A panicking burst leaves the thread's own heap as the default: later allocations work
    /// and survive.
    #[test]
    fn a_panicking_burst_puts_the_heap_back() {
        std::thread::spawn(|| {
            let caught =
                std::panic::catch_unwind(|| apart(|| -> Vec<u8> { panic!("burst") }, |v| v.len()));
            assert!(caught.is_err());
            let after: Vec<u64> = (0..10_000).collect();
            release_free_memory();
            assert_eq!(after.iter().sum::<u64>(), 49_995_000);
        })
        .join()
        .unwrap();
    }

    /// Nested bursts each get back the heap they started on.
    #[test]
    fn nested_bursts_restore_in_order() {
        let outer = apart(
            || apart(|| vec![1u8; 4096], |v| v.len()) + vec![2u8; 10].len(),
            |n| vec![n; 3],
        );
        assert_eq!(outer, vec![4106, 4106, 4106]);
    }
}
