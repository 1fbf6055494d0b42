//! The reader: validates a batch in place and iterates its records, with no
//! copy when the batch is uncompressed.

use bytes::Bytes;

use super::compression;
use super::varint::{VarintError, read_varint, read_varlong};
use super::*;

/// A validated record batch borrowed from a byte buffer.
///
/// Construction checks the header, that the whole batch is present and the
/// CRC-32C (over the bytes as they are, compressed or not).
/// [`RecordBatch::validate`] also walks every record.
#[derive(Debug, Clone, Copy)]
pub struct RecordBatch<'a> {
    bytes: &'a [u8],
    header: BatchHeader,
}

impl<'a> RecordBatch<'a> {
    /// Reads the batch at the start of `buf`; returns it and the bytes after it.
    pub fn parse(buf: &'a [u8]) -> Result<(RecordBatch<'a>, &'a [u8]), BatchError> {
        let header = BatchHeader::parse(buf)?;
        let total = header.total_bytes();
        if buf.len() < total {
            return Err(BatchError::Truncated {
                field: "batch",
                needed: total,
                available: buf.len(),
            });
        }
        let (bytes, rest) = buf.split_at(total);
        let actual = crc32c::crc32c(&bytes[ATTRIBUTES_AT..]);
        if actual != header.crc {
            return Err(BatchError::ChecksumMismatch {
                expected: header.crc,
                actual,
            });
        }
        Ok((RecordBatch { bytes, header }, rest))
    }

    /// Reads a buffer that must hold exactly one batch.
    pub fn parse_exact(buf: &'a [u8]) -> Result<RecordBatch<'a>, BatchError> {
        let (batch, rest) = Self::parse(buf)?;
        if !rest.is_empty() {
            return Err(BatchError::TrailingBytes {
                extra: rest.len(),
                count: i64::from(batch.header.record_count),
            });
        }
        Ok(batch)
    }

    /// The batch's bytes, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The fixed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// Offset of the first record.
    pub fn base_offset(&self) -> i64 {
        self.header.base_offset
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.header.last_offset()
    }

    /// Number of records the header announces.
    pub fn record_count(&self) -> i32 {
        self.header.record_count
    }

    /// The records, ready to iterate with [`BatchRecords::iter`]: borrowed
    /// from the batch bytes when it is uncompressed (no copy), decompressed
    /// into a buffer of their own when it is compressed (again on every
    /// call; at most [`DECOMPRESSED_BYTES_MAX`] bytes).
    ///
    /// Fails for a codec Kafka does not define, or a records section that
    /// does not decompress within the limit. The records themselves are
    /// checked as they are iterated, or all at once by [`validate`](Self::validate).
    pub fn records(&self) -> Result<BatchRecords<'a>, BatchError> {
        let section = &self.bytes[BATCH_HEADER_BYTES..];
        let section = match self.header.attributes.compression() {
            Compression::None => Section::Borrowed(section),
            codec => Section::Decompressed(Bytes::from(compression::decompress(
                codec,
                section,
                DECOMPRESSED_BYTES_MAX,
            )?)),
        };
        Ok(BatchRecords {
            section,
            count: self.header.record_count as u32,
            base_offset: self.header.base_offset,
            base_timestamp: self.header.base_timestamp,
        })
    }

    /// Walks every record and checks that the header agrees with them:
    /// offset deltas run 0, 1, 2, …; `last_offset_delta` is `record_count - 1`;
    /// `max_timestamp` is the largest record timestamp; no bytes are left
    /// over; every header key is UTF-8. A compressed batch is decompressed
    /// first (within [`DECOMPRESSED_BYTES_MAX`]) and its records checked
    /// the same way.
    ///
    /// Returns the records it walked, so a caller that reads them too does
    /// not decompress twice. A broker calls this before it appends a batch
    /// a client encoded.
    pub fn validate(&self) -> Result<BatchRecords<'a>, BatchError> {
        let count = self.header.record_count;
        if count == 0 {
            return Err(BatchError::InvalidRecordCount {
                count: 0,
                reason: "a batch must hold at least one record",
            });
        }
        if self.header.last_offset_delta != count - 1 {
            return Err(BatchError::HeaderMismatch {
                field: "last_offset_delta",
                found: i64::from(self.header.last_offset_delta),
                expected: i64::from(count - 1),
            });
        }
        let records = self.records()?;
        let mut max_timestamp = i64::MIN;
        for (i, record) in records.iter().enumerate() {
            let record = record?;
            if record.offset_delta != i as i32 {
                return Err(BatchError::MalformedRecord {
                    index: i as u32,
                    reason: "offset delta is not the record's position in the batch",
                });
            }
            check_header_keys(i as u32, record.headers.iter().map(|h| h.key))?;
            max_timestamp = max_timestamp.max(record.timestamp);
        }
        if !self.header.attributes.is_log_append_time()
            && max_timestamp != self.header.max_timestamp
        {
            return Err(BatchError::HeaderMismatch {
                field: "max_timestamp",
                found: self.header.max_timestamp,
                expected: max_timestamp,
            });
        }
        Ok(records)
    }
}

