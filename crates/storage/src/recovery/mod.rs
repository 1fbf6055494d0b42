//! Opening a partition directory: find the segments, trust what was synced
//! and sealed, check what might be torn, tell a torn tail from damage, cut
//! only a torn tail, rebuild indexes, and refuse to touch damaged or
//! missing data unless the operator asked for repair.
//!
//! A torn tail is what a crash leaves: an invalid region at the very end of
//! what was written, with no valid batch anywhere after it, above the
//! recovery point. Everything else is damage: a bad batch with a valid
//! batch after it, a bad batch below the recovery point, a gap between
//! segments, a segment file missing where its indexes or the checkpoint say
//! one was, or a log that ends before its recovery point. Damage refuses to
//! open, naming the file, the byte and what was expected; repair cuts the
//! log at the first damage and reports the offsets it gave up.
//!
//! Segments before the one holding the recovery point were synced and
//! sealed when they rolled, so only their indexes and tails are checked.
//! From that segment on, after an unclean shutdown, every batch is checked.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::active::ActiveSegment;
use crate::checkpoint::{self, Checkpoint, CheckpointKind};
use crate::config::LogConfig;
use crate::cursor::{CURSOR_WINDOW_BYTES, RegionCursor};
use crate::error::OpenError;
use crate::medium::Medium;
use crate::segment::segment_file;
use crate::segment::{
    INDEX_SUFFIX, LOG_HEADER_BYTES, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX, file_name,
    parse_file_name,
};
use crate::segment_check::{Checked, Stop, Trust, check_segment};

mod assemble;

use assemble::finish;

/// What recovery found and did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The log had been closed cleanly.
    pub clean_shutdown: bool,
    /// Offsets below this were synced before the last shutdown.
    pub recovery_point: u64,
    /// Bytes of data (not reserved zeros) cut from a torn tail or, with
    /// repair, from damage.
    pub truncated_bytes: u64,
    /// The offset the log was cut back to, if it was cut.
    pub truncated_at_offset: Option<u64>,
    /// Segment files removed because they followed a cut.
    pub removed_segments: Vec<u64>,
    /// Segments whose indexes were rebuilt from the log.
    pub rebuilt_indexes: Vec<u64>,
    /// True if repair cut or gave up data that had been acknowledged as durable.
    pub repaired_durable_data: bool,
    /// With repair: the offsets given up, from the first damaged one to the
    /// last one known to have existed.
    pub lost_offsets: Option<Range<u64>>,
    /// Bytes of segment files read batch by batch (what recovery time
    /// depends on).
    pub scanned_bytes: u64,
    /// The offset of the producer snapshot the idempotent producers' state
    /// was loaded from, if a valid one was found at or below the log's end.
    pub producer_snapshot: Option<u64>,
    /// Batches with a producer id read from the log after that snapshot
    /// (or from the log's start without one) to rebuild the state.
    pub producer_batches_scanned: u64,
}

/// A loaded log, ready to serve.
pub(crate) struct Loaded {
    pub segments: Vec<Arc<Segment>>,
    pub active: ActiveSegment,
    pub end_offset: u64,
    pub report: RecoveryReport,
}

/// Maps an I/O error of `op` on `path` to an open error.
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> OpenError + 'a {
    move |source| OpenError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The first thing wrong with a log, and where a cut would go.
struct Problem {
    /// The segment the cut would keep as the last (its index in the list),
    /// or `None` to keep none.
    segment: Option<usize>,
    /// Byte position of the cut in that segment.
    position: usize,
    /// The file to name.
    file: PathBuf,
    /// The first offset a cut here gives up.
    offset: u64,
    reason: String,
    /// A torn tail: nothing valid after it. Anything else is damage.
    torn: bool,
}

/// The segments of a partition directory.
struct Listing {
    bases: Vec<u64>,
    /// Bases of index files whose segment file is missing, above the first
    /// segment (below it they are leftovers of retention, and removed).
    missing: Vec<u64>,
}

