//! The broker binary's global allocator: the system allocator, except that
//! an allocation of at least [`HUGE_ALLOCATION_BYTES`] is an anonymous
//! mapping with `MAP_NORESERVE`, whose pages take memory only once touched.
//!
//! Why: the Kafka codec (`kafka-protocol` 0.18) reserves a `Vec`'s capacity
//! from the element count a client sends, before it reads the elements. A
//! 25-byte Metadata request naming 2^31 topics asks for about 150 GB; the
//! system allocator refuses, and Rust aborts the process on a failed
//! allocation. Here the reservation succeeds without memory behind it, the
//! decoder fails at the first element the frame does not hold, and the
//! mapping is returned. The frame limit (100 MiB) bounds what is ever
//! touched. (Under `vm.overcommit_memory = 2` the kernel refuses such a
//! mapping too; that setting is not supported.)

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::null_mut;

use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous, munmap};

/// Allocations at least this large are reserved lazily (1 GiB): nothing a
/// well-formed request or reply needs comes near it.
pub const HUGE_ALLOCATION_BYTES: usize = 1 << 30;
/// Alignment a fresh mapping always has (a page).
const MAPPING_ALIGN_BYTES: usize = 4096;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct ReservingAllocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_ALLOCATION_BYTES && layout.align() <= MAPPING_ALIGN_BYTES
}

// SAFETY: every block is either the system allocator's (and returned to it)
// or a fresh anonymous mapping of exactly `layout.size()` bytes (and
// unmapped with that size); `is_huge` tells them apart from the layout,
// which the caller passes unchanged to `dealloc` and `realloc`.
unsafe impl GlobalAlloc for ReservingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: a new private anonymous mapping, at an address the
            // kernel chooses; it aliases nothing.
            match unsafe {
                mmap_anonymous(
                    null_mut(),
                    layout.size(),
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::PRIVATE | MapFlags::NORESERVE,
                )
            } {
                Ok(ptr) => ptr.cast(),
                Err(_) => null_mut(),
            }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: a fresh anonymous mapping reads as zeros.
            unsafe { self.alloc(layout) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` is a mapping of `layout.size()` bytes made by
            // `alloc`, no longer used by the caller.
            let _ = unsafe { munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: a new block for `new_layout`; the old one is valid for
        // `layout.size()` bytes and the two do not overlap.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_reservation_costs_no_memory_and_small_ones_work_as_usual() {
        let allocator = ReservingAllocator;
        // 64 GiB: more than this machine has; untouched, it costs nothing.
        let layout = Layout::from_size_align(64 << 30, 8).expect("layout");
        // SAFETY: the block is written within its size, then freed with its layout.
        unsafe {
            let block = allocator.alloc(layout);
            assert!(!block.is_null());
            block.write(7);
            assert_eq!(block.read(), 7);
            allocator.dealloc(block, layout);
        }
        let small = Layout::from_size_align(64, 8).expect("layout");
        // SAFETY: as above.
        unsafe {
            let block = allocator.alloc_zeroed(small);
            assert_eq!(block.read(), 0);
            let grown = allocator.realloc(block, small, 128);
            assert!(!grown.is_null());
            allocator.dealloc(grown, Layout::from_size_align(128, 8).expect("layout"));
        }
    }
}
