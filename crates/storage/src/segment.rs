//! A segment: one `.log` file of batches starting at a base offset, with its
//! offset and time indexes. Closed segments are immutable; the active one is
//! appended to by the log's single writer.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use carteiro::record::{BATCH_HEADER_BYTES, BatchHeader, RecordBatch};

use crate::cursor::RegionCursor;
use crate::error::ReadError;
use crate::index::{Index, OffsetEntry, OffsetKind, TimeEntry, TimeKind};
use crate::region::{POOLED_BUFFER_BYTES, Region};

/// Size of the header at the start of every `.log` file, in bytes.
pub const LOG_HEADER_BYTES: usize = 32;
/// Magic at the start of every `.log` file.
pub(crate) const LOG_MAGIC: [u8; 4] = *b"CRTL";
/// Version of the `.log` file format.
pub(crate) const LOG_VERSION: u16 = 1;

/// The partition leader epoch stamped on every stored batch. A single
/// broker leads every partition in epoch 0. The batch CRC does not cover
/// this field, so recovery checks it against this value instead.
pub const LEADER_EPOCH: i32 = 0;

/// Suffix of segment files.
pub(crate) const LOG_SUFFIX: &str = ".log";
/// Suffix of offset index files.
pub(crate) const INDEX_SUFFIX: &str = ".index";
/// Suffix of time index files.
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// The `.log` file of the segment at `base` in `dir`.
pub(crate) fn segment_file(dir: &Path, base: u64) -> PathBuf {
    dir.join(file_name(base, LOG_SUFFIX))
}

