//! The program's allocator: the system allocator, with every allocation of at least
//! [`HUGE`] bytes marked for transparent huge pages (Linux `madvise(MADV_HUGEPAGE)`).
//!
//! Why: a parameter-sized vector (the L-BFGS curvature pairs, a search direction, a
//! gradient) holds millions of values; the system allocator maps each such block afresh
//! and the kernel then takes one page fault, and clears one 4 KiB page, per 4 KiB touched.
//! On a virtual machine those faults cost far more than the arithmetic on the vector: a
//! width-64, 1024-layer L-BFGS iteration on one rank spent 0.1–0.3 s in them (of 0.5–0.8 s),
//! while its memory grew by one pair per iteration. With 2 MiB pages there are 512× fewer
//! faults. Where the kernel's huge pages are off (`never`) or the system is not Linux the
//! advice is ignored; where they are `always` it changes nothing. It changes no value the
//! program computes.

use std::alloc::{GlobalAlloc, Layout, System};

/// The smallest allocation advised: one huge page (2 MiB on x86-64 and most arm64).
pub const HUGE: usize = 2 << 20;

/// [`System`], advising huge pages for blocks of at least [`HUGE`] bytes.
pub struct HugePages;

impl HugePages {
    /// Advises huge pages for the whole 4 KiB pages inside `[ptr, ptr + size)`.
    #[cfg(target_os = "linux")]
    fn advise(ptr: *mut u8, size: usize) {
        if ptr.is_null() || size < HUGE {
            return;
        }
        const PAGE: usize = 4096;
        let start = (ptr as usize).next_multiple_of(PAGE);
        let end = (ptr as usize + size) & !(PAGE - 1);
        if end > start {
            // SAFETY: the range lies inside a block this allocator just handed out; the
            // advice changes how the kernel backs it, never its contents. A failure (huge
            // pages unavailable) is harmless and ignored.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn advise(_ptr: *mut u8, _size: usize) {}
}

// SAFETY: every method forwards to `System` with the same arguments and returns its result;
// `advise` only adds a kernel hint on memory the call returned.
unsafe impl GlobalAlloc for HugePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        Self::advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        Self::advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        Self::advise(p, new_size);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks below, at and above the threshold are usable, zeroed when asked, and keep
    /// their contents through a reallocation that crosses the threshold.
    #[test]
    fn the_allocator_hands_out_usable_blocks() {
        let a = HugePages;
        for size in [8, HUGE - 8, HUGE, 3 * HUGE + 5] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            unsafe {
                let z = a.alloc_zeroed(layout);
                assert!(!z.is_null());
                assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                z.write_bytes(7, size);
                let r = a.realloc(z, layout, 2 * size + HUGE);
                assert!(std::slice::from_raw_parts(r, size).iter().all(|&b| b == 7));
                a.dealloc(r, Layout::from_size_align(2 * size + HUGE, 8).unwrap());
            }
        }
    }
}
