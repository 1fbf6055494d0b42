//! Checking one segment file when a log opens: walking its batches (each
//! checked whole where it may be torn), trusting sealed indexes only when
//! they name the batches at their positions, and, where the valid data
//! stops, telling zeros (the unused end of the file) from an invalid region
//! and finding any valid batch after it. Reads nothing into memory beyond a
//! window and one batch; changes nothing. `recovery` judges the results.

use std::path::Path;

use carteiro::record::{
    BATCH_HEADER_BYTES, BatchHeader, MAGIC_AT, MAGIC_V2, PARTITION_LEADER_EPOCH_AT, RecordBatch,
};

use crate::config::LogConfig;
use crate::cursor::{CURSOR_WINDOW_BYTES, RegionCursor};
use crate::error::OpenError;
use crate::index::{Index, OffsetEntry, OffsetKind, TimeEntry, TimeKind};
use crate::medium::Medium;
use crate::recovery::io_err;
use crate::region::Region;
use crate::segment::{
    IndexCadence, LEADER_EPOCH, LOG_HEADER_BYTES, Segment, decode_log_header, segment_file,
};

/// Index entries computed from a scan of the log.
pub(crate) type Rebuilt = (Vec<OffsetEntry>, Vec<TimeEntry>, IndexCadence);

/// Why the scan of a segment stopped before the end of its file.
#[derive(Debug)]
pub(crate) enum Stop {
    /// It read to the end of the file.
    End,
    /// Only zero bytes follow: the unused end of the file's reserved blocks.
    Zeros,
    /// An invalid batch (or header) at the stop position.
    Invalid {
        reason: String,
        /// A valid batch found after it: `(position, base offset, the end of
        /// the run of batches it starts)`.
        valid_after: Option<(usize, u64, u64)>,
    },
}

/// A segment's state once its bytes are checked.
pub(crate) struct Checked {
    pub(crate) base_offset: u64,
    pub(crate) created_ms: i64,
    /// Where valid data ends (the stop position).
    pub(crate) valid_len: usize,
    pub(crate) file_len: usize,
    pub(crate) next_offset: u64,
    pub(crate) stop: Stop,
    /// Index entries, if they had to be (or could be) computed from a scan.
    pub(crate) rebuilt: Option<Rebuilt>,
    /// Sealed indexes that passed their checks.
    pub(crate) sealed: Option<(Index<OffsetKind>, Index<TimeKind>)>,
    pub(crate) scanned_bytes: u64,
}

impl Checked {
    pub(crate) fn holds_batches(&self) -> bool {
        self.next_offset > self.base_offset || matches!(self.stop, Stop::Invalid { .. })
    }
}

/// How far to trust a segment without checking every batch.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    /// Synced and sealed: check the indexes and the tail only.
    Sealed,
    /// Possibly torn: check every batch.
    Scan,
}

/// Why the batch at `position` cannot be the next one, if it cannot;
/// with `verify`, its CRC and fields are checked too.
fn batch_problem(
    cursor: &mut RegionCursor<'_>,
    position: usize,
    next: u64,
    verify: bool,
) -> Result<BatchHeader, String> {
    let header = cursor.header(position)?;
    if header.base_offset != next as i64 {
        return Err(format!(
            "batch base offset {} does not follow offset {next}",
            header.base_offset
        ));
    }
    if !verify {
        return Ok(header);
    }
    let bytes = cursor
        .bytes(position, header.total_bytes())
        .map_err(|e| e.to_string())?;
    RecordBatch::parse(bytes).map_err(|e| e.to_string())?;
    if header.partition_leader_epoch != LEADER_EPOCH {
        return Err(format!(
            "partition leader epoch {} is not {LEADER_EPOCH}",
            header.partition_leader_epoch
        ));
    }
    if header.record_count < 1 || header.last_offset_delta != header.record_count - 1 {
        return Err(format!(
            "last_offset_delta {} does not match record_count {}",
            header.last_offset_delta, header.record_count
        ));
    }
    Ok(header)
}

/// Where a scan ended: the valid length, the next offset, and why it stopped.
struct ScanEnd {
    valid_len: usize,
    next_offset: u64,
    stop: Stop,
}