/// Reads the recovery checkpoint or the clean-shutdown marker.
fn read_checkpoint(
    medium: &dyn Medium,
    dir: &Path,
    kind: CheckpointKind,
) -> Result<Option<Result<Checkpoint, String>>, OpenError> {
    let path = dir.join(kind.file_name());
    let bytes = medium.read_file(&path).map_err(io_err("reading", &path))?;
    Ok(bytes.map(|b| checkpoint::decode(kind, &b)))
}

/// The segment base offsets in `dir`, after removing leftovers of
/// interrupted writes (temporary files) and of retention (indexes of
/// deleted segments, which sort before the first segment).
fn list_segments(medium: &dyn Medium, dir: &Path) -> Result<Listing, OpenError> {
    let names = medium.list_dir(dir).map_err(io_err("listing", dir))?;
    let mut bases: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_file_name(n, LOG_SUFFIX))
        .collect();
    bases.sort_unstable();
    let mut missing = Vec::new();
    for name in &names {
        let orphan = [INDEX_SUFFIX, TIME_INDEX_SUFFIX].iter().find_map(|suffix| {
            parse_file_name(name, suffix).filter(|b| bases.binary_search(b).is_err())
        });
        let leftover = match orphan {
            Some(base) if bases.first().is_some_and(|&first| base < first) => true,
            Some(base) => {
                missing.push(base);
                false
            }
            None => name.ends_with(".tmp"),
        };
        if leftover {
            let path = dir.join(name);
            tracing::info!(file = %path.display(), "removing leftover file");
            medium
                .remove_file(&path)
                .map_err(io_err("removing", &path))?;
        }
    }
    missing.sort_unstable();
    missing.dedup();
    Ok(Listing { bases, missing })
}

/// Opens the log in `dir`: the whole recovery procedure.
pub(crate) fn load(
    medium: &dyn Medium,
    dir: &Path,
    config: &LogConfig,
    now_ms: i64,
    repair: bool,
) -> Result<Loaded, OpenError> {
    medium
        .create_dir_all(dir)
        .map_err(io_err("creating", dir))?;
    let listing = list_segments(medium, dir)?;
    let marker = match read_checkpoint(medium, dir, CheckpointKind::CleanShutdown)? {
        Some(Ok(marker)) => Some(marker),
        Some(Err(reason)) => {
            tracing::warn!(dir = %dir.display(), %reason, "ignoring damaged clean-shutdown marker");
            None
        }
        None => None,
    };
    let point = match read_checkpoint(medium, dir, CheckpointKind::RecoveryPoint)? {
        None => Checkpoint::default(),
        Some(Ok(point)) => point,
        Some(Err(reason)) if repair => {
            tracing::error!(dir = %dir.display(), %reason, "repair: ignoring damaged recovery checkpoint");
            Checkpoint::default()
        }
        Some(Err(reason)) => {
            return Err(OpenError::CorruptDurableData {
                file: dir.join(CheckpointKind::RecoveryPoint.file_name()),
                position: 0,
                reason,
            });
        }
    };
    if let Some(marker) = marker {
        // A clean close sealed every segment: nothing needs a scan, unless
        // the log disagrees with the marker.
        let inspection = inspect(medium, dir, config, &listing, point, true)?;
        let end = inspection.end_offset(point);
        let newest = listing.bases.last().copied();
        match &inspection.problem {
            None if end == marker.offset
                && marker.newest_segment.is_none_or(|b| Some(b) == newest) =>
            {
                return finish(medium, dir, config, inspection, point, true, now_ms);
            }
            None => tracing::warn!(
                dir = %dir.display(), marker = marker.offset, found = end,
                "clean-shutdown marker disagrees with the log; recovering as after a crash"
            ),
            Some(problem) => tracing::warn!(
                dir = %dir.display(), reason = %problem.reason,
                "clean open found a problem; recovering as after a crash"
            ),
        }
    }
    let inspection = inspect(medium, dir, config, &listing, point, false)?;
    let inspection = resolve(medium, dir, &listing, inspection, point, repair)?;
    finish(medium, dir, config, inspection, point, false, now_ms)
}

/// Every segment checked, and the first problem found; nothing changed yet.
struct Inspection {
    segments: Vec<Checked>,
    problem: Option<Problem>,
    report: RecoveryReport,
}

