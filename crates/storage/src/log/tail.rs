//! The tail of a log in memory: copies of its last small batches, exactly
//! as stored, so that a reader at the tail (a consumer waiting for the
//! next record) is answered without reading the segment file: without a
//! system call, and so without a blocking thread to hand the read to.
//!
//! Invariant: the cached batches are contiguous, end at the log's end, lie
//! in the active segment (a roll empties the cache), and are byte for byte
//! what the log wrote at their offsets. A batch too large for the cache
//! empties it (contiguity would break); readers then go to the file until
//! small batches fill it again. Damage done to the file from outside is
//! not seen by reads the cache answers (they serve what was appended); it
//! is found by reads that go to the file, and by recovery.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use carteiro::record::{BASE_OFFSET_AT, PARTITION_LEADER_EPOCH_AT};

use super::read::empty_read;
use super::{Log, LogRead, lock};
use crate::error::ReadError;
use crate::segment::LEADER_EPOCH;

/// Largest batch kept in the tail cache, in bytes (16 KiB): the small
/// batches of a low-latency stream. Larger ones come with throughput,
/// where readers read whole MiBs from the file anyway.
pub const TAIL_BATCH_BYTES_MAX: usize = 16 * 1024;
/// Most bytes of batches a log keeps in its tail cache (128 KiB).
pub const TAIL_CACHE_BYTES_MAX: usize = 128 * 1024;

/// One cached batch.
struct TailBatch {
    base_offset: u64,
    next_offset: u64,
    stored: Bytes,
}

/// See the module documentation.
#[derive(Default)]
pub(super) struct TailCache {
    batches: VecDeque<TailBatch>,
    bytes: usize,
}

impl TailCache {
    /// Keeps a copy of the batch just written at `base_offset` as the
    /// segment holds it (log base offset and leader epoch in its header).
    /// Called under the writer lock, in offset order.
    pub(super) fn push(&mut self, base_offset: u64, next_offset: u64, batch: &[u8]) {
        if batch.len() > TAIL_BATCH_BYTES_MAX {
            return self.clear();
        }
        if self
            .batches
            .back()
            .is_some_and(|last| last.next_offset != base_offset)
        {
            // A gap (cannot happen while appends are contiguous): start over.
            self.clear();
        }
        let mut stored = BytesMut::from(batch);
        stored[BASE_OFFSET_AT..BASE_OFFSET_AT + 8]
            .copy_from_slice(&(base_offset as i64).to_be_bytes());
        stored[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
            .copy_from_slice(&LEADER_EPOCH.to_be_bytes());
        self.bytes += stored.len();
        self.batches.push_back(TailBatch {
            base_offset,
            next_offset,
            stored: stored.freeze(),
        });
        while self.bytes > TAIL_CACHE_BYTES_MAX {
            match self.batches.pop_front() {
                Some(old) => self.bytes -= old.stored.len(),
                None => break,
            }
        }
    }

    /// Forgets every batch (the segment they lie in was rolled).
    pub(super) fn clear(&mut self) {
        self.batches.clear();
        self.bytes = 0;
    }

    /// Whole batches from the one holding `from`, within `max_bytes` (at
    /// least one) and ending at or below `limit`; `None` if `from` lies
    /// before the cached batches.
    fn read(&self, from: u64, max_bytes: usize, limit: u64) -> Option<(Bytes, u64, u64)> {
        let first = self.batches.front()?;
        if from < first.base_offset {
            return None;
        }
        let at = self.batches.partition_point(|b| b.next_offset <= from);
        let mut taken: Vec<&TailBatch> = Vec::new();
        let mut bytes = 0usize;
        for batch in self.batches.range(at..) {
            if batch.next_offset > limit
                || (!taken.is_empty() && bytes + batch.stored.len() > max_bytes)
            {
                break;
            }
            bytes += batch.stored.len();
            taken.push(batch);
        }
        let (first, last) = (taken.first()?, taken.last()?);
        let data = if taken.len() == 1 {
            first.stored.clone()
        } else {
            let mut joined = BytesMut::with_capacity(bytes);
            for batch in &taken {
                joined.extend_from_slice(&batch.stored);
            }
            joined.freeze()
        };
        Some((data, first.base_offset, last.next_offset))
    }
}

impl Log {
    /// As [`read_visible_below`](Self::read_visible_below), but only from
    /// memory: `None` if the answer needs the segment file (the offset is
    /// older than the cached tail). Never blocks, so it may run on an
    /// async worker; the batches were checked when appended.
    pub fn read_visible_tail(
        &self,
        from: u64,
        max_bytes: usize,
        limit: u64,
    ) -> Option<Result<LogRead, ReadError>> {
        let limit = limit.min(self.high_watermark());
        let (end, durable) = (self.end_offset(), self.durable_offset());
        let empty = match empty_read(from, self.start_offset(), end, durable) {
            Ok(empty) => empty,
            Err(e) => return Some(Err(e)),
        };
        if from >= limit {
            return Some(Ok(empty));
        }
        let (batches, first_offset, next_offset) = lock(&self.tail).read(from, max_bytes, limit)?;
        Some(Ok(LogRead {
            batches,
            first_offset,
            next_offset,
            ..empty
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(len: usize, fill: u8) -> Vec<u8> {
        vec![fill; len]
    }

    #[test]
    fn reads_whole_batches_from_the_one_holding_the_offset() {
        let mut cache = TailCache::default();
        cache.push(10, 12, &batch(100, 1));
        cache.push(12, 15, &batch(100, 2));
        cache.push(15, 16, &batch(100, 3));
        let (data, first, next) = cache.read(13, 1000, 16).expect("cached");
        assert_eq!((first, next, data.len()), (12, 16, 200));
        assert_eq!(&data[..8], &12i64.to_be_bytes());
        assert_eq!(&data[100..108], &15i64.to_be_bytes());
        // The limit (the high watermark) stops before batch 15.
        let (_, _, next) = cache.read(10, 1000, 15).expect("cached");
        assert_eq!(next, 15);
        // At least one batch, then within max_bytes.
        let (data, _, next) = cache.read(10, 1, 16).expect("cached");
        assert_eq!((data.len(), next), (100, 12));
        // Before the cache: the file answers.
        assert!(cache.read(9, 1000, 16).is_none());
    }

    #[test]
    fn stays_within_its_bytes_and_a_large_batch_empties_it() {
        let mut cache = TailCache::default();
        let mut offset = 0;
        for _ in 0..100 {
            cache.push(offset, offset + 1, &batch(TAIL_BATCH_BYTES_MAX / 4, 0));
            offset += 1;
        }
        assert!(cache.bytes <= TAIL_CACHE_BYTES_MAX);
        assert!(cache.read(offset - 1, usize::MAX, offset).is_some());
        assert!(cache.read(0, usize::MAX, offset).is_none());
        cache.push(offset, offset + 1, &batch(TAIL_BATCH_BYTES_MAX + 1, 0));
        assert_eq!(cache.bytes, 0);
        assert!(cache.read(offset, usize::MAX, offset + 1).is_none());
    }
}
