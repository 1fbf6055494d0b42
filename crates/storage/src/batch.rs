//! A client's record batch, checked once before it reaches a log.
//!
//! Every append takes a [`CheckedBatch`], so a batch on the produce path is
//! parsed, CRC-checked and walked exactly once, whoever needs to look at it
//! (a partitioner reading its first key, the log appending it).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use carteiro::record::{BatchError, BatchHeader, RecordBatch};

/// Batches checked since the process started.
static BATCHES_CHECKED: AtomicU64 = AtomicU64::new(0);

/// How many batches [`CheckedBatch::new`] has checked since the process
/// started: each check parses a batch, verifies its CRC and walks its
/// records. Tests use it to show that a produce checks a batch once.
pub fn batches_checked() -> u64 {
    BATCHES_CHECKED.load(Ordering::Relaxed)
}

/// A whole, uncompressed RecordBatch v2 whose CRC is good and whose records
/// agree with its header (offset deltas, count, largest timestamp).
#[derive(Debug, Clone)]
pub struct CheckedBatch {
    bytes: Bytes,
    header: BatchHeader,
    first_key: Option<Range<usize>>,
}

impl CheckedBatch {
    /// Checks `bytes`: exactly one batch, its CRC, every record.
    pub fn new(bytes: Bytes) -> Result<CheckedBatch, BatchError> {
        BATCHES_CHECKED.fetch_add(1, Ordering::Relaxed);
        let parsed = RecordBatch::parse_exact(&bytes)?;
        parsed.validate()?;
        // Where the first record's key lies, for key-hash partitioning.
        let first_key = match parsed.records()?.next() {
            Some(record) => record?.key.map(|key| {
                let start = key.as_ptr() as usize - bytes.as_ptr() as usize;
                start..start + key.len()
            }),
            None => None,
        };
        Ok(CheckedBatch {
            header: *parsed.header(),
            bytes,
            first_key,
        })
    }

    /// The batch's bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a batch holds at least its header and one record.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Its header, as the producer wrote it.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The key of its first record, if that record has one.
    pub fn first_key(&self) -> Option<&[u8]> {
        self.first_key.clone().map(|range| &self.bytes[range])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carteiro::record::{NewRecord, RecordBatchBuilder};

    #[test]
    fn the_first_key_is_found_and_damage_is_refused() {
        let mut builder = RecordBatchBuilder::new();
        for key in [Some(&b"alice"[..]), None] {
            builder
                .append(&NewRecord {
                    timestamp: 5,
                    key,
                    value: Some(b"v"),
                    headers: &[],
                })
                .expect("fits");
        }
        let bytes = builder.build().expect("non-empty");
        let checked = CheckedBatch::new(Bytes::from(bytes.clone())).expect("valid");
        assert_eq!(checked.first_key(), Some(&b"alice"[..]));
        assert_eq!(checked.header().record_count, 2);
        let mut damaged = bytes;
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(CheckedBatch::new(Bytes::from(damaged)).is_err());
    }
}
