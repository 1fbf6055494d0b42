//! The last step of opening a log: the checked segments become the log
//! that serves, closed ones with their sealed (or rebuilt) indexes, the
//! last one reopened for appending.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, OnceLock};

use super::{Inspection, Loaded, RecoveryReport, io_err};
use crate::active::{ActiveSegment, Resume};
use crate::checkpoint::Checkpoint;
use crate::config::LogConfig;
use crate::error::OpenError;
use crate::index::{Index, OffsetKind, TimeKind};
use crate::medium::Medium;
use crate::segment::segment_file;
use crate::segment::{IndexCadence, LOG_HEADER_BYTES, Segment};
use crate::segment_check::Checked;

pub(super) fn finish(
    medium: &dyn Medium,
    dir: &Path,
    config: &LogConfig,
    inspection: Inspection,
    point: Checkpoint,
    clean: bool,
    now_ms: i64,
) -> Result<Loaded, OpenError> {
    let Inspection {
        segments: mut checked,
        mut report,
        ..
    } = inspection;
    report.clean_shutdown = clean;
    report.scanned_bytes = checked.iter().map(|c| c.scanned_bytes).sum();
    let Some(last) = checked.pop() else {
        // Nothing survived: start an empty log where the removed one began.
        let base = report.truncated_at_offset.unwrap_or(point.offset);
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
        segments.push(Arc::new(closed_segment(
            medium,
            dir,
            config,
            segment,
            &mut report,
        )?));
    }
    let log_path = segment_file(dir, last.base_offset);
    let end_offset = last.next_offset;
    let resume = resume_state(config, &last, &mut report);
    // Cut reserved zeros or a torn tail; the file grows again as it is written.
    if last.file_len != last.valid_len {
        medium
            .truncate(&log_path, last.valid_len as u64)
            .map_err(io_err("truncating", &log_path))?;
    }
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

/// A closed segment, with its sealed indexes or ones rebuilt now. A file
/// left longer than its data by a crash during a roll is cut to it first.
fn closed_segment(
    medium: &dyn Medium,
    dir: &Path,
    config: &LogConfig,
    checked: Checked,
    report: &mut RecoveryReport,
) -> Result<Segment, OpenError> {
    let [log_path, index_path, time_path] = Segment::paths(dir, checked.base_offset);
    if checked.file_len != checked.valid_len {
        medium
            .truncate(&log_path, checked.valid_len as u64)
            .map_err(io_err("truncating", &log_path))?;
    }
    let (log, _) = medium
        .open_region(&log_path, None)
        .map_err(io_err("opening", &log_path))?;
    let scanned_index = OnceLock::new();
    let (offset_index, time_index, max_timestamp) = match checked.sealed {
        Some((offsets, times)) => {
            let max = times.last().map_or(i64::MIN, |e| e.timestamp);
            (offsets, times, max)
        }
        None => {
            report.rebuilt_indexes.push(checked.base_offset);
            let (offsets, mut times, mut cadence) = checked
                .rebuilt
                .unwrap_or_else(|| (Vec::new(), Vec::new(), IndexCadence::new(0)));
            let last_relative = (checked
                .next_offset
                .saturating_sub(1)
                .max(checked.base_offset)
                - checked.base_offset) as u32;
            times.extend(cadence.time_entry(last_relative));
            let written =
                write_sealed::<OffsetKind>(medium, &index_path, checked.base_offset, &offsets)
                    .and_then(|o| {
                        let t = write_sealed::<TimeKind>(
                            medium,
                            &time_path,
                            checked.base_offset,
                            &times,
                        )?;
                        Ok((o, t))
                    });
            match written {
                Ok((o, t)) => (o, t, cadence.max_timestamp()),
                Err(e) => {
                    // A full disk must not stop the log from opening: keep
                    // the entries in memory; the next open rebuilds the files.
                    tracing::warn!(segment = %log_path.display(), error = %e, "index kept in memory");
                    for path in [&index_path, &time_path] {
                        let _ = medium.remove_file(path);
                    }
                    let _ = scanned_index.set(offsets);
                    (Index::empty(), Index::empty(), cadence.max_timestamp())
                }
            }
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
        scanned_index,
        index_interval_bytes: config.index_interval_bytes,
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
        writer.append(&index, *entry);
    }
    writer.seal();
    // Reopen from the sealed file, which proves the seal was written.
    Index::<K>::open_sealed(medium, path, base_offset).map_err(|reason| OpenError::Io {
        op: "reopening rebuilt index",
        path: PathBuf::from(path),
        source: std::io::Error::other(reason),
    })
}
