//! Opening a partition directory: find the segments, trust what was synced
//! and sealed, validate what might be torn, cut a torn tail, rebuild
//! indexes, and refuse to touch damaged data that had been acknowledged as
//! durable unless the operator asked for repair.
//!
//! Segments before the one holding the recovery checkpoint were synced and
//! sealed when they rolled, so only their indexes and tails are checked.
//! From that segment on, after an unclean shutdown, every batch is checked:
//! length, CRC-32C, and a base offset that follows the previous batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};

use carteiro::record::{BatchHeader, RecordBatch};

use crate::active::{ActiveSegment, Resume};
use crate::checkpoint::{self, CheckpointKind};
use crate::config::LogConfig;
use crate::error::OpenError;
use crate::index::{Index, OffsetEntry, OffsetKind, TimeEntry, TimeKind};
use crate::medium::Medium;
use crate::segment::{
    INDEX_SUFFIX, IndexCadence, LEADER_EPOCH, LOG_HEADER_BYTES, LOG_SUFFIX, Segment,
    TIME_INDEX_SUFFIX, decode_log_header, parse_file_name,
};

/// What recovery found and did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The log had been closed cleanly.
    pub clean_shutdown: bool,
    /// Offsets below this were synced before the last shutdown.
    pub recovery_point: u64,
    /// Bytes of data (not preallocated zeros) cut from a torn or corrupt tail.
    pub truncated_bytes: u64,
    /// The offset the log was cut back to, if it was cut.
    pub truncated_at_offset: Option<u64>,
    /// Segment files removed because they followed a cut.
    pub removed_segments: Vec<u64>,
    /// Segments whose indexes were rebuilt from the log.
    pub rebuilt_indexes: Vec<u64>,
    /// True if repair cut data that had been acknowledged as durable.
    pub repaired_durable_data: bool,
}

/// A loaded log, ready to serve.
pub(crate) struct Loaded {
    pub segments: Vec<Arc<Segment>>,
    pub active: ActiveSegment,
    pub end_offset: u64,
    pub report: RecoveryReport,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> OpenError + 'a {
    move |source| OpenError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A segment's state once its bytes are checked.
struct Checked {
    base_offset: u64,
    created_ms: i64,
    valid_len: usize,
    next_offset: u64,
    /// Index entries, if they had to be (or could be) computed from a scan.
    rebuilt: Option<(Vec<OffsetEntry>, Vec<TimeEntry>, IndexCadence)>,
    /// Sealed indexes that passed their checks.
    sealed: Option<(Index<OffsetKind>, Index<TimeKind>)>,
}

/// Where the valid data of a segment ends, and why.
struct Damage {
    position: usize,
    reason: String,
    /// False when only zero bytes follow: the unused, preallocated end.
    data_follows: bool,
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Scans batches from `position` to `end`: with `verify`, each batch's CRC and
/// that its base offset follows `next`. Returns where valid data ends.
fn scan(
    bytes: &[u8],
    base_offset: u64,
    mut position: usize,
    mut next: u64,
    verify: bool,
    mut cadence: Option<&mut (Vec<OffsetEntry>, Vec<TimeEntry>, IndexCadence)>,
) -> (usize, u64, Option<Damage>) {
    let end = bytes.len();
    while position < end {
        let rest = &bytes[position..];
        let damage = |reason: String| Damage {
            position,
            reason,
            data_follows: !all_zero(rest),
        };
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => return (position, next, Some(damage(e.to_string()))),
        };
        if header.total_bytes() > rest.len() {
            let reason = format!(
                "batch of {} bytes runs past the end of the file",
                header.total_bytes()
            );
            return (position, next, Some(damage(reason)));
        }
        if verify {
            if let Err(e) = RecordBatch::parse(rest) {
                return (position, next, Some(damage(e.to_string())));
            }
            if header.base_offset != next as i64 {
                let reason = format!(
                    "batch base offset {} does not follow offset {}",
                    header.base_offset, next
                );
                return (position, next, Some(damage(reason)));
            }
            if header.partition_leader_epoch != LEADER_EPOCH {
                let reason = format!(
                    "partition leader epoch {} is not {LEADER_EPOCH}",
                    header.partition_leader_epoch
                );
                return (position, next, Some(damage(reason)));
            }
            if header.record_count < 1 || header.last_offset_delta != header.record_count - 1 {
                let reason = format!(
                    "last_offset_delta {} does not match record_count {}",
                    header.last_offset_delta, header.record_count
                );
                return (position, next, Some(damage(reason)));
            }
        } else if header.base_offset < next as i64 || header.base_offset < base_offset as i64 {
            let reason = format!(
                "batch base offset {} goes back before offset {}",
                header.base_offset, next
            );
            return (position, next, Some(damage(reason)));
        }
        if let Some(state) = cadence.as_deref_mut() {
            let (offset_entry, time_entry) = state.2.observe(base_offset, position, &header);
            state.0.extend(offset_entry);
            state.1.extend(time_entry);
        }
        position += header.total_bytes();
        next = header.next_offset() as u64;
    }
    (position, next, None)
}

/// How far to trust a segment without checking every batch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// Synced and sealed: check the indexes and the tail only.
    Sealed,
    /// Possibly torn: check every batch.
    Scan,
}

