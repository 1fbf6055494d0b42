//! Producer ids, unique in a data directory across restarts and crashes:
//! handed out from blocks of [`PRODUCER_ID_BLOCK`], the end of the current
//! block recorded durably in `producer-ids.meta` before any id of it is
//! handed out. After a restart allocation starts at the recorded end, so
//! an id is never handed out twice (the rest of a block is skipped).
//! Layout in `docs/format.md`; the constants below mirror its table.

use std::path::{Path, PathBuf};

use super::PRODUCER_ID_BLOCK;
use crate::data_dir::io_err;
use crate::error::StoreError;
use crate::medium::Medium;

/// File name of the producer id allocator, in the data directory.
pub(crate) const PRODUCER_IDS_FILE: &str = "producer-ids.meta";
/// Magic at the start of the file.
pub(crate) const PRODUCER_IDS_MAGIC: [u8; 4] = *b"CRPI";
/// Version of its format.
pub(crate) const PRODUCER_IDS_VERSION: u16 = 1;

const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 4;
const RESERVED_AT: usize = VERSION_AT + 2;
const BLOCK_END_AT: usize = RESERVED_AT + 2;
const CRC_AT: usize = BLOCK_END_AT + 8;
/// Size of the file, in bytes.
pub(crate) const PRODUCER_IDS_BYTES: usize = CRC_AT + 4;

const _: () = assert!(PRODUCER_IDS_BYTES == 20);

/// The end of the id space: ids are below it.
pub(crate) const PRODUCER_ID_END: i64 = i64::MAX;

