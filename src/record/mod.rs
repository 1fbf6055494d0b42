//! Apache Kafka's RecordBatch v2, byte for byte: the unit on disk and on the wire.
//!
//! A batch is a 61-byte header followed by `record_count` records, each a
//! run of zigzag varints and byte strings (layout in `docs/format.md`).
//! The CRC-32C covers everything from `attributes` to the end, so the
//! broker can overwrite `base_offset` (and the partition leader epoch)
//! without recomputing it.
//!
//! - [`RecordBatchBuilder`] encodes records into a batch, uncompressed or
//!   compressed with one of Kafka's codecs ([`Compression`]).
//! - [`RecordBatch`] validates a batch in place and hands out its records
//!   ([`BatchRecords`]): borrowing keys, values and headers from the batch
//!   bytes when it is uncompressed, from a buffer of their own (decompressed
//!   at most [`DECOMPRESSED_BYTES_MAX`] bytes) when it is compressed.
//! - [`BatchHeader`] reads only the fixed header, for scanning a log.
//! - [`stamp_producer`] rewrites an idempotent producer's marks on a built
//!   batch (and its CRC).
//!
//! Every byte string given to the reader yields a typed [`BatchError`] or
//! valid records; the reader never panics and never reads out of bounds.

mod builder;
mod compression;
mod error;
mod header;
mod reader;
mod varint;

pub use builder::{NewRecord, ProducerStamp, RecordBatchBuilder, sequence_after, stamp_producer};
pub use compression::{XERIAL_SNAPPY_BLOCK_BYTES, XERIAL_SNAPPY_HEADER_BYTES, XERIAL_SNAPPY_MAGIC};
pub use error::BatchError;
pub use header::{Attributes, BatchHeader, Compression, set_base_offset};
pub use reader::{BatchRecords, Header, Headers, Record, RecordBatch, Records};

/// Byte position of `base_offset` (i64) in the batch header.
pub const BASE_OFFSET_AT: usize = 0;
/// Byte position of `batch_length` (i32): the bytes that follow this field.
pub const BATCH_LENGTH_AT: usize = 8;
/// Byte position of `partition_leader_epoch` (i32).
pub const PARTITION_LEADER_EPOCH_AT: usize = 12;
/// Byte position of `magic` (i8), always [`MAGIC_V2`].
pub const MAGIC_AT: usize = 16;
/// Byte position of `crc` (u32, CRC-32C of bytes `ATTRIBUTES_AT..`).
pub const CRC_AT: usize = 17;
/// Byte position of `attributes` (i16): codec, timestamp type, flags.
pub const ATTRIBUTES_AT: usize = 21;
/// Byte position of `last_offset_delta` (i32).
pub const LAST_OFFSET_DELTA_AT: usize = 23;
/// Byte position of `base_timestamp` (i64, Kafka's "first timestamp").
pub const BASE_TIMESTAMP_AT: usize = 27;
/// Byte position of `max_timestamp` (i64).
pub const MAX_TIMESTAMP_AT: usize = 35;
/// Byte position of `producer_id` (i64).
pub const PRODUCER_ID_AT: usize = 43;
/// Byte position of `producer_epoch` (i16).
pub const PRODUCER_EPOCH_AT: usize = 51;
/// Byte position of `base_sequence` (i32).
pub const BASE_SEQUENCE_AT: usize = 53;
/// Byte position of `record_count` (i32).
pub const RECORD_COUNT_AT: usize = 57;
/// Size of the fixed batch header in bytes; records start here.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `batch_length`'s count starts (`base_offset` and `batch_length` itself).
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;
/// The only batch format we read and write.
pub const MAGIC_V2: i8 = 2;
/// The largest batch the codec accepts, in bytes (the header's i32 length bounds it).
/// Brokers and logs configure a far smaller limit of their own.
pub const MAX_BATCH_BYTES_CODEC: usize = i32::MAX as usize;
/// The most bytes the records section of one compressed batch may
/// decompress to. The reader stops and refuses the batch as soon as the
/// output would pass it, whatever sizes the compressed bytes declare.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The largest zstd window the reader accepts, as a power of two: a window
/// over [`DECOMPRESSED_BYTES_MAX`] could only serve output it refuses.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 26;
/// Value of `producer_id`, `producer_epoch`, `base_sequence` and
/// `partition_leader_epoch` when not set, as in Kafka.
pub const NO_PRODUCER_ID: i64 = -1;

/// Kafka's header keys are strings: UTF-8, as every client reads them. The
/// reader refuses a record with another key, and the builder never writes one.
fn check_header_keys<'a>(
    index: u32,
    mut keys: impl Iterator<Item = &'a [u8]>,
) -> Result<(), BatchError> {
    if keys.any(|key| std::str::from_utf8(key).is_err()) {
        return Err(BatchError::MalformedRecord {
            index,
            reason: "a header key is not UTF-8 (header keys are strings)",
        });
    }
    Ok(())
}

const _: () = assert!(RECORD_COUNT_AT + 4 == BATCH_HEADER_BYTES);
const _: () = assert!(CRC_AT + 4 == ATTRIBUTES_AT);
const _: () = assert!(BATCH_LENGTH_AT + 4 == BATCH_LOG_OVERHEAD_BYTES);
const _: () = assert!(PRODUCER_ID_AT + 8 == PRODUCER_EPOCH_AT);
const _: () = assert!(PRODUCER_EPOCH_AT + 2 == BASE_SEQUENCE_AT);
const _: () = assert!(BASE_SEQUENCE_AT + 4 == RECORD_COUNT_AT);

#[cfg(test)]
mod tests;