/// Walks batches from `position` to the end, each following `next`; with
/// `verify`, checks each one whole. Feeds `rebuilt` the index entries.
fn scan(
    cursor: &mut RegionCursor<'_>,
    region: &Region,
    base_offset: u64,
    mut position: usize,
    mut next: u64,
    verify: bool,
    mut rebuilt: Option<&mut Rebuilt>,
) -> ScanEnd {
    let end = cursor.end();
    while position < end {
        match batch_problem(cursor, position, next, verify) {
            Ok(header) => {
                if let Some((offsets, times, cadence)) = rebuilt.as_deref_mut() {
                    let (offset_entry, time_entry) =
                        cadence.observe(base_offset, position, &header);
                    offsets.extend(offset_entry);
                    times.extend(time_entry);
                }
                position += header.total_bytes();
                next = header.next_offset() as u64;
            }
            Err(reason) => {
                return ScanEnd {
                    valid_len: position,
                    next_offset: next,
                    stop: stop_at(cursor, region, position, next, reason),
                };
            }
        }
    }
    ScanEnd {
        valid_len: position,
        next_offset: next,
        stop: Stop::End,
    }
}

/// What an invalid batch at `position` means: zeros to the end (the unused
/// end of the file), or an invalid region, with any valid batch after it.
fn stop_at(
    cursor: &mut RegionCursor<'_>,
    region: &Region,
    position: usize,
    next: u64,
    reason: String,
) -> Stop {
    match cursor.zeros_from(position) {
        Ok(true) => Stop::Zeros,
        Ok(false) => Stop::Invalid {
            reason,
            valid_after: find_valid_batch(region, cursor.end(), position + 1, next)
                .map(|(at, base, _)| (at, base, run_end(cursor, at, base))),
        },
        Err(e) => Stop::Invalid {
            reason: format!("{reason}; reading on failed: {e}"),
            valid_after: None,
        },
    }
}

/// The offset after the run of batches that starts with the valid batch at
/// `position` (base offset `base`) and follows on from it: how far the data
/// a cut before it would give up reaches.
fn run_end(cursor: &mut RegionCursor<'_>, position: usize, base: u64) -> u64 {
    let (mut at, mut next) = (position, base);
    while at < cursor.end() {
        match batch_problem(cursor, at, next, false) {
            Ok(header) => {
                at += header.total_bytes();
                next = header.next_offset() as u64;
            }
            Err(_) => break,
        }
    }
    next
}

/// The first valid batch at or after byte `from` (before `end`) whose base
/// offset is at least `min_offset`: `(position, base offset, next offset)`.
/// Candidates are found by the two bytes every stored batch has at fixed
/// places (magic 2, leader epoch 0); each is then checked whole.
pub(crate) fn find_valid_batch(
    region: &Region,
    end: usize,
    from: usize,
    min_offset: u64,
) -> Option<(usize, u64, u64)> {
    let mut chunk = Vec::new();
    let mut start = from;
    while start + BATCH_HEADER_BYTES <= end {
        // Each chunk overlaps the next by a header, so no candidate is missed.
        let len = (CURSOR_WINDOW_BYTES + BATCH_HEADER_BYTES).min(end - start);
        chunk.resize(len, 0);
        region.read_into(start, &mut chunk).ok()?;
        let last_candidate = len - BATCH_HEADER_BYTES;
        for i in 0..=last_candidate {
            if chunk[i + MAGIC_AT] != MAGIC_V2 as u8
                || chunk[i + PARTITION_LEADER_EPOCH_AT..i + MAGIC_AT] != LEADER_EPOCH.to_be_bytes()
            {
                continue;
            }
            let Ok(header) = BatchHeader::parse(&chunk[i..]) else {
                continue;
            };
            let position = start + i;
            if header.base_offset < min_offset as i64
                || header.record_count < 1
                || position + header.total_bytes() > end
            {
                continue;
            }
            let valid = if i + header.total_bytes() <= chunk.len() {
                RecordBatch::parse(&chunk[i..]).is_ok()
            } else {
                region
                    .read(position, position + header.total_bytes())
                    .is_ok_and(|b| RecordBatch::parse(&b).is_ok())
            };
            if valid {
                return Some((
                    position,
                    header.base_offset as u64,
                    header.next_offset() as u64,
                ));
            }
        }
        start += last_candidate + 1;
    }
    None
}

