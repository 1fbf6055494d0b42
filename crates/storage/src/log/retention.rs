//! Deleting whole segments from the start of a log: retention by time and
//! size, and deletion before an offset (the snapshot of committed offsets).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Log, RetentionReport};
use crate::config::ms_i64;
use crate::segment::Segment;

impl Log {
    /// Deletes closed segments whose newest record is older than
    /// `retention_ms`, and the oldest closed segments while the log is larger
    /// than `retention_bytes`. The active segment is never deleted; readers
    /// of a deleted segment keep it mapped until they drop their views.
    pub fn apply_retention(&self) -> RetentionReport {
        let now = self.clock.now_ms();
        let mut victims = Vec::new();
        let start = {
            let mut segments = self.segments.write().unwrap_or_else(|p| p.into_inner());
            let mut remaining: u64 = segments.iter().map(|s| s.size_bytes()).sum();
            while segments.len() > 1 {
                let oldest = &segments[0];
                let newest_ms = match oldest.max_timestamp.load(Ordering::Acquire) {
                    i64::MIN => oldest.created_ms,
                    ts => ts,
                };
                let expired = self
                    .config
                    .retention_ms
                    .is_some_and(|ms| now.saturating_sub(newest_ms) > ms_i64(ms));
                let oversize = self
                    .config
                    .retention_bytes
                    .is_some_and(|max| remaining - oldest.size_bytes() >= max);
                if !expired && !oversize {
                    break;
                }
                remaining -= oldest.size_bytes();
                victims.push(segments.remove(0));
            }
            segments.first().map_or(0, |s| s.base_offset)
        };
        self.remove_segments(victims, start)
    }

    /// Deletes the closed segments that hold only offsets below `offset`;
    /// the log then starts at the first segment left. The active segment is
    /// never deleted ([`roll`](Self::roll) first to delete up to the end).
    pub fn delete_segments_before(&self, offset: u64) -> RetentionReport {
        let (victims, start) = {
            let mut segments = self.segments.write().unwrap_or_else(|p| p.into_inner());
            let keep_from = segments
                .iter()
                .position(|s| s.next_offset() > offset)
                .unwrap_or(segments.len())
                .min(segments.len().saturating_sub(1));
            let victims: Vec<Arc<Segment>> = segments.drain(..keep_from).collect();
            (victims, segments.first().map_or(0, |s| s.base_offset))
        };
        self.remove_segments(victims, start)
    }

    /// Removes the files of segments already taken out of the list.
    fn remove_segments(&self, victims: Vec<Arc<Segment>>, start: u64) -> RetentionReport {
        let mut report = RetentionReport {
            log_start_offset: start,
            ..RetentionReport::default()
        };
        for segment in victims {
            report.deleted_segments.push(segment.base_offset);
            report.deleted_bytes += segment.size_bytes();
            for path in Segment::paths_for_removal(&self.dir, segment.base_offset) {
                if let Err(e) = self.medium.remove_file(&path) {
                    tracing::warn!(file = %path.display(), error = %e, "could not delete segment file");
                }
            }
        }
        if !report.deleted_segments.is_empty() {
            if let Err(e) = self.medium.sync_dir(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not sync directory after deleting segments");
            }
            tracing::info!(dir = %self.dir.display(), deleted = ?report.deleted_segments, start, "deleted segments");
        }
        report
    }
}