/// The file name of a segment's file: the base offset in 20 digits, then `suffix`.
pub(crate) fn file_name(base_offset: u64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// The base offset a segment file name carries, if it is one of ours with `suffix`.
pub(crate) fn parse_file_name(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes the `.log` file header.
pub(crate) fn encode_log_header(base_offset: u64, created_ms: i64) -> [u8; LOG_HEADER_BYTES] {
    let mut h = [0u8; LOG_HEADER_BYTES];
    h[0..4].copy_from_slice(&LOG_MAGIC);
    h[4..6].copy_from_slice(&LOG_VERSION.to_be_bytes());
    // 6..8: flags, none defined.
    h[8..16].copy_from_slice(&base_offset.to_be_bytes());
    h[16..24].copy_from_slice(&created_ms.to_be_bytes());
    // 24..28: reserved.
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_be_bytes());
    h
}

/// Decodes and checks a `.log` file header; returns the creation time in ms.
pub(crate) fn decode_log_header(bytes: &[u8], base_offset: u64) -> Result<i64, String> {
    let h = bytes
        .get(..LOG_HEADER_BYTES)
        .ok_or("file shorter than its header")?;
    let stored = u32::from_be_bytes([h[28], h[29], h[30], h[31]]);
    let actual = crc32fast::hash(&h[..28]);
    if stored != actual {
        return Err(format!(
            "header checksum mismatch: stored {stored:#010x}, bytes give {actual:#010x}"
        ));
    }
    if h[0..4] != LOG_MAGIC {
        return Err("not a segment file (bad magic)".into());
    }
    let version = u16::from_be_bytes([h[4], h[5]]);
    if version != LOG_VERSION {
        return Err(format!(
            "segment format version {version} not supported (this build reads {LOG_VERSION})"
        ));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[8..16]);
    let stored_base = u64::from_be_bytes(b);
    if stored_base != base_offset {
        return Err(format!(
            "header says base offset {stored_base}, file name says {base_offset}"
        ));
    }
    b.copy_from_slice(&h[16..24]);
    Ok(i64::from_be_bytes(b))
}

/// One segment, shared by the writer and any number of readers.
pub(crate) struct Segment {
    pub base_offset: u64,
    pub created_ms: i64,
    pub log_path: PathBuf,
    pub log: Region,
    pub offset_index: Index<OffsetKind>,
    pub time_index: Index<TimeKind>,
    /// Offset after the last published batch.
    pub next_offset: AtomicU64,
    /// Largest batch max-timestamp published, `i64::MIN` while empty.
    pub max_timestamp: AtomicI64,
    /// Offset-index entries computed from the log, once the stored index
    /// was found to point at a wrong batch; look-ups use these from then on.
    pub scanned_index: OnceLock<Vec<OffsetEntry>>,
    /// Bytes between two offset-index entries (the log's config), for a rescan.
    pub index_interval_bytes: u32,
}

/// Batches read from one segment.
pub(crate) struct SegmentRead {
    pub data: Bytes,
    pub first_offset: u64,
    pub next_offset: u64,
}

impl Segment {
    /// Paths of the three files of the segment at `base_offset` in `dir`.
    pub(crate) fn paths(dir: &Path, base_offset: u64) -> [PathBuf; 3] {
        [
            segment_file(dir, base_offset),
            dir.join(file_name(base_offset, INDEX_SUFFIX)),
            dir.join(file_name(base_offset, TIME_INDEX_SUFFIX)),
        ]
    }

    /// The same paths in the order to remove them: indexes first, so that an
    /// index without its segment file always means the file went missing.
    pub(crate) fn paths_for_removal(dir: &Path, base_offset: u64) -> [PathBuf; 3] {
        let [log, index, time] = Self::paths(dir, base_offset);
        [index, time, log]
    }

    /// Bytes of the segment file in use, header included.
    pub(crate) fn size_bytes(&self) -> u64 {
        self.log.published() as u64
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    fn corrupt(&self, position: usize, offset: u64, reason: impl ToString) -> ReadError {
        ReadError::Corrupt {
            file: self.log_path.clone(),
            position: position as u64,
            offset,
            reason: reason.to_string(),
        }
    }

    /// The offset-index entry at or before `relative`, from the stored
    /// index or, once that was found wrong, from a scan of the log.
    fn index_entry(&self, relative: u64) -> Option<OffsetEntry> {
        let below = |k: i64| k as u64 <= relative;
        match self.scanned_index.get() {
            Some(entries) => {
                let i = entries.partition_point(|e| below(i64::from(e.relative_offset)));
                i.checked_sub(1).map(|i| entries[i])
            }
            None => self.offset_index.last_where(below),
        }
    }

    /// Replaces the stored index with entries computed from the log (once),
    /// after `entry` was found to point at the wrong batch.
    fn distrust_index(&self, entry: OffsetEntry, reason: &str) -> Result<(), ReadError> {
        if self.scanned_index.get().is_some() {
            return Err(self.corrupt(
                entry.position as usize,
                self.base_offset + u64::from(entry.relative_offset),
                reason,
            ));
        }
        tracing::error!(
            segment = %self.log_path.display(), relative_offset = entry.relative_offset,
            position = entry.position, %reason,
            "offset index points at the wrong batch; using entries computed from the log"
        );
        let end = self.log.published();
        let mut cursor = RegionCursor::new(&self.log, end);
        let mut cadence = IndexCadence::new(self.index_interval_bytes);
        let mut entries = Vec::new();
        let mut position = LOG_HEADER_BYTES;
        let mut next = self.base_offset;
        while position < end {
            let header = cursor
                .header(position)
                .map_err(|e| self.corrupt(position, next, e))?;
            entries.extend(cadence.observe(self.base_offset, position, &header).0);
            position += header.total_bytes();
            next = header.next_offset() as u64;
        }
        let _ = self.scanned_index.set(entries);
        Ok(())
    }

    /// Position of the batch that holds `offset`, or `None` if the segment
    /// ends (within `end` bytes) before it. Checks that the index entry it
    /// starts from names the batch found there, and that batches follow on.
    pub(crate) fn position_of(
        &self,
        offset: u64,
        end: usize,
    ) -> Result<Option<(usize, BatchHeader)>, ReadError> {
        let relative = offset.saturating_sub(self.base_offset);
        let mut cursor = RegionCursor::new(&self.log, end);
        let (mut position, mut next) = loop {
            let Some(entry) = self.index_entry(relative) else {
                break (LOG_HEADER_BYTES, self.base_offset);
            };
            let expected = self.base_offset + u64::from(entry.relative_offset);
            let found = match cursor.header(entry.position as usize) {
                Ok(header) if header.base_offset == expected as i64 => None,
                Ok(header) => Some(format!(
                    "entry says offset {expected} at byte {}, the batch there starts at offset {}",
                    entry.position, header.base_offset
                )),
                Err(e) => Some(format!(
                    "entry says offset {expected} at byte {}: {e}",
                    entry.position
                )),
            };
            match found {
                None => break (entry.position as usize, expected),
                Some(reason) => self.distrust_index(entry, &reason)?,
            }
        };
        while position < end {
            let header = cursor
                .header(position)
                .map_err(|e| self.corrupt(position, next, e))?;
            if header.base_offset != next as i64 {
                let reason = format!(
                    "batch base offset {} does not follow offset {next}",
                    header.base_offset
                );
                return Err(self.corrupt(position, next, reason));
            }
            if header.last_offset() >= offset as i64 {
                return Ok(Some((position, header)));
            }
            position += header.total_bytes();
            next = header.next_offset() as u64;
        }
        Ok(None)
    }

    /// Whole batches from the one holding `offset`: at least one, then more
    /// while the total stays within `max_bytes` and each ends before
    /// `limit_offset`. Every batch handed out has passed its CRC check; a
    /// damaged batch ends the read before it, or is the error if it is the
    /// first.
    pub(crate) fn read(
        &self,
        offset: u64,
        max_bytes: usize,
        limit_offset: u64,
    ) -> Result<Option<SegmentRead>, ReadError> {
        let end = self.log.published();
        let Some((start, first)) = self.position_of(offset, end)? else {
            return Ok(None);
        };
        if first.next_offset() as u64 > limit_offset {
            return Ok(None);
        }
        // At most a pooled buffer's worth at a time (unless the first batch is
        // larger), so that reads reuse warm buffers; the caller asks again
        // for more.
        let span = first
            .total_bytes()
            .max(max_bytes.min(POOLED_BUFFER_BYTES).min(end - start));
        let first_offset = first.base_offset as u64;
        let data = self
            .log
            .read(start, start + span)
            .map_err(|e| self.corrupt(start, first_offset, e))?;
        let (mut used, mut next_offset) = (0usize, first_offset);
        let mut damage = None;
        while used < data.len() {
            let rest = &data[used..];
            let header = match BatchHeader::parse(rest) {
                Ok(header) => header,
                // A header cut by the end of the span: the next read starts here.
                Err(_) if rest.len() < BATCH_HEADER_BYTES && used > 0 => break,
                Err(e) => {
                    damage = Some(e.to_string());
                    break;
                }
            };
            if header.total_bytes() > rest.len() {
                if used == 0 {
                    damage = Some("batch runs past the end of the data read".to_string());
                }
                break;
            }
            if header.next_offset() as u64 > limit_offset {
                break;
            }
            if header.base_offset != next_offset as i64 {
                damage = Some(format!(
                    "batch base offset {} does not follow offset {next_offset}",
                    header.base_offset
                ));
                break;
            }
            if let Err(e) = RecordBatch::parse(rest) {
                damage = Some(e.to_string());
                break;
            }
            used += header.total_bytes();
            next_offset = header.next_offset() as u64;
        }
        if let Some(reason) = damage
            && used == 0
        {
            return Err(self.corrupt(start, first_offset, reason));
        }
        // Good batches before a damaged one are served; the next read, at
        // the damaged batch, reports it.
        Ok(Some(SegmentRead {
            data: data.slice(..used),
            first_offset,
            next_offset,
        }))
    }

    /// The first offset at or after `timestamp`, if this segment holds one.
    pub(crate) fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>, ReadError> {
        if self.max_timestamp.load(Ordering::Acquire) < timestamp {
            return Ok(None);
        }
        let end = self.log.published();
        // Every batch up to the entry's has timestamps below `timestamp`.
        let from = match self.time_index.last_where(|ts| ts < timestamp) {
            Some(entry) => self.base_offset + u64::from(entry.relative_offset),
            None => self.base_offset,
        };
        let Some((mut position, _)) = self.position_of(from, end)? else {
            return Ok(None);
        };
        let mut cursor = RegionCursor::new(&self.log, end);
        while position < end {
            let header = cursor
                .header(position)
                .map_err(|e| self.corrupt(position, from, e))?;
            let batch_offset = header.base_offset as u64;
            if header.max_timestamp >= timestamp {
                let corrupt = |e: &dyn std::fmt::Display| self.corrupt(position, batch_offset, e);
                let bytes = cursor
                    .bytes(position, header.total_bytes())
                    .map_err(|e| corrupt(&e))?;
                let (batch, _) = RecordBatch::parse(bytes).map_err(|e| corrupt(&e))?;
                let records = batch.records().map_err(|e| corrupt(&e))?;
                for record in records.iter() {
                    let record = record.map_err(|e| corrupt(&e))?;
                    if record.timestamp >= timestamp {
                        return Ok(Some(record.offset as u64));
                    }
                }
            }
            position += header.total_bytes();
        }
        Ok(None)
    }
}

/// Decides which batches get index entries. Appending and rebuilding use
/// this one rule, so a rebuilt index equals the one appends wrote.
#[derive(Debug, Clone)]
pub(crate) struct IndexCadence {
    interval_bytes: usize,
    bytes_since_entry: usize,
    max_timestamp: i64,
    last_time_entry: Option<i64>,
}

impl IndexCadence {
    /// A cadence for an empty segment.
    pub(crate) fn new(interval_bytes: u32) -> Self {
        IndexCadence {
            interval_bytes: interval_bytes as usize,
            bytes_since_entry: 0,
            max_timestamp: i64::MIN,
            last_time_entry: None,
        }
    }

    /// A cadence resumed from a segment's sealed indexes: `bytes_since_entry`
    /// of log follow the last offset entry, and `last_time_entry` is the last
    /// time entry's timestamp (also the segment's largest).
    pub(crate) fn resume(
        interval_bytes: u32,
        bytes_since_entry: usize,
        last_time_entry: Option<i64>,
    ) -> Self {
        IndexCadence {
            interval_bytes: interval_bytes as usize,
            bytes_since_entry,
            max_timestamp: last_time_entry.unwrap_or(i64::MIN),
            last_time_entry,
        }
    }

    /// The largest timestamp observed.
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Observes the batch `header` at `position` of a segment based at
    /// `base_offset`; returns the index entries it gets. Once
    /// `interval_bytes` of log have passed since the last entry, the next
    /// batch gets an offset entry, and a time entry if the segment's largest
    /// timestamp grew.
    pub(crate) fn observe(
        &mut self,
        base_offset: u64,
        position: usize,
        header: &BatchHeader,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        let relative_offset = (header.base_offset as u64 - base_offset) as u32;
        let mut entries = (None, None);
        if self.bytes_since_entry >= self.interval_bytes {
            entries.0 = Some(OffsetEntry {
                relative_offset,
                position: position as u32,
            });
            entries.1 = self.time_entry(relative_offset);
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += header.total_bytes();
        entries
    }

    /// The time entry that records the segment's largest timestamp at the
    /// batch `relative_offset`, if it grew since the last entry.
    pub(crate) fn time_entry(&mut self, relative_offset: u32) -> Option<TimeEntry> {
        if self.max_timestamp == i64::MIN
            || self
                .last_time_entry
                .is_some_and(|ts| ts >= self.max_timestamp)
        {
            return None;
        }
        self.last_time_entry = Some(self.max_timestamp);
        Some(TimeEntry {
            timestamp: self.max_timestamp,
            relative_offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_header_round_trips_and_checks() {
        let h = encode_log_header(42, 1_700_000_000_000);
        assert_eq!(decode_log_header(&h, 42), Ok(1_700_000_000_000));
        assert!(
            decode_log_header(&h, 43)
                .expect_err("base offset checked")
                .contains("base offset")
        );
        let mut bad = h;
        bad[10] ^= 1;
        assert!(
            decode_log_header(&bad, 42)
                .expect_err("crc")
                .contains("checksum")
        );
    }

    #[test]
    fn file_names_are_twenty_digits() {
        assert_eq!(file_name(7, LOG_SUFFIX), "00000000000000000007.log");
        assert_eq!(
            parse_file_name("00000000000000000007.log", LOG_SUFFIX),
            Some(7)
        );
        assert_eq!(parse_file_name("7.log", LOG_SUFFIX), None);
        assert_eq!(
            parse_file_name("00000000000000000007.index", LOG_SUFFIX),
            None
        );
    }
}