/// Sealed indexes of the segment at `base_offset`, if they pass their
/// checks and their first and last entries name the batches found there.
fn trusted_indexes(
    medium: &dyn Medium,
    dir: &Path,
    base_offset: u64,
    cursor: &mut RegionCursor<'_>,
) -> Option<(Index<OffsetKind>, Index<TimeKind>)> {
    let [log_path, index_path, time_path] = Segment::paths(dir, base_offset);
    let opened =
        Index::<OffsetKind>::open_sealed(medium, &index_path, base_offset).and_then(|offsets| {
            let times = Index::<TimeKind>::open_sealed(medium, &time_path, base_offset)?;
            Ok((offsets, times))
        });
    let (offsets, times) = match opened {
        Ok(indexes) => indexes,
        Err(reason) => {
            tracing::warn!(segment = %log_path.display(), %reason, "rebuilding index");
            return None;
        }
    };
    for entry in [offsets.entry(0), offsets.last()].into_iter().flatten() {
        let expected = base_offset + u64::from(entry.relative_offset);
        let position = entry.position as usize;
        let names_its_batch = position >= LOG_HEADER_BYTES
            && cursor
                .header(position)
                .is_ok_and(|h| h.base_offset == expected as i64);
        if !names_its_batch {
            tracing::warn!(
                segment = %log_path.display(), offset = expected, position,
                "rebuilding index whose entry does not name the batch at its position"
            );
            return None;
        }
    }
    Some((offsets, times))
}

pub(crate) fn check_segment(
    medium: &dyn Medium,
    dir: &Path,
    config: &LogConfig,
    base_offset: u64,
    trust: Trust,
) -> Result<Checked, OpenError> {
    let log_path = segment_file(dir, base_offset);
    let (region, _) = medium
        .open_region(&log_path, None)
        .map_err(io_err("opening", &log_path))?;
    let region = region.0;
    let file_len = region.published();
    let mut cursor = RegionCursor::new(&region, file_len);
    let mut checked = Checked {
        base_offset,
        created_ms: 0,
        valid_len: 0,
        file_len,
        next_offset: base_offset,
        stop: Stop::End,
        rebuilt: None,
        sealed: None,
        scanned_bytes: 0,
    };
    let header = cursor
        .bytes_up_to(0, LOG_HEADER_BYTES)
        .map_err(io_err("reading", &log_path))?;
    match decode_log_header(header, base_offset) {
        Ok(created) => checked.created_ms = created,
        Err(reason) => {
            // Even zeros here are a problem: the segment has no header to
            // append after (a crash before its creation was synced).
            checked.stop = match stop_at(&mut cursor, &region, 0, base_offset, reason) {
                Stop::Zeros | Stop::End => Stop::Invalid {
                    reason: "the segment header was never written (zeros)".into(),
                    valid_after: None,
                },
                invalid => invalid,
            };
            return Ok(checked);
        }
    }
    let sealed = match trust {
        Trust::Sealed => trusted_indexes(medium, dir, base_offset, &mut cursor),
        Trust::Scan => None,
    };
    let end = match sealed {
        Some((offsets, times)) => {
            // Trust the sealed index; walk the headers after its last entry to find the end.
            let (position, next) = match offsets.last() {
                Some(entry) => (
                    entry.position as usize,
                    base_offset + u64::from(entry.relative_offset),
                ),
                None => (LOG_HEADER_BYTES, base_offset),
            };
            checked.sealed = Some((offsets, times));
            scan(
                &mut cursor,
                &region,
                base_offset,
                position,
                next,
                false,
                None,
            )
        }
        None => {
            let mut state = (
                Vec::new(),
                Vec::new(),
                IndexCadence::new(config.index_interval_bytes),
            );
            let verify = trust == Trust::Scan;
            let end = scan(
                &mut cursor,
                &region,
                base_offset,
                LOG_HEADER_BYTES,
                base_offset,
                verify,
                Some(&mut state),
            );
            if verify {
                checked.scanned_bytes = end.valid_len as u64;
            }
            checked.rebuilt = Some(state);
            end
        }
    };
    checked.valid_len = end.valid_len;
    checked.next_offset = end.next_offset;
    checked.stop = end.stop;
    Ok(checked)
}
