//! Reading a log: whole batches from an offset (each CRC-checked by the
//! segment), by timestamp, past damage, and waiting for it to grow.

use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Listener;

use super::{Log, LogRead};
use crate::config::FlushPolicy;
use crate::error::ReadError;
use crate::segment_check;

/// A read of nothing at `from` with the log's bounds, or the error for a
/// `from` outside them.
pub(super) fn empty_read(
    from: u64,
    start: u64,
    end: u64,
    durable: u64,
) -> Result<LogRead, ReadError> {
    if from < start || from > end {
        return Err(ReadError::OffsetOutOfRange {
            requested: from,
            start,
            end,
        });
    }
    Ok(LogRead {
        batches: Bytes::new(),
        first_offset: from,
        next_offset: from,
        log_start_offset: start,
        log_end_offset: end,
        durable_offset: durable,
    })
}

impl Log {
    /// Reads whole batches from the one holding `from_offset`, up to
    /// `max_bytes` (but always at least one batch, so a reader makes
    /// progress), from a single segment.
    pub fn read(&self, from_offset: u64, max_bytes: usize) -> Result<LogRead, ReadError> {
        self.read_up_to(from_offset, max_bytes, self.end_offset())
    }

    /// As [`read`](Self::read), but only batches below the
    /// [`high_watermark`](Self::high_watermark): what consumers may see.
    pub fn read_visible(&self, from_offset: u64, max_bytes: usize) -> Result<LogRead, ReadError> {
        self.read_up_to(from_offset, max_bytes, self.high_watermark())
    }

    /// As [`read_visible`](Self::read_visible), but no further than `limit`:
    /// a reader that reports a high watermark reads no record past it.
    pub fn read_visible_below(
        &self,
        from_offset: u64,
        max_bytes: usize,
        limit: u64,
    ) -> Result<LogRead, ReadError> {
        self.read_up_to(from_offset, max_bytes, limit.min(self.high_watermark()))
    }

    /// Resolves once the high watermark passes `offset`.
    pub async fn visible_past(&self, offset: u64) {
        let durable = self.config.flush == FlushPolicy::Always;
        self.grown_past(offset, durable).await
    }

    /// As [`read`](Self::read), but only batches already synced: what a
    /// crash cannot take back.
    pub fn read_durable(&self, from_offset: u64, max_bytes: usize) -> Result<LogRead, ReadError> {
        self.read_up_to(from_offset, max_bytes, self.durable_offset())
    }

    fn read_up_to(&self, from: u64, max_bytes: usize, limit: u64) -> Result<LogRead, ReadError> {
        let end = self.end_offset();
        let durable = self.durable_offset();
        let (start, candidates) = {
            let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
            let start = segments.first().map_or(0, |s| s.base_offset);
            let at = segments
                .partition_point(|s| s.base_offset <= from)
                .saturating_sub(1);
            (
                start,
                segments
                    .iter()
                    .skip(at)
                    .take(2)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        };
        let empty = empty_read(from, start, end, durable)?;
        if from >= limit {
            return Ok(empty);
        }
        for segment in candidates {
            if let Some(read) = segment.read(from, max_bytes, limit)? {
                return Ok(LogRead {
                    batches: read.data,
                    first_offset: read.first_offset,
                    next_offset: read.next_offset,
                    ..empty
                });
            }
        }
        Ok(empty)
    }

    /// Where reading can go on after the damaged batch that a read reported
    /// at `offset`, byte `position` ([`ReadError::Corrupt`]): the first valid
    /// batch after it in its segment, else the next segment, else the log's
    /// end. For a reader that chooses to give the damaged offsets up.
    pub fn offset_after_damage(&self, offset: u64, position: u64) -> u64 {
        let (segment, next_base) = {
            let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
            let at = segments
                .partition_point(|s| s.base_offset <= offset)
                .saturating_sub(1);
            (
                segments.get(at).cloned(),
                segments.get(at + 1).map(|s| s.base_offset),
            )
        };
        let end = self.end_offset();
        let Some(segment) = segment else {
            return end;
        };
        let found = segment_check::find_valid_batch(
            &segment.log,
            segment.log.published(),
            position as usize + 1,
            offset + 1,
        );
        match found {
            Some((_, base, _)) => base,
            None => next_base.unwrap_or(end),
        }
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`,
    /// or `None` if every record is older.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<u64>, ReadError> {
        let segments = self
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for segment in segments {
            if let Some(offset) = segment.offset_for_timestamp(timestamp_ms)? {
                return Ok(Some(offset));
            }
        }
        Ok(None)
    }

    /// What a wait for the end (or, with `durable`, the durable offset) to
    /// move listens on.
    fn event(&self, durable: bool) -> &event_listener::Event {
        if durable {
            &self.synced
        } else {
            &self.appended
        }
    }

    fn passed(&self, offset: u64, durable: bool) -> bool {
        if durable {
            self.durable_offset() > offset
        } else {
            self.end_offset() > offset
        }
    }

    /// Blocks until the log end (or, with `durable`, the durable offset)
    /// passes `offset`, or `timeout` elapses; returns whether it did.
    pub fn wait_past(&self, offset: u64, durable: bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let reached = || self.passed(offset, durable);
        loop {
            if reached() {
                return true;
            }
            let listener = self.event(durable).listen();
            if reached() {
                return true;
            }
            if listener.wait_deadline(deadline).is_none() {
                return reached();
            }
        }
    }

    /// Resolves once the log end (or, with `durable`, the durable offset)
    /// passes `offset`. Runtime-agnostic: wrap it in your runtime's timeout.
    pub async fn grown_past(&self, offset: u64, durable: bool) {
        let reached = || self.passed(offset, durable);
        loop {
            if reached() {
                return;
            }
            let listener = self.event(durable).listen();
            if reached() {
                return;
            }
            listener.await;
        }
    }
}