/// Encodes the file recording `block_end`.
pub(crate) fn encode(block_end: i64) -> [u8; PRODUCER_IDS_BYTES] {
    let mut out = [0u8; PRODUCER_IDS_BYTES];
    out[MAGIC_AT..VERSION_AT].copy_from_slice(&PRODUCER_IDS_MAGIC);
    out[VERSION_AT..RESERVED_AT].copy_from_slice(&PRODUCER_IDS_VERSION.to_be_bytes());
    out[BLOCK_END_AT..CRC_AT].copy_from_slice(&block_end.to_be_bytes());
    let crc = crc32fast::hash(&out[..CRC_AT]);
    out[CRC_AT..].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes the file: the recorded block end; `Err` says why it cannot be
/// trusted.
pub(crate) fn decode(bytes: &[u8]) -> Result<i64, String> {
    if bytes.len() != PRODUCER_IDS_BYTES {
        return Err(format!(
            "{} bytes, expected {PRODUCER_IDS_BYTES}",
            bytes.len()
        ));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[CRC_AT..]);
    let stored = u32::from_be_bytes(crc);
    let actual = crc32fast::hash(&bytes[..CRC_AT]);
    if stored != actual {
        return Err(format!(
            "checksum mismatch: stored {stored:#010x}, bytes give {actual:#010x}"
        ));
    }
    if bytes[MAGIC_AT..VERSION_AT] != PRODUCER_IDS_MAGIC {
        return Err("bad magic".into());
    }
    let version = u16::from_be_bytes([bytes[VERSION_AT], bytes[VERSION_AT + 1]]);
    if version != PRODUCER_IDS_VERSION {
        return Err(format!(
            "version {version} not supported (this build reads {PRODUCER_IDS_VERSION})"
        ));
    }
    let mut end = [0u8; 8];
    end.copy_from_slice(&bytes[BLOCK_END_AT..CRC_AT]);
    let block_end = i64::from_be_bytes(end);
    if block_end < 0 {
        return Err(format!("block end {block_end} is negative"));
    }
    Ok(block_end)
}

/// Reads the recorded block end in `data_dir`: `None` if no file (no id
/// was ever handed out), `Some(Err)` if it is damaged.
pub(crate) fn read(
    medium: &dyn Medium,
    data_dir: &Path,
) -> Result<Option<Result<i64, String>>, StoreError> {
    let path = data_dir.join(PRODUCER_IDS_FILE);
    let bytes = medium.read_file(&path).map_err(io_err("reading", &path))?;
    Ok(bytes.map(|b| decode(&b)))
}

/// The allocator: the next id, and the end of the block on disk.
#[derive(Debug)]
pub(crate) struct ProducerIds {
    path: PathBuf,
    next: i64,
    block_end: i64,
}

impl ProducerIds {
    /// An allocator for `data_dir` whose file records `block_end`: the
    /// next id handed out is `block_end`, once a new block is recorded.
    pub(crate) fn starting_at(data_dir: &Path, block_end: i64) -> Self {
        ProducerIds {
            path: data_dir.join(PRODUCER_IDS_FILE),
            next: block_end,
            block_end,
        }
    }

    /// The next id. A new block's end is written and synced before an id
    /// of it is handed out; if that fails, nothing changed.
    pub(crate) fn allocate(&mut self, medium: &dyn Medium) -> Result<i64, StoreError> {
        if self.next == PRODUCER_ID_END {
            return Err(StoreError::ProducerIdsExhausted {
                limit: PRODUCER_ID_END,
            });
        }
        if self.next >= self.block_end {
            let end = self.next.saturating_add(PRODUCER_ID_BLOCK);
            medium
                .write_file_atomic(&self.path, &encode(end))
                .map_err(io_err("writing", &self.path))?;
            tracing::debug!(file = %self.path.display(), from = self.next, to = end, "reserved a block of producer ids");
            self.block_end = end;
        }
        let id = self.next;
        self.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulated::SimulatedMedium;
    use proptest::prelude::*;

    #[test]
    fn ids_come_from_durable_blocks_and_a_restart_skips_the_rest_of_one() {
        let medium = SimulatedMedium::new();
        let dir = Path::new("/data");
        let mut ids = ProducerIds::starting_at(dir, 0);
        let first: Vec<i64> = (0..3)
            .map(|_| ids.allocate(&medium).expect("allocates"))
            .collect();
        assert_eq!(first, vec![0, 1, 2]);
        let recorded = read(&medium, dir).expect("reads").expect("written");
        assert_eq!(recorded, Ok(PRODUCER_ID_BLOCK));
        // A restart starts at the recorded end: 3..1000 are never handed out.
        let mut ids = ProducerIds::starting_at(dir, PRODUCER_ID_BLOCK);
        assert_eq!(ids.allocate(&medium).expect("allocates"), PRODUCER_ID_BLOCK);
        assert_eq!(
            read(&medium, dir).expect("reads"),
            Some(Ok(2 * PRODUCER_ID_BLOCK))
        );
    }

    #[test]
    fn a_failed_block_write_hands_out_nothing_and_the_next_call_retries() {
        let medium = SimulatedMedium::new();
        let dir = Path::new("/data");
        medium.set_space_limit(Some(0));
        let mut ids = ProducerIds::starting_at(dir, 0);
        let err = ids.allocate(&medium).expect_err("disk full");
        assert!(err.to_string().contains("producer-ids.meta"), "{err}");
        medium.set_space_limit(None);
        assert_eq!(ids.allocate(&medium).expect("allocates"), 0);
    }

    #[test]
    fn ids_end_below_i64_max_with_a_clear_error() {
        let medium = SimulatedMedium::new();
        let mut ids = ProducerIds::starting_at(Path::new("/data"), i64::MAX - 2);
        assert_eq!(ids.allocate(&medium).expect("allocates"), i64::MAX - 2);
        assert_eq!(ids.allocate(&medium).expect("allocates"), i64::MAX - 1);
        let err = ids.allocate(&medium).expect_err("exhausted");
        assert!(matches!(err, StoreError::ProducerIdsExhausted { limit } if limit == i64::MAX));
        assert!(err.to_string().contains("exhausted"), "{err}");
        assert_eq!(
            read(&medium, Path::new("/data")).expect("reads"),
            Some(Ok(i64::MAX))
        );
    }

    proptest! {
        #[test]
        fn the_file_round_trips_and_any_flipped_bit_is_caught(end in 0i64..=i64::MAX, bit in 0usize..PRODUCER_IDS_BYTES * 8) {
            let bytes = encode(end);
            prop_assert_eq!(decode(&bytes), Ok(end));
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&flipped).is_err());
        }
    }
}