impl Inspection {
    fn end_offset(&self, point: Checkpoint) -> u64 {
        self.segments.last().map_or(point.offset, |s| s.next_offset)
    }

    /// The highest offset known to have existed: the end of any segment, any
    /// valid batch found after damage, the recovery point.
    fn known_end(&self, point: Checkpoint) -> u64 {
        let mut end = point.offset.max(point.newest_segment.unwrap_or(0));
        for s in &self.segments {
            end = end.max(s.next_offset);
            if let Stop::Invalid {
                valid_after: Some((_, _, next)),
                ..
            } = s.stop
            {
                end = end.max(next);
            }
        }
        end
    }
}

fn inspect(
    medium: &dyn Medium,
    dir: &Path,
    config: &LogConfig,
    listing: &Listing,
    point: Checkpoint,
    clean: bool,
) -> Result<Inspection, OpenError> {
    let report = RecoveryReport {
        clean_shutdown: clean,
        recovery_point: point.offset,
        ..RecoveryReport::default()
    };
    let bases = &listing.bases;
    // From the segment holding the recovery point on, batches may be torn.
    let first_scanned = if clean {
        bases.len()
    } else {
        bases.iter().rposition(|&b| b <= point.offset).unwrap_or(0)
    };
    let mut segments: Vec<Checked> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let trust = if i < first_scanned {
            Trust::Sealed
        } else {
            Trust::Scan
        };
        segments.push(check_segment(medium, dir, config, base, trust)?);
    }
    let mut inspection = Inspection {
        segments,
        problem: None,
        report,
    };
    inspection.problem = first_problem(dir, listing, &inspection, point);
    Ok(inspection)
}

fn first_problem(
    dir: &Path,
    listing: &Listing,
    inspection: &Inspection,
    point: Checkpoint,
) -> Option<Problem> {
    let segments = &inspection.segments;
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            let before = &segments[i - 1];
            if s.base_offset != before.next_offset {
                return Some(Problem {
                    segment: Some(i - 1),
                    position: before.valid_len,
                    file: segment_file(dir, s.base_offset),
                    offset: before.next_offset,
                    reason: format!(
                        "segment starts at offset {}, but the segment before it ends at offset {}: \
                         a segment file is missing or damaged",
                        s.base_offset, before.next_offset
                    ),
                    torn: false,
                });
            }
        }
        let Stop::Invalid {
            reason,
            valid_after,
        } = &s.stop
        else {
            continue;
        };
        let later_data = segments[i + 1..].iter().any(Checked::holds_batches);
        let after = match valid_after {
            Some((position, base, _)) => {
                format!("; a valid batch follows at byte {position} (offset {base})")
            }
            None if later_data => "; later segments hold batches".to_string(),
            None => String::new(),
        };
        let header_lost = s.valid_len < LOG_HEADER_BYTES;
        return Some(Problem {
            segment: if header_lost {
                i.checked_sub(1)
            } else {
                Some(i)
            },
            position: if header_lost {
                i.checked_sub(1).map_or(0, |p| segments[p].valid_len)
            } else {
                s.valid_len
            },
            file: segment_file(dir, s.base_offset),
            offset: s.next_offset,
            reason: format!(
                "expected a valid batch at offset {} (byte {}): {reason}{after}",
                s.next_offset, s.valid_len
            ),
            torn: valid_after.is_none() && !later_data,
        });
    }
    let end = inspection.end_offset(point);
    let last = segments.last();
    let cut = |reason: String, file: PathBuf| Problem {
        segment: segments.len().checked_sub(1),
        position: last.map_or(0, |s| s.valid_len),
        file,
        offset: end,
        reason,
        torn: false,
    };
    let newest_file = last.map_or_else(|| dir.to_path_buf(), |s| segment_file(dir, s.base_offset));
    if let Some(newest) = point.newest_segment
        && last.is_none_or(|s| s.base_offset < newest)
    {
        return Some(cut(
            format!(
                "the recovery checkpoint says the newest segment starts at offset {newest}, \
                 but {} is missing",
                file_name(newest, LOG_SUFFIX)
            ),
            newest_file,
        ));
    }
    if let Some(&base) = listing.missing.first() {
        return Some(cut(
            format!(
                "{} is missing, but its index files are there",
                file_name(base, LOG_SUFFIX)
            ),
            segment_file(dir, base),
        ));
    }
    if end < point.offset {
        return Some(cut(
            format!(
                "the log ends at offset {end}, but the recovery checkpoint says offsets below {} \
                 were synced",
                point.offset
            ),
            newest_file,
        ));
    }
    None
}

