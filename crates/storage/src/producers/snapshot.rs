//! The producer snapshot, `<offset>.snapshot` in a partition directory: the
//! state of every idempotent producer as of `offset` (built from the
//! batches below it), so that opening a log scans only the batches after
//! it. Written whole and replaced atomically; CRC-32 protected. Layout in
//! `docs/format.md`; the constants below mirror its tables.

use std::collections::VecDeque;

use super::{BatchMetadata, PRODUCER_BATCHES_KEPT, ProducerEntry, ProducerStates};

/// Suffix of a snapshot file; its name is the offset in 20 digits, then this.
pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Magic at the start of a snapshot file.
pub(crate) const SNAPSHOT_MAGIC: [u8; 4] = *b"CRPS";
/// Version of the snapshot format.
pub(crate) const SNAPSHOT_VERSION: u16 = 1;
/// Snapshot files a partition keeps: the newest and the one before it (a
/// damaged newest one then costs a scan of one segment, not of the log).
pub(crate) const SNAPSHOTS_KEPT: usize = 2;

// The header.
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 4;
const RESERVED_AT: usize = VERSION_AT + 2;
const OFFSET_AT: usize = RESERVED_AT + 2;
const COUNT_AT: usize = OFFSET_AT + 8;
/// Bytes of the header.
pub(crate) const SNAPSHOT_HEADER_BYTES: usize = COUNT_AT + 4;

// One producer.
const ENTRY_PRODUCER_ID_AT: usize = 0;
const ENTRY_EPOCH_AT: usize = ENTRY_PRODUCER_ID_AT + 8;
const ENTRY_BATCH_COUNT_AT: usize = ENTRY_EPOCH_AT + 2;
const ENTRY_LAST_APPEND_AT: usize = ENTRY_BATCH_COUNT_AT + 2;
/// Bytes of a producer's fixed part (its batches follow).
pub(crate) const SNAPSHOT_ENTRY_BYTES: usize = ENTRY_LAST_APPEND_AT + 8;

// One of its batches.
const BATCH_FIRST_SEQ_AT: usize = 0;
const BATCH_LAST_SEQ_AT: usize = BATCH_FIRST_SEQ_AT + 4;
const BATCH_BASE_OFFSET_AT: usize = BATCH_LAST_SEQ_AT + 4;
const BATCH_LAST_OFFSET_AT: usize = BATCH_BASE_OFFSET_AT + 8;
const BATCH_APPEND_TIME_AT: usize = BATCH_LAST_OFFSET_AT + 8;
/// Bytes of one kept batch.
pub(crate) const SNAPSHOT_BATCH_BYTES: usize = BATCH_APPEND_TIME_AT + 8;

/// Bytes of the trailer: the CRC-32 of everything before it.
pub(crate) const SNAPSHOT_CRC_BYTES: usize = 4;

const _: () = assert!(SNAPSHOT_HEADER_BYTES == 20);
const _: () = assert!(SNAPSHOT_ENTRY_BYTES == 20);
const _: () = assert!(SNAPSHOT_BATCH_BYTES == 32);

/// A snapshot as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// The state is that of the batches below this offset.
    pub offset: u64,
    /// Every producer, by ascending id.
    pub producers: Vec<(i64, ProducerEntry)>,
}

