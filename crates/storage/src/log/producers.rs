//! A log's idempotent producers: their state rebuilt at open (the newest
//! valid snapshot at or below the log's end, then the batches after it),
//! snapshots written at roll and close (and at open after a scan), and
//! idle producers expired. The checks themselves are in
//! [`crate::producers`]; the append path calls them under the writer lock.
//!
//! A snapshot is written only at an offset below which everything is
//! synced (a roll's new base, a close, the end at open), so a snapshot
//! never describes batches a crash can take back. One past the recovered
//! end (a cut made by repair) or damaged is removed, never trusted, and the
//! state is rebuilt by scanning from an older one or from the log's start.

use std::path::Path;
use std::sync::Arc;

use carteiro::record::BatchHeader;

use super::{Log, lock};
use crate::cursor::RegionCursor;
use crate::error::{OpenError, ReadError};
use crate::medium::Medium;
use crate::producers::snapshot::{self, SNAPSHOT_SUFFIX, SNAPSHOTS_KEPT};
use crate::producers::{PRODUCERS_PER_PARTITION_MAX, ProducerBatch, ProducerStates};
use crate::recovery::io_err;
use crate::segment::{LOG_HEADER_BYTES, Segment, file_name, parse_file_name};

/// The producers of a log being opened.
pub(super) struct Loaded {
    pub states: ProducerStates,
    /// Offsets of the snapshot files left on disk, ascending.
    pub snapshots: Vec<u64>,
    /// The offset of the snapshot the state started from, if one.
    pub snapshot: Option<u64>,
    /// Batches with a producer id found by the scan after it.
    pub scanned_batches: u64,
}

/// The snapshot files in `dir`, by offset.
fn list_snapshots(medium: &dyn Medium, dir: &Path) -> Result<Vec<u64>, OpenError> {
    let names = medium.list_dir(dir).map_err(io_err("listing", dir))?;
    let mut offsets: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_file_name(n, SNAPSHOT_SUFFIX))
        .collect();
    offsets.sort_unstable();
    Ok(offsets)
}

/// Rebuilds the producer state of the log whose `segments` end at `end`.
pub(super) fn load(
    medium: &dyn Medium,
    dir: &Path,
    segments: &[Arc<Segment>],
    end: u64,
    now_ms: i64,
    expiration_ms: u64,
    repair: bool,
) -> Result<Loaded, OpenError> {
    let mut snapshots = list_snapshots(medium, dir)?;
    let mut removed = false;
    let mut states = ProducerStates::new(PRODUCERS_PER_PARTITION_MAX, expiration_ms);
    let mut used = None;
    while let Some(&offset) = snapshots.last() {
        let path = dir.join(file_name(offset, SNAPSHOT_SUFFIX));
        let problem = if offset > end {
            format!("it is past the log's end at offset {end} (the log was cut)")
        } else {
            match medium.read_file(&path).map_err(io_err("reading", &path))? {
                None => "it vanished".to_string(),
                Some(bytes) => match snapshot::decode(&bytes, offset) {
                    Ok(found) => {
                        for (id, entry) in found.producers {
                            states.insert(id, entry);
                        }
                        used = Some(offset);
                        break;
                    }
                    Err(reason) => format!("it is damaged: {reason}"),
                },
            }
        };
        tracing::warn!(file = %path.display(), %problem, "ignoring and removing a producer snapshot; the producers' state is rebuilt from the log");
        medium
            .remove_file(&path)
            .map_err(io_err("removing", &path))?;
        snapshots.pop();
        removed = true;
    }
    if removed {
        // A snapshot past the end must not come back once the log grows
        // past it again with other batches.
        medium.sync_dir(dir).map_err(io_err("syncing", dir))?;
    }
    let start = segments.first().map_or(end, |s| s.base_offset);
    let from = used.map_or(start, |offset| offset.max(start));
    let mut scanned_batches = 0;
    scan_headers(segments, from, repair, |header| {
        let Some(batch) = ProducerBatch::of(header) else {
            return;
        };
        scanned_batches += 1;
        let base = header.base_offset as u64;
        let last = header.last_offset() as u64;
        // The append time is not in the batch: its largest timestamp stands
        // for it; for expiry the producer counts as active now.
        states.record(
            &batch,
            batch.placed(base, last, header.max_timestamp),
            now_ms,
        );
        // A partition that expired producers while it ran may hold more
        // than the limit's worth in its log: keep the newest.
        if states.len() >= 2 * PRODUCERS_PER_PARTITION_MAX {
            states.keep_newest(PRODUCERS_PER_PARTITION_MAX);
        }
    })?;
    let expired = states.remove_expired(now_ms);
    let dropped = states.keep_newest(PRODUCERS_PER_PARTITION_MAX);
    if used.is_some() || scanned_batches > 0 {
        tracing::debug!(
            dir = %dir.display(), snapshot = ?used, scanned_from = from, scanned_batches,
            producers = states.len(), expired, dropped, "producer state loaded"
        );
    }
    Ok(Loaded {
        states,
        snapshots,
        snapshot: used,
        scanned_batches,
    })
}

