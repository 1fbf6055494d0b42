//! The fixed 61-byte batch header: reading it without touching the records.

use super::*;

/// The compression codec named by attribute bits 0..3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression (0).
    #[default]
    None,
    /// gzip (1): a gzip stream.
    Gzip,
    /// snappy (2): Java's xerial framing (a raw snappy block is read too).
    Snappy,
    /// lz4 (3): an LZ4 frame.
    Lz4,
    /// zstd (4): a zstd frame.
    Zstd,
    /// An id Kafka does not define (5..7).
    Unknown(u8),
}

impl Compression {
    /// The codec's id in the attribute bits.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
            Compression::Unknown(id) => id,
        }
    }

    /// Kafka's name for the codec.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::Unknown(_) => "unknown",
        }
    }

    /// The codecs this build reads and writes, `None` first.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
}

/// The batch `attributes` field (i16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes(pub i16);

impl Attributes {
    /// Bits 0..3: the compression codec's id.
    pub const CODEC_MASK: i16 = 0b111;
    const LOG_APPEND_TIME: i16 = 1 << 3;
    const TRANSACTIONAL: i16 = 1 << 4;
    const CONTROL: i16 = 1 << 5;

    /// The compression codec (bits 0..3).
    pub fn compression(self) -> Compression {
        match (self.0 & Self::CODEC_MASK) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }

    /// Bit 3: timestamps are the broker's append time, not the producer's create time.
    pub fn is_log_append_time(self) -> bool {
        self.0 & Self::LOG_APPEND_TIME != 0
    }

    /// Bit 4: the batch belongs to a transaction.
    pub fn is_transactional(self) -> bool {
        self.0 & Self::TRANSACTIONAL != 0
    }

    /// Bit 5: the batch holds control records (transaction markers).
    pub fn is_control(self) -> bool {
        self.0 & Self::CONTROL != 0
    }
}

/// The fixed header of a batch, read without the records or the CRC check.
///
/// Log recovery and index rebuilding scan with this: it checks the magic
/// and that `batch_length` is in range, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batch_length` field: the batch is `batch_length + 12` bytes.
    pub batch_length: i32,
    /// The leader epoch of the partition when the batch was appended, or -1.
    pub partition_leader_epoch: i32,
    /// The stored CRC-32C.
    pub crc: u32,
    /// Codec, timestamp type and flags.
    pub attributes: Attributes,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record, in ms since the Unix epoch.
    pub base_timestamp: i64,
    /// Largest record timestamp in the batch, in ms since the Unix epoch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// How many records follow.
    pub record_count: i32,
}

#[inline]
fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

impl BatchHeader {
    /// Reads the header at the start of `buf` (which may hold more after it).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated {
                field: "batch header",
                needed: BATCH_HEADER_BYTES,
                available: buf.len(),
            });
        }
        let batch_length = i32::from_be_bytes(array(buf, BATCH_LENGTH_AT));
        let min = (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i64;
        let max = (MAX_BATCH_BYTES_CODEC - BATCH_LOG_OVERHEAD_BYTES) as i64;
        if i64::from(batch_length) < min || i64::from(batch_length) > max {
            return Err(BatchError::BatchLengthOutOfRange {
                batch_length: i64::from(batch_length),
                min,
                max,
            });
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        let header = BatchHeader {
            base_offset: i64::from_be_bytes(array(buf, BASE_OFFSET_AT)),
            batch_length,
            partition_leader_epoch: i32::from_be_bytes(array(buf, PARTITION_LEADER_EPOCH_AT)),
            crc: u32::from_be_bytes(array(buf, CRC_AT)),
            attributes: Attributes(i16::from_be_bytes(array(buf, ATTRIBUTES_AT))),
            last_offset_delta: i32::from_be_bytes(array(buf, LAST_OFFSET_DELTA_AT)),
            base_timestamp: i64::from_be_bytes(array(buf, BASE_TIMESTAMP_AT)),
            max_timestamp: i64::from_be_bytes(array(buf, MAX_TIMESTAMP_AT)),
            producer_id: i64::from_be_bytes(array(buf, PRODUCER_ID_AT)),
            producer_epoch: i16::from_be_bytes(array(buf, PRODUCER_EPOCH_AT)),
            base_sequence: i32::from_be_bytes(array(buf, BASE_SEQUENCE_AT)),
            record_count: i32::from_be_bytes(array(buf, RECORD_COUNT_AT)),
        };
        if header.record_count < 0 {
            return Err(BatchError::InvalidRecordCount {
                count: i64::from(header.record_count),
                reason: "negative",
            });
        }
        if header.last_offset_delta < 0 {
            return Err(BatchError::HeaderMismatch {
                field: "last_offset_delta",
                found: i64::from(header.last_offset_delta),
                expected: i64::from(header.record_count.saturating_sub(1).max(0)),
            });
        }
        Ok(header)
    }

    /// The whole batch's size in bytes, header included.
    pub fn total_bytes(&self) -> usize {
        // batch_length was checked to be in range by `parse`.
        self.batch_length as usize + BATCH_LOG_OVERHEAD_BYTES
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset after this batch: `last_offset() + 1`.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
}

/// Overwrites the `base_offset` of the batch at the start of `batch`.
///
/// The CRC does not cover this field, so the batch stays valid.
///
/// # Panics
/// If `batch` is shorter than 8 bytes: callers pass batches they validated.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}
