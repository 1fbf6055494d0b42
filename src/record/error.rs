//! The one error type of the record-batch codec.

/// Why a byte string is not a valid record batch, or a batch cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes than the structure needs.
    #[error("truncated batch: {field} needs {needed} bytes, {available} available")]
    Truncated {
        /// What was being read.
        field: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes that were there.
        available: usize,
    },
    /// `batch_length` is below the header's size or above the codec's limit.
    #[error("batch_length {batch_length} out of range {min}..={max}")]
    BatchLengthOutOfRange {
        /// The value found.
        batch_length: i64,
        /// Smallest valid value.
        min: i64,
        /// Largest valid value.
        max: i64,
    },
    /// The magic byte is not 2 (only RecordBatch v2 is supported).
    #[error("magic {magic} not supported: only RecordBatch v2 (magic 2)")]
    UnsupportedMagic {
        /// The value found.
        magic: i8,
    },
    /// The CRC-32C stored in the header does not match the bytes.
    #[error("batch checksum mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    ChecksumMismatch {
        /// The CRC the header carries.
        expected: u32,
        /// The CRC computed over the bytes.
        actual: u32,
    },
    /// The batch is compressed with a codec this build does not decode.
    #[error("codec not supported: batch attributes name compression codec {codec} ({name})")]
    UnsupportedCodec {
        /// The codec's id from the attribute bits 0..3.
        codec: u8,
        /// Its Kafka name.
        name: &'static str,
    },
    /// A compressed records section that does not decompress with its codec.
    #[error("{codec} records section of {compressed} bytes does not decompress: {reason}")]
    DecompressionFailed {
        /// The codec's Kafka name.
        codec: &'static str,
        /// Size of the compressed records section, in bytes.
        compressed: usize,
        /// What the decompressor said.
        reason: String,
    },
    /// A compressed records section that decompresses past the limit.
    #[error(
        "{codec} records section of {compressed} bytes decompresses to more than the limit of {limit} bytes (DECOMPRESSED_BYTES_MAX)"
    )]
    DecompressedTooLarge {
        /// The codec's Kafka name.
        codec: &'static str,
        /// Size of the compressed records section, in bytes.
        compressed: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The builder's compressor failed.
    #[error("compressing the records with {codec} failed: {reason}")]
    CompressionFailed {
        /// The codec's Kafka name.
        codec: &'static str,
        /// What the compressor said.
        reason: String,
    },
    /// `record_count` is negative or does not fit in the batch.
    #[error("record_count {count} invalid: {reason}")]
    InvalidRecordCount {
        /// The value found.
        count: i64,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A record inside the batch is malformed.
    #[error("record {index} malformed: {reason}")]
    MalformedRecord {
        /// The record's position in the batch, from 0.
        index: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A header field disagrees with the records it describes.
    #[error("batch header field {field} is {found}, records imply {expected}")]
    HeaderMismatch {
        /// The header field.
        field: &'static str,
        /// The value in the header.
        found: i64,
        /// The value the records imply.
        expected: i64,
    },
    /// Bytes remain after the last record the header announces.
    #[error("{extra} bytes after the last of {count} records")]
    TrailingBytes {
        /// How many bytes remain.
        extra: usize,
        /// The declared record count.
        count: i64,
    },
    /// A builder was asked to build a batch with no records.
    #[error("a batch needs at least one record")]
    Empty,
    /// The encoded batch would exceed the codec's size limit.
    #[error("batch of {bytes} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The size it would have.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}
