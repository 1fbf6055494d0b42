//! A byte region with one writer that appends and many readers that copy
//! published bytes out: a segment or index file (`pwrite` and `pread`), or,
//! for crash tests, a file of the simulated medium.
//!
//! Readers copy rather than map. A map of a file that someone truncates
//! from outside kills the whole process with SIGBUS on the next access; a
//! `pread` of it returns fewer bytes, which is an error on that partition
//! only. The copy costs one pass over bytes that the batch CRC check reads
//! anyway.
//!
//! Files grow in allocation steps (`fallocate`), not to their capacity at
//! once: a new segment reserves one step, and a reopened one reserves
//! nothing until it is written to.
//!
//! Invariant: bytes below `published` are never written again while the
//! region lives, and the writer (a unique [`RegionWriter`]) only writes at
//! or above it. Readers see only published bytes.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::error::is_disk_full;

/// What holds a region's bytes: a file, or a simulated one.
pub(crate) trait Backing: Send + Sync {
    /// Writes `data` at `offset` (`pwrite`), growing the file if needed.
    fn write_at(&self, offset: usize, data: &[u8]) -> io::Result<()>;
    /// Writes `parts` back to back from `offset`: one `pwritev` for a file,
    /// rather than a system call per part.
    fn write_parts_at(&self, offset: usize, parts: &[&[u8]]) -> io::Result<()> {
        let mut at = offset;
        for part in parts {
            self.write_at(at, part)?;
            at += part.len();
        }
        Ok(())
    }
    /// Fills `buf` from `offset` (`pread`); an error if the file ends first.
    fn read_at(&self, offset: usize, buf: &mut [u8]) -> io::Result<()>;
    /// Appends the `len` bytes at `offset` to `buf`; an error if the file
    /// ends first.
    fn read_append(&self, offset: usize, len: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        let start = buf.len();
        buf.resize(start + len, 0);
        self.read_at(offset, &mut buf[start..])
    }
    /// Makes every byte written so far durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
    /// Gives the file real blocks up to `len` bytes (growing its length), so
    /// that later writes below `len` cannot meet a full disk.
    fn allocate(&self, len: usize) -> io::Result<()>;
    /// Cuts the file to `len` bytes, durably.
    fn trim(&self, len: usize) -> io::Result<()>;
    /// Nobody writes the file again: it may give up what writing needed
    /// (its own open descriptor).
    fn seal(&self) {}
}

struct Inner {
    capacity: usize,
    published: AtomicUsize,
    backing: Box<dyn Backing>,
}

/// The read side of a region: cheap to clone.
#[derive(Clone)]
pub(crate) struct Region {
    inner: Arc<Inner>,
}

/// The unique write side of a region.
pub(crate) struct RegionWriter {
    inner: Arc<Inner>,
    written: usize,
    /// Bytes of the file with blocks behind them (its length, once grown).
    allocated: usize,
    /// Bytes to allocate at a time ahead of the writes; 0 lets each write
    /// grow the file itself.
    allocate_step: usize,
}

/// How a region grows: its largest size and its allocation step, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Growth {
    /// The region never holds more than this.
    pub capacity: usize,
    /// Blocks are reserved this many bytes at a time ahead of the writes
    /// (0: none reserved; each write grows the file).
    pub allocate_step: usize,
}

/// Creates a region over `backing`, whose first `len` bytes are already
/// content and whose file is `file_len` bytes long.
pub(crate) fn new_region(
    backing: Box<dyn Backing>,
    len: usize,
    file_len: usize,
    growth: Growth,
) -> (Region, RegionWriter) {
    let capacity = growth.capacity.max(len);
    let inner = Arc::new(Inner {
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
            allocated: file_len,
            allocate_step: growth.allocate_step,
        },
    )
}

fn past_published(start: usize, end: usize, published: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("read of bytes {start}..{end} past the {published} published"),
    )
}

impl Region {
    /// Bytes readers may see.
    pub(crate) fn published(&self) -> usize {
        self.inner.published.load(Ordering::Acquire)
    }

    /// Copies the published bytes `start..start + buf.len()` into `buf`.
    pub(crate) fn read_into(&self, start: usize, buf: &mut [u8]) -> io::Result<()> {
        let end = start.saturating_add(buf.len());
        let published = self.published();
        if end > published {
            return Err(past_published(start, end, published));
        }
        self.inner.backing.read_at(start, buf)
    }

