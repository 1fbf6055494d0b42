//! A fixed-capacity byte region that one writer appends to and many readers
//! read in place: a memory map of a segment or index file, or (for crash
//! tests) a heap buffer.
//!
//! Over a file, the writer writes with `pwrite` and readers see the bytes
//! through the map (the page cache is shared). Writing through the map
//! instead faults each new page in through the read path, and for a
//! fallocated (unwritten) extent the kernel zero-fills it first: a profile
//! showed that zeroing at 26 % of the broker's CPU (docs/performance.md).
//!
//! This is the crate's only `unsafe` code. Its invariant: bytes below
//! `published` are never written again while the region lives, and the
//! writer (a unique [`RegionWriter`]) only writes at or above it. Readers see
//! only published bytes, so a shared slice never aliases a write.

#![allow(unsafe_code)]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use memmap2::MmapRaw;

/// What keeps a region's memory alive and makes its bytes durable.
pub(crate) trait Backing: Send + Sync {
    /// Makes `bytes`, which sit at `start` in the region, durable.
    fn sync(&self, memory: &Memory, start: usize, bytes: &[u8]) -> io::Result<()>;
    /// Cuts the file to `len` bytes, durably.
    fn trim(&self, len: usize) -> io::Result<()>;
    /// Writes `data` at `offset` through the file (`pwrite`), which the map
    /// then shows; `None` if this backing has no file and the region's
    /// memory must be written directly.
    fn write_at(&self, offset: usize, data: &[u8]) -> Option<io::Result<()>> {
        let _ = (offset, data);
        None
    }
}

/// The memory behind a region.
pub(crate) enum Memory {
    /// A shared, writable map of a file.
    Map(MmapRaw),
    /// A heap buffer owned by the region (the simulated medium).
    Heap(Box<[u8]>),
}

impl Memory {
    fn base(&self) -> *mut u8 {
        match self {
            Memory::Map(map) => map.as_mut_ptr(),
            Memory::Heap(buf) => buf.as_ptr() as *mut u8,
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Memory::Map(map) => map.len(),
            Memory::Heap(buf) => buf.len(),
        }
    }

    /// Flushes a mapped range to the file; a heap buffer has nothing to flush.
    pub(crate) fn flush_range(&self, start: usize, len: usize) -> io::Result<()> {
        match self {
            Memory::Map(map) if len > 0 => map.flush_range(start, len),
            _ => Ok(()),
        }
    }
}

struct Inner {
    memory: Memory,
    base: *mut u8,
    capacity: usize,
    published: AtomicUsize,
    backing: Box<dyn Backing>,
}

// SAFETY: `base` points into `memory`, which `Inner` owns and never moves
// (a map or a boxed slice). Shared access is only to published bytes, which
// are immutable; the one writer is the unique `RegionWriter`.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

/// The read side of a region: cheap to clone; every clone and every [`Bytes`]
/// view keeps the memory alive.
#[derive(Clone)]
pub(crate) struct Region {
    inner: Arc<Inner>,
}

/// The unique write side of a region.
pub(crate) struct RegionWriter {
    inner: Arc<Inner>,
    written: usize,
}

/// Creates a region over `memory` whose first `len` bytes are already content.
pub(crate) fn new_region(
    memory: Memory,
    len: usize,
    backing: Box<dyn Backing>,
) -> (Region, RegionWriter) {
    let base = memory.base();
    let capacity = memory.capacity();
    assert!(
        len <= capacity,
        "region content {len} exceeds capacity {capacity}"
    );
    let inner = Arc::new(Inner {
        memory,
        base,
        capacity,
        published: AtomicUsize::new(len),
        backing,
    });
    (
        Region {
            inner: inner.clone(),
        },
        RegionWriter {
            inner,
            written: len,
        },
    )
}

impl Region {
    /// Bytes readers may see.
    pub(crate) fn published(&self) -> usize {
        self.inner.published.load(Ordering::Acquire)
    }

    /// The published bytes `start..end`, borrowed; `None` if not all published.
    pub(crate) fn read(&self, start: usize, end: usize) -> Option<&[u8]> {
        if start > end || end > self.published() {
            return None;
        }
        // SAFETY: `start..end` lies below `published`, inside the region, and
        // published bytes are never written again while `self` keeps them alive.
        Some(unsafe { std::slice::from_raw_parts(self.inner.base.add(start), end - start) })
    }

    /// The published bytes `start..end` as a zero-copy view that keeps the
    /// region alive; `None` if not all published.
    pub(crate) fn bytes(&self, start: usize, end: usize) -> Option<Bytes> {
        self.read(start, end)?;
        Some(Bytes::from_owner(RegionView {
            region: self.clone(),
            start,
            end,
        }))
    }

    /// Makes the published bytes `start..end` durable.
    pub(crate) fn sync(&self, start: usize, end: usize) -> io::Result<()> {
        let Some(bytes) = self.read(start, end) else {
            return Err(io::Error::other(format!(
                "sync of {start}..{end} past the published {} bytes",
                self.published()
            )));
        };
        self.inner.memory.flush_range(start, end - start)?;
        self.inner.backing.sync(&self.inner.memory, start, bytes)
    }
}

struct RegionView {
    region: Region,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for RegionView {
    fn as_ref(&self) -> &[u8] {
        // Checked when the view was made; published only grows.
        self.region.read(self.start, self.end).unwrap_or(&[])
    }
}

impl RegionWriter {
    /// Bytes written so far (published or not).
    pub(crate) fn written(&self) -> usize {
        self.written
    }

    /// Bytes that can still be written.
    pub(crate) fn remaining(&self) -> usize {
        self.inner.capacity - self.written
    }

    /// Appends `parts` back to back, unpublished; returns where they start.
    ///
    /// # Panics
    /// If they do not fit: callers check [`remaining`](Self::remaining) first.
    pub(crate) fn append(&mut self, parts: &[&[u8]]) -> io::Result<usize> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        assert!(
            total <= self.remaining(),
            "append of {total} bytes past the region's end"
        );
        let start = self.written;
        for part in parts {
            match self.inner.backing.write_at(self.written, part) {
                Some(result) => result?,
                // SAFETY: `written..written + len` is inside the region (checked
                // above) and at or above `published`, so no reader can see it, and
                // `self` is the only writer.
                None => unsafe {
                    std::ptr::copy_nonoverlapping(
                        part.as_ptr(),
                        self.inner.base.add(self.written),
                        part.len(),
                    );
                },
            }
            self.written += part.len();
        }
        Ok(start)
    }

    /// Makes everything written so far visible to readers.
    pub(crate) fn publish(&self) {
        self.inner.published.store(self.written, Ordering::Release);
    }

    /// The read side.
    pub(crate) fn region(&self) -> Region {
        Region {
            inner: self.inner.clone(),
        }
    }

    /// Publishes, syncs and cuts the file to what was written; the region
    /// stays readable, and nobody can write to it again.
    pub(crate) fn seal(self) -> io::Result<Region> {
        self.publish();
        let region = self.region();
        region.sync(0, self.written)?;
        self.inner.backing.trim(self.written)?;
        Ok(region)
    }
}
