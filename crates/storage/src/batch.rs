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

/// A whole RecordBatch v2 whose CRC is good and whose records agree with
/// its header (offset deltas, count, largest timestamp). A compressed batch
/// was decompressed (within `DECOMPRESSED_BYTES_MAX`) to check its records,
/// and is kept as it was sent, compressed.
#[derive(Debug, Clone)]
pub struct CheckedBatch {
    bytes: Bytes,
    header: BatchHeader,
    first_key: FirstKey,
}

/// Where the first record's key is, for key-hash partitioning.
#[derive(Debug, Clone)]
enum FirstKey {
    /// The first record has no key.
    Null,
    /// In the batch bytes (an uncompressed batch): no copy.
    InBatch(Range<usize>),
    /// Copied out of the decompressed records (a compressed batch), which
    /// are not kept.
    Copied(Bytes),
}

impl CheckedBatch {
    /// Checks `bytes`: exactly one batch, its CRC, every record (decompressed
    /// first if the batch is compressed).
    pub fn new(bytes: Bytes) -> Result<CheckedBatch, BatchError> {
        BATCHES_CHECKED.fetch_add(1, Ordering::Relaxed);
        let parsed = RecordBatch::parse_exact(&bytes)?;
        let records = parsed.validate()?;
        let first_key = match records.iter().next().transpose()?.and_then(|r| r.key) {
            None => FirstKey::Null,
            Some(key) if records.decompressed().is_some() => {
                FirstKey::Copied(Bytes::copy_from_slice(key))
            }
            Some(key) => {
                let start = key.as_ptr() as usize - bytes.as_ptr() as usize;
                FirstKey::InBatch(start..start + key.len())
            }
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
        match &self.first_key {
            FirstKey::Null => None,
            FirstKey::InBatch(range) => Some(&self.bytes[range.clone()]),
            FirstKey::Copied(key) => Some(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carteiro::record::{Compression, NewRecord, RecordBatchBuilder};

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

    fn compressed(codec: Compression, keys: &[Option<&[u8]>]) -> Vec<u8> {
        let mut builder = RecordBatchBuilder::new().with_compression(codec);
        let value = b"a value that repeats ".repeat(20);
        for key in keys {
            builder
                .append(&NewRecord {
                    timestamp: 5,
                    key: *key,
                    value: Some(&value),
                    headers: &[],
                })
                .expect("fits");
        }
        builder.build().expect("non-empty")
    }

    #[test]
    fn a_compressed_batch_is_checked_kept_as_sent_and_its_first_key_found() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = Bytes::from(compressed(codec, &[Some(b"alice"), None, Some(b"bob")]));
            let checked = CheckedBatch::new(bytes.clone()).expect("valid");
            assert_eq!(checked.header().attributes.compression(), codec);
            assert_eq!(checked.bytes(), &bytes, "kept as sent");
            assert_eq!(checked.first_key(), Some(&b"alice"[..]));
            assert_eq!(checked.header().record_count, 3);
            let keyless = Bytes::from(compressed(codec, &[None, Some(b"bob")]));
            assert_eq!(CheckedBatch::new(keyless).expect("valid").first_key(), None);
        }
    }

    #[test]
    fn damage_inside_a_compressed_batch_is_refused() {
        let mut damaged = compressed(Compression::Zstd, &[Some(b"k")]);
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(CheckedBatch::new(Bytes::from(damaged)).is_err());
    }
}