/// Encodes the state `states` as of `offset`.
pub(crate) fn encode(offset: u64, states: &ProducerStates) -> Vec<u8> {
    let producers = states.sorted();
    let batches: usize = producers.iter().map(|(_, e)| e.batches.len()).sum();
    let mut out = Vec::with_capacity(
        SNAPSHOT_HEADER_BYTES
            + producers.len() * SNAPSHOT_ENTRY_BYTES
            + batches * SNAPSHOT_BATCH_BYTES
            + SNAPSHOT_CRC_BYTES,
    );
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&(producers.len() as u32).to_be_bytes());
    for (id, entry) in producers {
        debug_assert!((1..=PRODUCER_BATCHES_KEPT).contains(&entry.batches.len()));
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&entry.epoch.to_be_bytes());
        out.extend_from_slice(&(entry.batches.len() as u16).to_be_bytes());
        out.extend_from_slice(&entry.last_append_ms.to_be_bytes());
        for b in &entry.batches {
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.base_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset.to_be_bytes());
            out.extend_from_slice(&b.append_time_ms.to_be_bytes());
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// Decodes the snapshot file named for `offset`; `Err` says why it cannot
/// be trusted. Besides its checksum, everything it says is checked: the
/// offset its name gives, ids ascending and not negative, 1 to
/// [`PRODUCER_BATCHES_KEPT`] batches each, in offset order, all below the
/// offset.
pub(crate) fn decode(bytes: &[u8], offset: u64) -> Result<Snapshot, String> {
    let min = SNAPSHOT_HEADER_BYTES + SNAPSHOT_CRC_BYTES;
    if bytes.len() < min {
        return Err(format!(
            "{} bytes, shorter than the smallest snapshot ({min})",
            bytes.len()
        ));
    }
    let (body, crc) = bytes.split_at(bytes.len() - SNAPSHOT_CRC_BYTES);
    let stored = u32::from_be_bytes(array(crc, 0));
    let actual = crc32fast::hash(body);
    if stored != actual {
        return Err(format!(
            "checksum mismatch: stored {stored:#010x}, bytes give {actual:#010x}"
        ));
    }
    if body[MAGIC_AT..VERSION_AT] != SNAPSHOT_MAGIC {
        return Err("not a producer snapshot (bad magic)".into());
    }
    let version = u16::from_be_bytes(array(body, VERSION_AT));
    if version != SNAPSHOT_VERSION {
        return Err(format!(
            "snapshot format version {version} not supported (this build reads {SNAPSHOT_VERSION})"
        ));
    }
    let stored_offset = u64::from_be_bytes(array(body, OFFSET_AT));
    if stored_offset != offset {
        return Err(format!(
            "it says offset {stored_offset}, its file name says {offset}"
        ));
    }
    let count = u32::from_be_bytes(array(body, COUNT_AT)) as usize;
    let mut at = SNAPSHOT_HEADER_BYTES;
    let mut producers: Vec<(i64, ProducerEntry)> = Vec::with_capacity(count.min(body.len()));
    for i in 0..count {
        if body.len() < at + SNAPSHOT_ENTRY_BYTES {
            return Err(format!("producer {i} of {count} runs past the end"));
        }
        let entry = &body[at..];
        let id = i64::from_be_bytes(array(entry, ENTRY_PRODUCER_ID_AT));
        let epoch = i16::from_be_bytes(array(entry, ENTRY_EPOCH_AT));
        let batch_count = u16::from_be_bytes(array(entry, ENTRY_BATCH_COUNT_AT)) as usize;
        let last_append_ms = i64::from_be_bytes(array(entry, ENTRY_LAST_APPEND_AT));
        if id < 0 || producers.last().is_some_and(|(prev, _)| *prev >= id) {
            return Err(format!(
                "producer id {id} is negative or not above the one before it"
            ));
        }
        if !(1..=PRODUCER_BATCHES_KEPT).contains(&batch_count) {
            return Err(format!(
                "producer {id} has {batch_count} batches, not 1 to {PRODUCER_BATCHES_KEPT}"
            ));
        }
        at += SNAPSHOT_ENTRY_BYTES;
        if body.len() < at + batch_count * SNAPSHOT_BATCH_BYTES {
            return Err(format!("the batches of producer {id} run past the end"));
        }
        let mut batches = VecDeque::with_capacity(PRODUCER_BATCHES_KEPT);
        for _ in 0..batch_count {
            let b = &body[at..at + SNAPSHOT_BATCH_BYTES];
            let batch = BatchMetadata {
                first_seq: i32::from_be_bytes(array(b, BATCH_FIRST_SEQ_AT)),
                last_seq: i32::from_be_bytes(array(b, BATCH_LAST_SEQ_AT)),
                base_offset: u64::from_be_bytes(array(b, BATCH_BASE_OFFSET_AT)),
                last_offset: u64::from_be_bytes(array(b, BATCH_LAST_OFFSET_AT)),
                append_time_ms: i64::from_be_bytes(array(b, BATCH_APPEND_TIME_AT)),
            };
            let follows = batches
                .back()
                .is_none_or(|prev: &BatchMetadata| prev.last_offset < batch.base_offset);
            if batch.last_offset < batch.base_offset || batch.last_offset >= offset || !follows {
                return Err(format!(
                    "producer {id}: a batch at offsets {}..={} is out of order or not below {offset}",
                    batch.base_offset, batch.last_offset
                ));
            }
            batches.push_back(batch);
            at += SNAPSHOT_BATCH_BYTES;
        }
        producers.push((
            id,
            ProducerEntry {
                epoch,
                batches,
                last_append_ms,
            },
        ));
    }
    if at != body.len() {
        return Err(format!(
            "{} bytes after the last of {count} producers",
            body.len() - at
        ));
    }
    Ok(Snapshot { offset, producers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producers::{PRODUCERS_PER_PARTITION_MAX, ProducerBatch};
    use proptest::prelude::*;

    fn states(producers: &[(i64, i16, usize)]) -> ProducerStates {
        let mut states = ProducerStates::new(PRODUCERS_PER_PARTITION_MAX, 1000);
        let mut offset = 0;
        for &(id, epoch, batches) in producers {
            for seq in 0..batches as i32 {
                let batch = ProducerBatch {
                    producer_id: id,
                    epoch,
                    first_seq: seq * 2,
                    last_seq: seq * 2 + 1,
                };
                states.record(&batch, batch.placed(offset, offset + 1, 7), 9);
                offset += 2;
            }
        }
        states
    }

    #[test]
    fn a_snapshot_round_trips() {
        let states = states(&[(3, 1, 7), (0, 0, 1), (i64::MAX - 1, i16::MAX, 5)]);
        let bytes = encode(100, &states);
        let snapshot = decode(&bytes, 100).expect("valid");
        assert_eq!(snapshot.offset, 100);
        let expected: Vec<(i64, ProducerEntry)> = states
            .sorted()
            .into_iter()
            .map(|(id, e)| (id, e.clone()))
            .collect();
        assert_eq!(snapshot.producers, expected);
        assert_eq!(snapshot.producers[1].1.batches.len(), PRODUCER_BATCHES_KEPT);
        let empty = encode(0, &ProducerStates::new(1, 1));
        assert_eq!(empty.len(), SNAPSHOT_HEADER_BYTES + SNAPSHOT_CRC_BYTES);
        assert_eq!(decode(&empty, 0).expect("valid").producers, Vec::new());
    }

    #[test]
    fn a_snapshot_is_checked_against_its_name_and_its_offset() {
        let bytes = encode(100, &states(&[(1, 0, 3)]));
        let err = decode(&bytes, 101).expect_err("named for another offset");
        assert!(err.contains("file name says 101"), "{err}");
        // Batches at or past the snapshot's offset cannot be in it.
        let bytes = encode(3, &states(&[(1, 0, 3)]));
        let err = decode(&bytes, 3).expect_err("batches past the offset");
        assert!(err.contains("not below 3"), "{err}");
        let err = decode(&bytes[..10], 3).expect_err("short");
        assert!(err.contains("shorter"), "{err}");
    }

    proptest! {
        #[test]
        fn any_flipped_bit_or_cut_is_caught(bit in 0usize..(20 + 2 * (20 + 3 * 32) + 4) * 8, cut in 1usize..100) {
            let bytes = encode(1000, &states(&[(1, 0, 3), (2, 4, 3)]));
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&flipped, 1000).is_err());
            let cut = cut.min(bytes.len());
            prop_assert!(decode(&bytes[..bytes.len() - cut], 1000).is_err());
        }
    }
}