/// A batch that could not be read while rebuilding the producers' state.
fn corrupt(segment: &Segment, e: ReadError) -> OpenError {
    let (file, position, reason) = match e {
        ReadError::Corrupt {
            file,
            position,
            reason,
            ..
        } => (file, position, reason),
        other => (segment.log_path.clone(), 0, other.to_string()),
    };
    OpenError::CorruptDurableData {
        file,
        position,
        reason: format!(
            "{reason} (reading batch headers to rebuild the idempotent producers' state)"
        ),
    }
}

/// Calls `f` with the header of every batch at or after offset `from`, in
/// order. Recovery has just checked these bytes (or trusted them, sealed):
/// a header that does not parse refuses to open, naming file and byte;
/// with `repair`, the rest of its segment is skipped (logged at error
/// level: the producers' state misses those batches).
fn scan_headers(
    segments: &[Arc<Segment>],
    from: u64,
    repair: bool,
    mut f: impl FnMut(&BatchHeader),
) -> Result<(), OpenError> {
    for segment in segments {
        if segment.next_offset() <= from {
            continue;
        }
        match scan_segment(segment, from, &mut f) {
            Ok(()) => {}
            Err(e) if repair => {
                tracing::error!(
                    segment = %segment.log_path.display(), error = %e,
                    "repair: skipping the rest of a damaged segment while rebuilding the idempotent producers' state"
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn scan_segment(
    segment: &Segment,
    from: u64,
    f: &mut impl FnMut(&BatchHeader),
) -> Result<(), OpenError> {
    let end = segment.log.published();
    let mut position = if from > segment.base_offset {
        match segment
            .position_of(from, end)
            .map_err(|e| corrupt(segment, e))?
        {
            Some((position, _)) => position,
            None => return Ok(()),
        }
    } else {
        LOG_HEADER_BYTES
    };
    let mut cursor = RegionCursor::new(&segment.log, end);
    while position < end {
        let header = cursor.header(position).map_err(|reason| {
            corrupt(
                segment,
                ReadError::Corrupt {
                    file: segment.log_path.clone(),
                    position: position as u64,
                    offset: from,
                    reason,
                },
            )
        })?;
        if header.base_offset as u64 >= from {
            f(&header);
        }
        position += header.total_bytes();
    }
    Ok(())
}

impl Log {
    /// Forgets the producers that have not appended for
    /// `producer_id_expiration_ms` ([`LogOptions`](super::LogOptions));
    /// returns how many. The store's maintenance calls it with each
    /// retention pass; a new producer at the limit calls it too.
    pub fn remove_expired_producers(&self) -> usize {
        let removed = lock(&self.producers).remove_expired(self.clock.now_ms());
        if removed > 0 {
            tracing::debug!(dir = %self.dir.display(), removed, "expired idle producers");
        }
        removed
    }

    /// How many idempotent producers this partition holds state for.
    pub fn producer_count(&self) -> usize {
        lock(&self.producers).len()
    }

    /// The largest producer id this partition holds state for.
    pub(crate) fn max_producer_id(&self) -> Option<i64> {
        lock(&self.producers).max_producer_id()
    }

    /// Writes the producer snapshot at `offset`, below which everything is
    /// synced and appended (the caller holds the writer lock, or is opening
    /// the log), and removes snapshots past the newest [`SNAPSHOTS_KEPT`].
    /// Best-effort: a failure (a full disk) is logged, and the next open
    /// scans from an older snapshot.
    pub(super) fn write_producer_snapshot(&self, offset: u64) {
        debug_assert!(
            offset <= self.durable_offset(),
            "snapshot past the synced end"
        );
        let mut snapshots = lock(&self.snapshots);
        if snapshots.last() == Some(&offset) {
            return;
        }
        let bytes = snapshot::encode(offset, &lock(&self.producers));
        let path = self.dir.join(file_name(offset, SNAPSHOT_SUFFIX));
        if let Err(e) = self.medium.write_file_atomic(&path, &bytes) {
            tracing::warn!(file = %path.display(), error = %e, "could not write the producer snapshot");
            return;
        }
        snapshots.retain(|&o| o < offset);
        snapshots.push(offset);
        while snapshots.len() > SNAPSHOTS_KEPT {
            let old = snapshots.remove(0);
            let path = self.dir.join(file_name(old, SNAPSHOT_SUFFIX));
            // Not synced: an older snapshot that comes back is still true.
            if let Err(e) = self.medium.remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "could not remove an old producer snapshot");
            }
        }
    }
}