    /// The published bytes `start..end`, copied into a buffer of their own.
    pub(crate) fn read(&self, start: usize, end: usize) -> io::Result<Bytes> {
        if start > end {
            return Err(past_published(start, end, self.published()));
        }
        let published = self.published();
        if end > published {
            return Err(past_published(start, end, published));
        }
        let len = end - start;
        if len > POOLED_BUFFER_BYTES {
            let mut buf = Vec::with_capacity(len);
            self.inner.backing.read_append(start, len, &mut buf)?;
            return Ok(Bytes::from(buf));
        }
        let mut buf = PooledBuffer::take();
        self.inner.backing.read_append(start, len, &mut buf.0)?;
        Ok(Bytes::from_owner(buf))
    }

    /// Makes everything written so far durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.inner.backing.sync()
    }
}

/// Size of a pooled read buffer, in bytes: a segment read copies at most
/// this much at a time unless its first batch is larger (1 MiB).
pub(crate) const POOLED_BUFFER_BYTES: usize = 1024 * 1024;
/// Most read buffers kept for reuse (16, so at most 16 MiB held idle).
const POOLED_BUFFERS_MAX: usize = 16;

/// Read buffers that readers gave back. A steady stream of fetches reuses
/// their warm pages instead of faulting in (and zeroing) fresh ones for
/// every read.
static READ_BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A read buffer that goes back to the pool when the last view of it drops.
struct PooledBuffer(Vec<u8>);

impl PooledBuffer {
    fn take() -> PooledBuffer {
        let reused = READ_BUFFERS.lock().unwrap_or_else(|p| p.into_inner()).pop();
        PooledBuffer(reused.unwrap_or_else(|| Vec::with_capacity(POOLED_BUFFER_BYTES)))
    }
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        if buf.capacity() != POOLED_BUFFER_BYTES {
            return;
        }
        buf.clear();
        let mut pool = READ_BUFFERS.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOLED_BUFFERS_MAX {
            pool.push(buf);
        }
    }
}

/// The part of a step-rounded allocation that `needed` bytes call for:
/// the next multiple of `step` at or above `needed`, at most `capacity`.
fn allocation_target(needed: usize, step: usize, capacity: usize) -> usize {
    if step == 0 {
        return needed;
    }
    needed
        .div_ceil(step)
        .saturating_mul(step)
        .min(capacity)
        .max(needed)
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

    /// Reserves blocks for the next `bytes` bytes of writes, a step at a
    /// time; on a full disk, exactly what they need; else the disk's error.
    pub(crate) fn reserve(&mut self, bytes: usize) -> io::Result<()> {
        let needed = self.written + bytes;
        if self.allocate_step == 0 || needed <= self.allocated {
            return Ok(());
        }
        let target = allocation_target(needed, self.allocate_step, self.inner.capacity);
        match self.inner.backing.allocate(target) {
            Ok(()) => {
                self.allocated = target;
                Ok(())
            }
            Err(e) if target > needed && is_disk_full(&e) => {
                self.inner.backing.allocate(needed)?;
                self.allocated = needed;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Appends `parts` back to back, unpublished; returns where they start.
    /// On an error nothing counts as written: the next append writes over
    /// whatever part of them reached the file.
    ///
    /// # Panics
    /// If they do not fit: callers check [`remaining`](Self::remaining) first.
    pub(crate) fn append(&mut self, parts: &[&[u8]]) -> io::Result<usize> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        assert!(
            total <= self.remaining(),
            "append of {total} bytes past the region's end"
        );
        self.reserve(total)?;
        let start = self.written;
        self.inner.backing.write_parts_at(start, parts)?;
        self.written = start + total;
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
        // `trim` is durable for the whole file (`sync_all` after the cut):
        // no sync of its own first.
        self.inner.backing.trim(self.written)?;
        self.inner.backing.seal();
        Ok(region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_rounds_up_to_the_step_within_capacity() {
        assert_eq!(allocation_target(1, 16, 100), 16);
        assert_eq!(allocation_target(16, 16, 100), 16);
        assert_eq!(allocation_target(17, 16, 100), 32);
        assert_eq!(allocation_target(99, 16, 100), 100);
        assert_eq!(allocation_target(5, 0, 100), 5);
    }
}