/// A batch's records section, ready to iterate.
#[derive(Debug, Clone)]
enum Section<'a> {
    /// An uncompressed batch's, in the batch bytes.
    Borrowed(&'a [u8]),
    /// A compressed batch's, decompressed.
    Decompressed(Bytes),
}

/// The records of one batch, from [`RecordBatch::records`]: the records
/// section borrowed from the batch when it is uncompressed, decompressed
/// into a buffer of its own when it is compressed.
///
/// [`iter`](Self::iter) yields records borrowing from that section. A caller
/// that keeps keys or values as [`Bytes`] slices them out of
/// [`decompressed`](Self::decompressed) when it is `Some`, out of the batch
/// bytes otherwise.
#[derive(Debug, Clone)]
pub struct BatchRecords<'a> {
    section: Section<'a>,
    count: u32,
    base_offset: i64,
    base_timestamp: i64,
}

impl BatchRecords<'_> {
    /// Iterates the records; yields one error and stops on a malformed one.
    pub fn iter(&self) -> Records<'_> {
        let rest = match &self.section {
            Section::Borrowed(bytes) => bytes,
            Section::Decompressed(bytes) => &bytes[..],
        };
        Records {
            rest,
            index: 0,
            count: self.count,
            base_offset: self.base_offset,
            base_timestamp: self.base_timestamp,
            failed: false,
        }
    }

    /// The decompressed records section of a compressed batch (the records'
    /// keys, values and headers lie in it), or `None` for an uncompressed
    /// batch (they lie in the batch bytes).
    pub fn decompressed(&self) -> Option<&Bytes> {
        match &self.section {
            Section::Borrowed(_) => None,
            Section::Decompressed(bytes) => Some(bytes),
        }
    }
}

/// One record, borrowing its key, value and headers from the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's attributes byte (unused by Kafka today).
    pub attributes: i8,
    /// Absolute offset: the batch's base offset plus `offset_delta`.
    pub offset: i64,
    /// Position relative to the batch's base offset.
    pub offset_delta: i32,
    /// Absolute timestamp in ms: the batch's base timestamp plus the record's delta.
    pub timestamp: i64,
    /// The key, or `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value, or `None` for a null value.
    pub value: Option<&'a [u8]>,
    /// The headers, already validated.
    pub headers: Headers<'a>,
}

/// One record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The header key (Kafka writes UTF-8 strings here).
    pub key: &'a [u8],
    /// The header value, or `None` for null.
    pub value: Option<&'a [u8]>,
}

/// The validated headers of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers<'a> {
    bytes: &'a [u8],
    count: u32,
}

impl<'a> Headers<'a> {
    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when the record has no headers.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Iterates the headers in order.
    pub fn iter(&self) -> impl Iterator<Item = Header<'a>> + 'a {
        let mut rest = self.bytes;
        let mut left = self.count;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            // Validated when the record was read, so this cannot fail; stop if it does.
            let mut cursor = Cursor {
                buf: rest,
                index: 0,
            };
            let header = cursor.header().ok()?;
            rest = cursor.buf;
            Some(header)
        })
    }
}

/// Iterator over a batch's records; yields one error and stops on a malformed one.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
    index: u32,
    count: u32,
    base_offset: i64,
    base_timestamp: i64,
    failed: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.index == self.count {
            if self.rest.is_empty() {
                return None;
            }
            self.failed = true;
            return Some(Err(BatchError::TrailingBytes {
                extra: self.rest.len(),
                count: i64::from(self.count),
            }));
        }
        let result = self.read_one();
        match &result {
            Ok(_) => self.index += 1,
            Err(_) => self.failed = true,
        }
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.count - self.index) as usize;
        (0, Some(left + 1))
    }
}

