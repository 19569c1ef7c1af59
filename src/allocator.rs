//! The service's memory allocator: mimalloc for everyday blocks, the system allocator for large
//! ones.
//!
//! A search request allocates and frees thousands of small blocks (the parsed page, its strings,
//! the answer) across the runtime's threads, and mimalloc serves that pattern markedly faster
//! than glibc's allocator (see BENCHMARKS.md). But mimalloc keeps freed memory around to reuse
//! it, which is the wrong trade for the one large, rare block the service allocates: each
//! password hash takes 19 MiB, and those pages should go back to the system as soon as the hash
//! is done. So blocks of `LARGE_BLOCK` or more go to the system allocator, which maps each one
//! on its own and unmaps it when it is freed ([`configure`] fixes glibc's mapping threshold so
//! that this holds for every such block).
//!
//! Which allocator owns a block follows from its size alone: `dealloc` receives the layout the
//! block was allocated with, and `realloc` moves a block whose new size lands on the other side.

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// Blocks of this size or more come from the system allocator.
pub(crate) const LARGE_BLOCK: usize = 1024 * 1024;

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_t` of mimalloc 3, which the
/// bindings build), which the Rust bindings do not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tunes both allocators for the service. Call it first thing in `main`, before any other
/// thread starts.
///
/// - mimalloc returns the pages it no longer uses to the system at once, instead of a second
///   later (its default). Under a burst of searches the delay lets every thread keep the pages of
///   the requests it just finished while new ones arrive, which measured as 8–13 MiB more
///   resident memory at 64 clients (about 6 MiB more already at 100 ms), while the CPU time per
///   search stayed the same within the benchmark's noise (0.325 ms at no delay, 0.326 at 10 ms,
///   0.324 at 100 ms). `MIMALLOC_PURGE_DELAY` in the environment (milliseconds) takes
///   precedence, to compare.
/// - glibc maps every block of `LARGE_BLOCK` or more on its own and unmaps it when it is freed.
///   By default glibc raises its mapping threshold after the first such block is freed and keeps
///   later ones on its heap, holding a hash's memory for good.
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting an option is not thread-safe, and this runs before other threads
        // exist.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only tunes the allocator, and no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_BLOCK as libc::c_int);
    }
}

pub struct ServiceAllocator;

fn is_large(size: usize) -> bool {
    size >= LARGE_BLOCK
}

// SAFETY: every call is forwarded to the allocator that owns the block, which is decided by the
// block's size alone; callers pass the same layout to `dealloc` and `realloc` that they got the
// block with, so a block always returns to the allocator it came from.
unsafe impl GlobalAlloc for ServiceAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees (a non-zero size).
        unsafe {
            if is_large(layout.size()) {
                System.alloc(layout)
            } else {
                MiMalloc.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if is_large(layout.size()) {
                System.alloc_zeroed(layout)
            } else {
                MiMalloc.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from the allocator `layout.size()` selects (see above).
        unsafe {
            if is_large(layout.size()) {
                System.dealloc(ptr, layout)
            } else {
                MiMalloc.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (was_large, now_large) = (is_large(layout.size()), is_large(new_size));
        // SAFETY: within one allocator, forwarded as is. Across the two, a new block is taken
        // from the other allocator, the bytes both blocks hold are copied, and the old block is
        // returned to its owner; `new_size` is non-zero and the alignment is unchanged, as the
        // caller guarantees.
        unsafe {
            match (was_large, now_large) {
                (false, false) => MiMalloc.realloc(ptr, layout, new_size),
                (true, true) => System.realloc(ptr, layout, new_size),
                _ => {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the option's position against a mimalloc upgrade that renumbers its options:
    /// the option at that position must be the purge delay, whose default is 1000 ms.
    #[test]
    fn the_purge_delay_option_is_the_one_configured() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads an option; no test sets one.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
            1000
        );
    }

    /// Grows a block from small to large and back, checking its bytes survive each move.
    #[test]
    fn blocks_keep_their_bytes_when_they_move_between_allocators() {
        let allocator = ServiceAllocator;
        let small = 4096;
        let large = LARGE_BLOCK * 2;
        let layout = Layout::from_size_align(small, 16).unwrap();
        unsafe {
            let block = allocator.alloc(layout);
            assert!(!block.is_null());
            for i in 0..small {
                *block.add(i) = (i % 251) as u8;
            }
            let grown = allocator.realloc(block, layout, large);
            assert!(!grown.is_null());
            assert_eq!(grown as usize % 16, 0);
            for i in 0..small {
                assert_eq!(*grown.add(i), (i % 251) as u8);
            }
            *grown.add(large - 1) = 7;
            let large_layout = Layout::from_size_align(large, 16).unwrap();
            let shrunk = allocator.realloc(grown, large_layout, small / 2);
            assert!(!shrunk.is_null());
            for i in 0..small / 2 {
                assert_eq!(*shrunk.add(i), (i % 251) as u8);
            }
            allocator.dealloc(shrunk, Layout::from_size_align(small / 2, 16).unwrap());
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_on_both_sides() {
        let allocator = ServiceAllocator;
        for size in [64, LARGE_BLOCK + 1] {
            let layout = Layout::from_size_align(size, 64).unwrap();
            unsafe {
                let block = allocator.alloc_zeroed(layout);
                assert!(!block.is_null());
                assert_eq!(block as usize % 64, 0);
                assert!(
                    std::slice::from_raw_parts(block, size)
                        .iter()
                        .all(|&b| b == 0)
                );
                allocator.dealloc(block, layout);
            }
        }
    }
}