fn check_segment(
    medium: &dyn Medium,
    dir: &Path,
    config: &LogConfig,
    base_offset: u64,
    expected_base: Option<u64>,
    trust: Trust,
) -> Result<(Checked, Option<Damage>), OpenError> {
    let [log_path, index_path, time_path] = Segment::paths(dir, base_offset);
    let region = match medium.open_region(&log_path, None) {
        Ok((region, _)) => region.0,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Ok((
                empty_checked(base_offset),
                Some(Damage {
                    position: 0,
                    reason: e.to_string(),
                    data_follows: false,
                }),
            ));
        }
        Err(e) => return Err(io_err("opening", &log_path)(e)),
    };
    let bytes = region.read(0, region.published()).unwrap_or(&[]);
    let created_ms = match decode_log_header(bytes, base_offset) {
        Ok(created) => created,
        Err(reason) => {
            let data_follows = !all_zero(bytes);
            return Ok((
                empty_checked(base_offset),
                Some(Damage {
                    position: 0,
                    reason,
                    data_follows,
                }),
            ));
        }
    };
    if let Some(expected) = expected_base
        && expected != base_offset
    {
        let reason = format!(
            "segment starts at offset {base_offset}, but the previous segment ends at {expected}"
        );
        return Ok((
            empty_checked(base_offset),
            Some(Damage {
                position: 0,
                reason,
                data_follows: true,
            }),
        ));
    }
    let mut checked = Checked {
        base_offset,
        created_ms,
        valid_len: LOG_HEADER_BYTES,
        next_offset: base_offset,
        rebuilt: None,
        sealed: None,
    };
    let sealed = if trust == Trust::Sealed {
        match (
            Index::<OffsetKind>::open_sealed(medium, &index_path, base_offset),
            Index::<TimeKind>::open_sealed(medium, &time_path, base_offset),
        ) {
            (Ok(offsets), Ok(times)) => {
                // A sealed index must also fit the segment it describes.
                let fits = offsets.last_where(|_| true).is_none_or(|e| {
                    (e.position as usize) < bytes.len() && e.position as usize >= LOG_HEADER_BYTES
                });
                if fits {
                    Some((offsets, times))
                } else {
                    tracing::warn!(segment = %log_path.display(), "rebuilding index that points past the segment");
                    None
                }
            }
            (offsets, times) => {
                let reason = offsets.err().or(times.err()).unwrap_or_default();
                tracing::warn!(segment = %log_path.display(), %reason, "rebuilding index");
                None
            }
        }
    } else {
        None
    };
    let damage = match sealed {
        Some((offsets, times)) => {
            // Trust the sealed index; walk the headers after its last entry to find the end.
            let (position, next) = match offsets.last_where(|_| true) {
                Some(entry) => (
                    entry.position as usize,
                    base_offset + u64::from(entry.relative_offset),
                ),
                None => (LOG_HEADER_BYTES, base_offset),
            };
            let (valid_len, next_offset, damage) =
                scan(bytes, base_offset, position, next, false, None);
            checked.valid_len = valid_len;
            checked.next_offset = next_offset;
            checked.sealed = Some((offsets, times));
            damage
        }
        None => {
            let mut state = (
                Vec::new(),
                Vec::new(),
                IndexCadence::new(config.index_interval_bytes),
            );
            let verify = trust == Trust::Scan;
            let (valid_len, next_offset, damage) = scan(
                bytes,
                base_offset,
                LOG_HEADER_BYTES,
                base_offset,
                verify,
                Some(&mut state),
            );
            checked.valid_len = valid_len;
            checked.next_offset = next_offset;
            checked.rebuilt = Some(state);
            damage
        }
    };
    Ok((checked, damage))
}