impl<'a> Records<'a> {
    fn read_one(&mut self) -> Result<Record<'a>, BatchError> {
        let index = self.index;
        let mut outer = Cursor {
            buf: self.rest,
            index,
        };
        let length = outer.varint("record length")?;
        if length < 0 {
            return Err(malformed(index, "negative record length"));
        }
        let length = length as usize;
        if length > outer.buf.len() {
            return Err(malformed(index, "record length runs past the batch"));
        }
        let (body, rest) = outer.buf.split_at(length);
        let mut c = Cursor { buf: body, index };
        let attributes = c.byte("record attributes")? as i8;
        let timestamp_delta = c.varlong("timestamp delta")?;
        let offset_delta = c.varint("offset delta")?;
        let key = c.nullable_bytes("key")?;
        let value = c.nullable_bytes("value")?;
        let header_count = c.varint("header count")?;
        if header_count < 0 {
            return Err(malformed(index, "negative header count"));
        }
        let headers_start = c.buf;
        for _ in 0..header_count {
            c.header()?;
        }
        let headers_len = headers_start.len() - c.buf.len();
        if !c.buf.is_empty() {
            return Err(malformed(
                index,
                "bytes left inside the record after its headers",
            ));
        }
        self.rest = rest;
        Ok(Record {
            attributes,
            offset: self.base_offset.wrapping_add(i64::from(offset_delta)),
            offset_delta,
            timestamp: self.base_timestamp.wrapping_add(timestamp_delta),
            key,
            value,
            headers: Headers {
                bytes: &headers_start[..headers_len],
                count: header_count as u32,
            },
        })
    }
}

fn malformed(index: u32, reason: &'static str) -> BatchError {
    BatchError::MalformedRecord { index, reason }
}

/// A bounds-checked read position inside one record.
struct Cursor<'a> {
    buf: &'a [u8],
    index: u32,
}

impl<'a> Cursor<'a> {
    fn varint(&mut self, field: &'static str) -> Result<i32, BatchError> {
        match read_varint(self.buf) {
            Ok((value, n)) => {
                self.buf = &self.buf[n..];
                Ok(value)
            }
            Err(e) => Err(self.varint_error(field, e)),
        }
    }

    fn varlong(&mut self, field: &'static str) -> Result<i64, BatchError> {
        match read_varlong(self.buf) {
            Ok((value, n)) => {
                self.buf = &self.buf[n..];
                Ok(value)
            }
            Err(e) => Err(self.varint_error(field, e)),
        }
    }

    fn varint_error(&self, field: &'static str, e: VarintError) -> BatchError {
        let reason = match (field, e) {
            ("record length", VarintError::Truncated) => "record length varint truncated",
            ("record length", VarintError::Overflow) => "record length varint overlong",
            ("timestamp delta", VarintError::Truncated) => "timestamp delta varint truncated",
            ("timestamp delta", VarintError::Overflow) => "timestamp delta varint overlong",
            ("offset delta", VarintError::Truncated) => "offset delta varint truncated",
            ("offset delta", VarintError::Overflow) => "offset delta varint overlong",
            (_, VarintError::Truncated) => "length varint truncated",
            (_, VarintError::Overflow) => "length varint overlong",
        };
        malformed(self.index, reason)
    }

    fn byte(&mut self, _field: &'static str) -> Result<u8, BatchError> {
        let (&first, rest) = self
            .buf
            .split_first()
            .ok_or(malformed(self.index, "record attributes missing"))?;
        self.buf = rest;
        Ok(first)
    }

    fn take(&mut self, len: i32, what: &'static str) -> Result<&'a [u8], BatchError> {
        let len = usize::try_from(len).map_err(|_| malformed(self.index, what))?;
        if len > self.buf.len() {
            return Err(malformed(self.index, what));
        }
        let (taken, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(taken)
    }

    fn nullable_bytes(&mut self, field: &'static str) -> Result<Option<&'a [u8]>, BatchError> {
        let len = self.varint(field)?;
        if len == -1 {
            return Ok(None);
        }
        let what = match field {
            "key" => "key length negative or past the record's end",
            "value" => "value length negative or past the record's end",
            _ => "header value length negative or past the record's end",
        };
        self.take(len, what).map(Some)
    }

    fn header(&mut self) -> Result<Header<'a>, BatchError> {
        let key_len = self.varint("header key length")?;
        let key = self.take(
            key_len,
            "header key length negative or past the record's end",
        )?;
        let value = self.nullable_bytes("header value")?;
        Ok(Header { key, value })
    }
}