/// Cuts a torn tail, or with repair any damage; refuses damage otherwise.
fn resolve(
    medium: &dyn Medium,
    dir: &Path,
    listing: &Listing,
    mut inspection: Inspection,
    point: Checkpoint,
    repair: bool,
) -> Result<Inspection, OpenError> {
    let Some(problem) = inspection.problem.take() else {
        return Ok(inspection);
    };
    let durable = !problem.torn || problem.offset < point.offset;
    let known_end = inspection.known_end(point);
    if durable && !repair {
        return Err(OpenError::CorruptDurableData {
            file: problem.file,
            position: problem.position as u64,
            reason: format!(
                "{}; offsets below {} had been synced, and repair would give up offsets {}..{}",
                problem.reason, point.offset, problem.offset, known_end
            ),
        });
    }
    let report = &mut inspection.report;
    if durable {
        report.repaired_durable_data = true;
        report.lost_offsets = Some(problem.offset..known_end.max(problem.offset));
        tracing::error!(
            file = %problem.file.display(), position = problem.position, reason = %problem.reason,
            lost_from = problem.offset, lost_to = known_end,
            "repair: giving up damaged or missing data that had been acknowledged as durable"
        );
    }
    report.truncated_at_offset = Some(problem.offset);
    let keep = problem.segment.map_or(0, |i| i + 1);
    for removed in inspection.segments.drain(keep..) {
        report.removed_segments.push(removed.base_offset);
        let path = segment_file(dir, removed.base_offset);
        report.truncated_bytes += data_bytes_after(medium, &path, 0)?;
        for path in Segment::paths_for_removal(dir, removed.base_offset) {
            medium
                .remove_file(&path)
                .map_err(io_err("removing", &path))?;
        }
    }
    for &base in &listing.missing {
        for path in Segment::paths_for_removal(dir, base) {
            medium
                .remove_file(&path)
                .map_err(io_err("removing", &path))?;
        }
    }
    if let Some(last) = inspection.segments.last() {
        // Every problem sits at the valid end of the segment kept last, so
        // its index entries (all before that end) stay as they are.
        debug_assert_eq!(last.valid_len, problem.position, "a cut at the valid end");
        let path = segment_file(dir, last.base_offset);
        report.truncated_bytes += data_bytes_after(medium, &path, last.valid_len)?;
    }
    medium.sync_dir(dir).map_err(io_err("syncing", dir))?;
    if report.truncated_bytes > 0 || !report.removed_segments.is_empty() {
        tracing::warn!(
            file = %problem.file.display(), position = problem.position, reason = %problem.reason,
            cut_bytes = report.truncated_bytes, from_offset = problem.offset,
            removed_segments = ?report.removed_segments,
            "cut the log's {}", if durable { "damaged data (repair)" } else { "torn tail" }
        );
    }
    Ok(inspection)
}

/// Bytes of data (up to the last non-zero byte) in the file after `position`.
fn data_bytes_after(medium: &dyn Medium, path: &Path, position: usize) -> Result<u64, OpenError> {
    let (region, _) = medium
        .open_region(path, None)
        .map_err(io_err("opening", path))?;
    let region = region.0;
    let mut cursor = RegionCursor::new(&region, region.published());
    let (mut at, mut last_nonzero) = (position, position);
    while at < cursor.end() {
        let chunk = cursor
            .bytes_up_to(at, CURSOR_WINDOW_BYTES)
            .map_err(io_err("reading", path))?;
        if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
            last_nonzero = at + i + 1;
        }
        at += chunk.len();
    }
    Ok((last_nonzero - position) as u64)
}