fn empty_checked(base_offset: u64) -> Checked {
    Checked {
        base_offset,
        created_ms: 0,
        valid_len: 0,
        next_offset: base_offset,
        rebuilt: None,
        sealed: None,
    }
}

/// Reads the recovery checkpoint or the clean-shutdown marker.
fn read_checkpoint(
    medium: &dyn Medium,
    dir: &Path,
    kind: CheckpointKind,
) -> Result<Option<Result<u64, String>>, OpenError> {
    let path = dir.join(kind.file_name());
    let bytes = medium.read_file(&path).map_err(io_err("reading", &path))?;
    Ok(bytes.map(|b| checkpoint::decode(kind, &b)))
}

/// The segment base offsets in `dir`, after removing leftovers of
/// interrupted writes (temporary files, indexes without a segment).
fn list_segments(medium: &dyn Medium, dir: &Path) -> Result<Vec<u64>, OpenError> {
    let names = medium.list_dir(dir).map_err(io_err("listing", dir))?;
    let mut bases: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_file_name(n, LOG_SUFFIX))
        .collect();
    bases.sort_unstable();
    for name in &names {
        let orphan_index = [INDEX_SUFFIX, TIME_INDEX_SUFFIX].iter().any(|suffix| {
            parse_file_name(name, suffix).is_some_and(|b| bases.binary_search(&b).is_err())
        });
        if orphan_index || name.ends_with(".tmp") {
            let path = dir.join(name);
            tracing::info!(file = %path.display(), "removing leftover file");
            medium
                .remove_file(&path)
                .map_err(io_err("removing", &path))?;
        }
    }
    Ok(bases)
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
    let bases = list_segments(medium, dir)?;
    let marker = read_checkpoint(medium, dir, CheckpointKind::CleanShutdown)?;
    let clean_end = match marker {
        Some(Ok(end)) => Some(end),
        Some(Err(reason)) => {
            tracing::warn!(dir = %dir.display(), %reason, "ignoring damaged clean-shutdown marker");
            None
        }
        None => None,
    };
    let recovery_point = match read_checkpoint(medium, dir, CheckpointKind::RecoveryPoint)? {
        None => 0,
        Some(Ok(point)) => point,
        Some(Err(reason)) if repair => {
            tracing::error!(dir = %dir.display(), %reason, "repair: ignoring damaged recovery checkpoint");
            0
        }
        Some(Err(reason)) => {
            return Err(OpenError::CorruptDurableData {
                file: dir.join(CheckpointKind::RecoveryPoint.file_name()),
                position: 0,
                reason,
            });
        }
    };
    if let Some(end) = clean_end {
        match load_segments(
            medium,
            dir,
            config,
            &bases,
            recovery_point,
            true,
            repair,
            now_ms,
        ) {
            Ok(loaded) if loaded.end_offset == end => return Ok(loaded),
            Ok(loaded) => tracing::warn!(
                dir = %dir.display(), marker = end, found = loaded.end_offset,
                "clean-shutdown marker disagrees with the log; recovering as after a crash"
            ),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "clean open failed; recovering as after a crash")
            }
        }
    }
    load_segments(
        medium,
        dir,
        config,
        &bases,
        recovery_point,
        false,
        repair,
        now_ms,
    )
}

#[allow(clippy::too_many_arguments)]
fn load_segments(
    medium: &dyn Medium,
    dir: &Path,
    config: &LogConfig,
    bases: &[u64],
    recovery_point: u64,
    clean: bool,
    repair: bool,
    now_ms: i64,
) -> Result<Loaded, OpenError> {
    let mut report = RecoveryReport {
        clean_shutdown: clean,
        recovery_point,
        ..RecoveryReport::default()
    };
    if bases.is_empty() {
        if recovery_point > 0 && !repair {
            return Err(OpenError::CorruptDurableData {
                file: dir.to_path_buf(),
                position: 0,
                reason: format!(
                    "no segment files, but the checkpoint says offsets below {recovery_point} were synced"
                ),
            });
        }
        let active = ActiveSegment::create(medium, dir, recovery_point, config, now_ms)
            .map_err(io_err("creating segment in", dir))?;
        return Ok(Loaded {
            segments: vec![active.segment.clone()],
            active,
            end_offset: recovery_point,
            report,
        });
    }
    // From the segment holding the recovery point on, batches may be torn.
    let first_scanned = if clean {
        bases.len()
    } else {
        bases
            .iter()
            .rposition(|&b| b <= recovery_point)
            .unwrap_or(0)
    };
    let mut checked: Vec<Checked> = Vec::new();
    let mut cut: Option<(usize, Damage)> = None;
    for (i, &base) in bases.iter().enumerate() {
        let trust = if i < first_scanned {
            Trust::Sealed
        } else {
            Trust::Scan
        };
        let expected = checked.last().map(|c| c.next_offset);
        let (segment, damage) = check_segment(medium, dir, config, base, expected, trust)?;
        let last = i + 1 == bases.len();
        // A closed segment was cut to its used length when it rolled, so
        // even trailing zeros mean damage there; only the last may end in
        // them, and only after an intact header.
        let damage = damage.filter(|d| {
            d.data_follows || !last || trust == Trust::Sealed || d.position < LOG_HEADER_BYTES
        });
        checked.push(segment);
        if let Some(damage) = damage {
            cut = Some((i, damage));
            break;
        }
    }
    if let Some((i, damage)) = cut {
        let segment = &checked[i];
        let log_path = Segment::paths(dir, segment.base_offset)[0].clone();
        let lost_from = segment.next_offset;
        if lost_from < recovery_point {
            if !repair {
                return Err(OpenError::CorruptDurableData {
                    file: log_path,
                    position: damage.position as u64,
                    reason: format!(
                        "{} (offsets below {recovery_point} had been synced)",
                        damage.reason
                    ),
                });
            }
            report.repaired_durable_data = true;
            tracing::error!(
                file = %log_path.display(), position = damage.position, reason = %damage.reason,
                "repair: truncating damaged data that had been acknowledged as durable"
            );
        }
        let file_len = medium
            .read_file(&log_path)
            .map_err(io_err("reading", &log_path))?
            .map_or(0, |bytes| {
                let tail = bytes.get(damage.position..).unwrap_or(&[]);
                tail.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
            });
        report.truncated_bytes = file_len as u64;
        report.truncated_at_offset = Some(lost_from);
        for &later in &bases[i + 1..] {
            report.removed_segments.push(later);
            for path in Segment::paths(dir, later) {
                medium
                    .remove_file(&path)
                    .map_err(io_err("removing", &path))?;
            }
        }
        if damage.position < LOG_HEADER_BYTES {
            // Not even the header survived: drop the segment; a new one starts at its base.
            report.removed_segments.push(segment.base_offset);
            for path in Segment::paths(dir, segment.base_offset) {
                medium
                    .remove_file(&path)
                    .map_err(io_err("removing", &path))?;
            }
            checked.pop();
        }
        medium.sync_dir(dir).map_err(io_err("syncing", dir))?;
        if report.truncated_bytes > 0 || !report.removed_segments.is_empty() {
            tracing::warn!(
                file = %log_path.display(), position = damage.position, reason = %damage.reason,
                cut_bytes = report.truncated_bytes, from_offset = lost_from,
                removed_segments = ?report.removed_segments, "cut the log's torn or corrupt tail"
            );
        }
    }
    finish(medium, dir, config, checked, report, now_ms)
}

fn finish(
    medium: &dyn Medium,
    dir: &Path,
    config: &LogConfig,
    mut checked: Vec<Checked>,
    mut report: RecoveryReport,
    now_ms: i64,
) -> Result<Loaded, OpenError> {
    let Some(last) = checked.pop() else {
        // Nothing survived: start an empty log where the removed one began.
        let base = report.truncated_at_offset.unwrap_or(report.recovery_point);
        let active = ActiveSegment::create(medium, dir, base, config, now_ms)
            .map_err(io_err("creating segment in", dir))?;
        return Ok(Loaded {
            segments: vec![active.segment.clone()],
            active,
            end_offset: base,
            report,
        });
    };
    let mut segments = Vec::with_capacity(checked.len() + 1);
    for segment in checked {
        segments.push(Arc::new(closed_segment(medium, dir, segment, &mut report)?));
    }
    let [log_path, ..] = Segment::paths(dir, last.base_offset);
    let end_offset = last.next_offset;
    let resume = resume_state(config, &last, &mut report);
    // Cut preallocated zeros or a torn tail, then grow back to a full segment.
    medium
        .truncate(&log_path, last.valid_len as u64)
        .map_err(io_err("truncating", &log_path))?;
    drop(last);
    let active = ActiveSegment::reopen(medium, dir, resume.base_offset, config, resume)
        .map_err(io_err("reopening", &log_path))?;
    segments.push(active.segment.clone());
    Ok(Loaded {
        segments,
        active,
        end_offset,
        report,
    })
}

fn resume_state(config: &LogConfig, last: &Checked, report: &mut RecoveryReport) -> Resume {
    let (offset_entries, time_entries, cadence) = match (&last.rebuilt, &last.sealed) {
        (Some((offsets, times, cadence)), _) => {
            if !report.clean_shutdown {
                report.rebuilt_indexes.push(last.base_offset);
            }
            (offsets.clone(), times.clone(), cadence.clone())
        }
        (None, Some((offsets, times))) => {
            let offsets = offsets.entries();
            let times = times.entries();
            let since = last.valid_len
                - offsets
                    .last()
                    .map_or(LOG_HEADER_BYTES, |e| e.position as usize);
            let cadence = IndexCadence::resume(
                config.index_interval_bytes,
                since,
                times.last().map(|t| t.timestamp),
            );
            (offsets, times, cadence)
        }
        (None, None) => (
            Vec::new(),
            Vec::new(),
            IndexCadence::new(config.index_interval_bytes),
        ),
    };
    Resume {
        base_offset: last.base_offset,
        created_ms: last.created_ms,
        next_offset: last.next_offset,
        offset_entries,
        time_entries,
        cadence,
    }
}

/// A closed segment, with its sealed indexes or ones rebuilt now.
fn closed_segment(
    medium: &dyn Medium,
    dir: &Path,
    checked: Checked,
    report: &mut RecoveryReport,
) -> Result<Segment, OpenError> {
    let [log_path, index_path, time_path] = Segment::paths(dir, checked.base_offset);
    let (log, _) = medium
        .open_region(&log_path, None)
        .map_err(io_err("opening", &log_path))?;
    let (offset_index, time_index, max_timestamp) = match checked.sealed {
        Some((offsets, times)) => {
            let max = times.last_where(|_| true).map_or(i64::MIN, |e| e.timestamp);
            (offsets, times, max)
        }
        None => {
            report.rebuilt_indexes.push(checked.base_offset);
            let (offsets, times, cadence) = checked
                .rebuilt
                .unwrap_or_else(|| (Vec::new(), Vec::new(), IndexCadence::new(0)));
            let offset_index =
                write_sealed::<OffsetKind>(medium, &index_path, checked.base_offset, &offsets)?;
            let mut times = times;
            let mut cadence = cadence;
            let last_relative = (checked
                .next_offset
                .saturating_sub(1)
                .max(checked.base_offset)
                - checked.base_offset) as u32;
            times.extend(cadence.time_entry(last_relative));
            let time_index =
                write_sealed::<TimeKind>(medium, &time_path, checked.base_offset, &times)?;
            (offset_index, time_index, cadence.max_timestamp())
        }
    };
    Ok(Segment {
        base_offset: checked.base_offset,
        created_ms: checked.created_ms,
        log_path,
        log: log.0,
        offset_index,
        time_index,
        next_offset: AtomicU64::new(checked.next_offset),
        max_timestamp: AtomicI64::new(max_timestamp),
    })
}

fn write_sealed<K: crate::index::IndexKind>(
    medium: &dyn Medium,
    path: &Path,
    base_offset: u64,
    entries: &[K::Entry],
) -> Result<Index<K>, OpenError> {
    let (index, mut writer) = Index::<K>::create(medium, path, base_offset, entries.len())
        .map_err(io_err("rebuilding", path))?;
    for entry in entries {
        writer
            .append(&index, *entry)
            .map_err(io_err("rebuilding", path))?;
    }
    writer.seal().map_err(io_err("sealing", path))?;
    // Reopen from the sealed file so the index maps exactly its used length.
    Index::<K>::open_sealed(medium, path, base_offset).map_err(|reason| OpenError::Io {
        op: "reopening rebuilt index",
        path: PathBuf::from(path),
        source: std::io::Error::other(reason),
    })
}
