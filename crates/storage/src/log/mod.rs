//! A partition log: an ordered list of segments with one writer and many
//! readers.
//!
//! Appends take the writer lock only to write the batch into the segment
//! file and publish it; syncs happen outside it, and concurrent appends
//! waiting to be durable share one sync (group commit, in `sync.rs`: the
//! appending thread syncs unless a sync runs, which then syncs again for
//! it; or a partition's draining thread syncs once for the appends queued
//! to it, in `queue.rs`). Readers never take the writer lock: they see
//! batches once published, copied out of the file with their CRC checked
//! (or, at the tail, from memory: `tail.rs`), and keep their segment's
//! file open however the log changes afterwards.
//!
//! A failed write (a full disk) leaves the log as it was and the next
//! append may succeed; a failed sync stops the log, because after a failed
//! `fsync` the page cache can no longer be trusted.
//!
//! A batch with a producer id is first checked against its producer's
//! state ([`crate::producers`]) under the writer lock: a duplicate is
//! answered with where the original landed and not written again. A batch
//! without one (the common case) costs one branch more.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Instant;

use bytes::Bytes;
use event_listener::Event;

use crate::active::ActiveSegment;
use crate::batch::CheckedBatch;
use crate::checkpoint::CheckpointKind;
use crate::clock::{Clock, SystemClock};
use crate::config::{FlushPolicy, LogConfig, ms_i64};
use crate::error::is_disk_full;
use crate::error::{AppendError, OpenError};
use crate::medium::{Medium, OsMedium};
use crate::producers::{PRODUCER_ID_EXPIRATION_MS_DEFAULT, ProducerBatch, ProducerStates};
use crate::recovery::{self, RecoveryReport};
use crate::segment::Segment;

pub use acks::{AckWait, Acks};
pub use timings::{LogTimings, TimingsSnapshot};
pub use traffic::{LogTraffic, TrafficSnapshot};

mod acks;
mod checkpoints;
mod producers;
mod queue;
mod read;
mod retention;
mod sync;
mod tail;

use queue::AppendQueue;
pub use queue::{AfterSync, QueuedAppend, SYNC_HAND_OFF_BYTES_MIN};
use sync::{SyncState, SyncTurn};
use tail::TailCache;
pub use tail::{TAIL_BATCH_BYTES_MAX, TAIL_CACHE_BYTES_MAX};
mod timings;
mod traffic;

/// How a log is opened: where its bytes live, its clock, and whether
/// recovery may cut damaged durable data.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// The file system.
    pub medium: Arc<dyn Medium>,
    /// The clock for rolling, retention and append times.
    pub clock: Arc<dyn Clock>,
    /// Cut the log at damaged data even if it had been acknowledged as
    /// durable (logged at error level), instead of refusing to open.
    pub repair: bool,
    /// An idempotent producer that has not appended for this long is
    /// forgotten, in ms (Kafka's `producer.id.expiration.ms`; default
    /// [`PRODUCER_ID_EXPIRATION_MS_DEFAULT`], 1 day).
    pub producer_id_expiration_ms: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            medium: Arc::new(OsMedium),
            clock: Arc::new(SystemClock),
            repair: false,
            producer_id_expiration_ms: PRODUCER_ID_EXPIRATION_MS_DEFAULT,
        }
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset given to the batch's first record.
    pub base_offset: u64,
    /// Offset of its last record.
    pub last_offset: u64,
    /// The log's time when it was appended, in ms since the Unix epoch.
    pub append_time_ms: i64,
    /// True if it was synced before this returned.
    pub durable: bool,
    /// True if the batch was a duplicate of one of its producer's last
    /// batches: nothing was written, and the offsets and time are the
    /// original append's.
    pub duplicate: bool,
}

/// Batches read from a log, with the log's bounds at the time of the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRead {
    /// Whole batches, back to back, viewing the segment's map (no copy).
    /// Empty when nothing is available at the offset yet.
    pub batches: Bytes,
    /// Base offset of the first batch; it may be below the offset asked for,
    /// which lies inside that batch.
    pub first_offset: u64,
    /// The offset after the last batch returned: where the next read starts.
    pub next_offset: u64,
    /// The first offset in the log.
    pub log_start_offset: u64,
    /// The next offset to be written.
    pub log_end_offset: u64,
    /// Offsets below this are synced.
    pub durable_offset: u64,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Base offsets of the deleted segments.
    pub deleted_segments: Vec<u64>,
    /// Bytes freed.
    pub deleted_bytes: u64,
    /// The log start offset afterwards.
    pub log_start_offset: u64,
}

/// A snapshot of a log's size and bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    /// The first offset in the log.
    pub start_offset: u64,
    /// The next offset to be written.
    pub end_offset: u64,
    /// Offsets below this are synced.
    pub durable_offset: u64,
    /// Bytes of segment files in use.
    pub size_bytes: u64,
    /// Number of segments.
    pub segment_count: usize,
}

/// One partition's log. See the module documentation.
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    medium: Arc<dyn Medium>,
    clock: Arc<dyn Clock>,
    segments: RwLock<Vec<Arc<Segment>>>,
    writer: Mutex<Option<ActiveSegment>>,
    end_offset: AtomicU64,
    durable_offset: AtomicU64,
    sync: Mutex<SyncState>,
    /// Whether a thread is syncing, and whether appends since want another sync.
    sync_turn: Mutex<SyncTurn>,
    /// Copies of the last small batches, for readers at the tail. Pushed to
    /// under the writer lock (taken after it).
    tail: Mutex<TailCache>,
    /// Appends waiting for the log's draining thread.
    queue: Mutex<AppendQueue>,
    /// The last recovery point written; held while one is written, so two
    /// writers never share the temporary file and the point never goes back.
    checkpoint: Mutex<u64>,
    /// The periodic recovery point is written by the maintenance pass
    /// ([`Log::write_due_checkpoint`]) rather than by the sync that finds it due.
    background_checkpoints: AtomicBool,
    /// A sync found the periodic recovery point due.
    checkpoint_due: AtomicBool,
    failure: OnceLock<String>,
    /// Notified when the end offset moves (an append).
    appended: Event,
    /// Notified when the durable offset moves (a sync, roll or close) or
    /// the log stops: what durable waiters wait on, woken by syncs only.
    synced: Event,
    recovery: RecoveryReport,
    /// The idempotent producers' state. Changed by appends under the
    /// writer lock (taken after it), and by expiry.
    producers: Mutex<ProducerStates>,
    /// Offsets of the producer snapshots on disk, ascending. Written under
    /// the writer lock.
    snapshots: Mutex<Vec<u64>>,
    /// Records and bytes appended and fetched since the process started.
    traffic: LogTraffic,
    /// Append and sync durations, batches per sync.
    timings: LogTimings,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge the log; the state under these locks
    // is only changed by code that cannot panic midway.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering after an
    /// unclean shutdown. See [`crate::recovery`] for what is checked.
    pub fn open(
        dir: impl AsRef<Path>,
        config: LogConfig,
        options: &LogOptions,
    ) -> Result<Log, OpenError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let medium = options.medium.clone();
        let now = options.clock.now_ms();
        let loaded = recovery::load(medium.as_ref(), &dir, &config, now, options.repair)?;
        let end = loaded.end_offset;
        // From here on the log may change: a crash must not find a stale marker.
        let marker = dir.join(CheckpointKind::CleanShutdown.file_name());
        medium
            .remove_file(&marker)
            .map_err(|source| OpenError::Io {
                op: "removing",
                path: marker.clone(),
                source,
            })?;
        medium.sync_dir(&dir).map_err(|source| OpenError::Io {
            op: "syncing",
            path: dir.clone(),
            source,
        })?;
        let mut report = loaded.report;
        let producers = producers::load(
            medium.as_ref(),
            &dir,
            &loaded.segments,
            end,
            now,
            options.producer_id_expiration_ms,
            options.repair,
        )?;
        report.producer_snapshot = producers.snapshot;
        report.producer_batches_scanned = producers.scanned_batches;
        let start = loaded.segments.first().map_or(end, |s| s.base_offset);
        let snapshot_due =
            producers.snapshot != Some(end) && (end > start || !producers.states.is_empty());
        let active_base = loaded.active.segment.base_offset;
        let active_len = loaded.active.segment.log.published();
        // Recovered bytes may still sit only in the page cache: sync them first.
        loaded
            .active
            .segment
            .log
            .sync()
            .map_err(|source| OpenError::Io {
                op: "syncing",
                path: loaded.active.segment.log_path.clone(),
                source,
            })?;
        let log = Log {
            config,
            medium,
            clock: options.clock.clone(),
            segments: RwLock::new(loaded.segments),
            writer: Mutex::new(Some(loaded.active)),
            end_offset: AtomicU64::new(end),
            durable_offset: AtomicU64::new(end),
            sync: Mutex::new(SyncState {
                segment_base: active_base,
                synced_bytes: active_len,
                last_checkpoint_ms: now,
                last_sync_ms: now,
                synced_batches: 0,
            }),
            sync_turn: Mutex::new(SyncTurn::default()),
            tail: Mutex::new(TailCache::default()),
            queue: Mutex::new(AppendQueue::default()),
            checkpoint: Mutex::new(0),
            background_checkpoints: AtomicBool::new(false),
            checkpoint_due: AtomicBool::new(false),
            failure: OnceLock::new(),
            appended: Event::new(),
            synced: Event::new(),
            recovery: report,
            traffic: LogTraffic::default(),
            timings: LogTimings::default(),
            producers: Mutex::new(producers.states),
            snapshots: Mutex::new(producers.snapshots),
            dir,
        };
        match log.write_recovery_point(end) {
            Ok(()) => {}
            // Best-effort on a full disk: the older checkpoint stays true
            // (it lags, never leads), and no data is dropped for it.
            Err(e) if is_disk_full(&e) => {
                tracing::warn!(dir = %log.dir.display(), error = %e, "disk full: recovery checkpoint not rewritten at open");
            }
            Err(source) => {
                return Err(OpenError::Io {
                    op: "writing checkpoint in",
                    path: log.dir.clone(),
                    source,
                });
            }
        }
        if snapshot_due {
            // Everything below the end is synced: the next open starts here.
            log.write_producer_snapshot(end);
        }
        tracing::debug!(dir = %log.dir.display(), end, report = ?log.recovery, "log opened");
        Ok(log)
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Records and bytes appended and fetched since the process started.
    pub fn traffic(&self) -> &LogTraffic {
        &self.traffic
    }

    /// How long appends and syncs took, and batches per sync, since the
    /// process started.
    pub fn timings(&self) -> &LogTimings {
        &self.timings
    }

    /// What recovery found when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The next offset to be written.
    pub fn end_offset(&self) -> u64 {
        self.end_offset.load(Ordering::Acquire)
    }

    /// Offsets below this are synced and survive a power loss.
    pub fn durable_offset(&self) -> u64 {
        self.durable_offset.load(Ordering::Acquire)
    }

    /// The first offset in the log.
    pub fn start_offset(&self) -> u64 {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .map_or(0, |s| s.base_offset)
    }

    /// Sizes and bounds.
    pub fn stats(&self) -> LogStats {
        let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
        LogStats {
            start_offset: segments.first().map_or(0, |s| s.base_offset),
            end_offset: self.end_offset(),
            durable_offset: self.durable_offset(),
            size_bytes: segments.iter().map(|s| s.size_bytes()).sum(),
            segment_count: segments.len(),
        }
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<u64> {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| s.base_offset)
            .collect()
    }

    fn check_failed(&self) -> Result<(), AppendError> {
        match self.failure.get() {
            Some(reason) => Err(AppendError::Failed {
                dir: self.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn fail(&self, op: &'static str, path: &Path, source: std::io::Error) -> AppendError {
        let reason = format!("{op} {}: {source}", path.display());
        if self.failure.set(reason.clone()).is_ok() {
            tracing::error!(dir = %self.dir.display(), %reason, "log stopped: a sync failed");
        }
        // Waiters for the durable offset must learn that it will not move.
        self.synced.notify(usize::MAX);
        self.appended.notify(usize::MAX);
        AppendError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Appends one batch and, under [`FlushPolicy::Always`], returns only
    /// once it is synced. The batch must be a valid uncompressed
    /// RecordBatch v2 no larger than `max_batch_bytes`; its base offset is
    /// replaced by the log's next offset.
    pub fn append(&self, batch: &[u8]) -> Result<AppendInfo, AppendError> {
        let checked = CheckedBatch::new(Bytes::copy_from_slice(batch))?;
        self.append_checked(&checked, Acks::Durable)
    }

    /// Appends one batch without waiting for a sync, whatever the policy;
    /// [`sync_to`](Self::sync_to) makes it durable.
    pub fn append_unsynced(&self, batch: &[u8]) -> Result<AppendInfo, AppendError> {
        let checked = CheckedBatch::new(Bytes::copy_from_slice(batch))?;
        self.append_checked(&checked, Acks::Appended)
    }

    /// Appends a checked batch. With [`Acks::Durable`] on a flush-`always`
    /// log, it is synced before this returns (`AppendInfo::durable`): the
    /// caller waits in one call rather than two. Otherwise nothing is
    /// synced here; [`ack_wait`](Self::ack_wait) says what the
    /// acknowledgement still needs.
    pub fn append_checked(
        &self,
        batch: &CheckedBatch,
        acks: Acks,
    ) -> Result<AppendInfo, AppendError> {
        let mut info = self.append_one(batch)?;
        if acks == Acks::Durable && self.config.flush == FlushPolicy::Always {
            self.sync_to(info.last_offset + 1)?;
            info.durable = true;
        }
        Ok(info)
    }

    fn append_one(&self, batch: &CheckedBatch) -> Result<AppendInfo, AppendError> {
        let limit = self.config.max_batch_bytes;
        if batch.len() > limit as usize {
            return Err(AppendError::BatchTooLarge {
                bytes: batch.len(),
                limit,
            });
        }
        let header = *batch.header();
        let batch = batch.bytes();
        let count = header.record_count as u32;
        let producer = ProducerBatch::of(&header);
        let now = self.clock.now_ms();
        let mut guard = lock(&self.writer);
        let locked = Instant::now();
        self.check_failed()?;
        let Some(active) = guard.as_mut() else {
            return Err(AppendError::Closed {
                dir: self.dir.clone(),
            });
        };
        if let Some(producer) = &producer
            && let Some(original) = lock(&self.producers).check(producer, now)?
        {
            return Ok(AppendInfo {
                base_offset: original.base_offset,
                last_offset: original.last_offset,
                append_time_ms: original.append_time_ms,
                durable: false,
                duplicate: true,
            });
        }
        let base_offset = active.segment.next_offset();
        let aged = base_offset > active.segment.base_offset
            && now.saturating_sub(active.segment.created_ms) >= ms_i64(self.config.segment_ms);
        if active.remaining() < batch.len() || aged || active.offsets_exhausted(base_offset, count)
        {
            self.roll_locked(&mut guard, now)?;
        }
        let Some(active) = guard.as_mut() else {
            return Err(AppendError::Closed {
                dir: self.dir.clone(),
            });
        };
        if let Err(source) = active.append(base_offset, batch, &header) {
            // Nothing was published: the log is as it was, and a later
            // append (once the disk has room) writes over the attempt.
            return Err(AppendError::Io {
                op: "writing",
                path: active.segment.log_path.clone(),
                source,
            });
        }
        let next = base_offset + u64::from(count);
        lock(&self.tail).push(base_offset, next, batch);
        if let Some(producer) = &producer {
            let placed = producer.placed(base_offset, next - 1, now);
            lock(&self.producers).record(producer, placed, now);
        }
        self.timings.count_batch();
        self.end_offset.store(next, Ordering::Release);
        let held = locked.elapsed();
        drop(guard);
        self.timings.append.observe_duration(held);
        self.traffic
            .count_produced(u64::from(count), batch.len() as u64);
        self.appended.notify(usize::MAX);
        if let FlushPolicy::IntervalMs(_) = self.config.flush {
            self.flush_if_due()?;
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            append_time_ms: now,
            durable: false,
            duplicate: false,
        })
    }

    /// Closes the active segment and starts a new one at the log's end,
    /// unless the active one holds no batch yet. Returns the log's end: the
    /// base offset of the segment now active.
    pub fn roll(&self) -> Result<u64, AppendError> {
        let mut guard = lock(&self.writer);
        self.check_failed()?;
        let Some(active) = guard.as_ref() else {
            return Err(AppendError::Closed {
                dir: self.dir.clone(),
            });
        };
        let end = active.segment.next_offset();
        if end > active.segment.base_offset {
            self.roll_locked(&mut guard, self.clock.now_ms())?;
        }
        Ok(end)
    }

    /// Closes the active segment and starts a new one at the next offset.
    /// Called with the writer lock held.
    fn roll_locked(
        &self,
        guard: &mut MutexGuard<'_, Option<ActiveSegment>>,
        now: i64,
    ) -> Result<(), AppendError> {
        let Some(active) = guard.as_ref() else {
            return Err(AppendError::Closed {
                dir: self.dir.clone(),
            });
        };
        let base = active.segment.next_offset();
        // Sync the old segment before the new one exists, so that a segment
        // file only ever follows data that is on disk: a crash can then
        // never leave a gap before a new segment, and a gap means damage.
        let old_path = active.segment.log_path.clone();
        if let Err(e) = active.segment.log.sync() {
            return Err(self.fail("syncing", &old_path, e));
        }
        // Create the new segment next: if that fails, the old one stays active.
        let next = ActiveSegment::create(self.medium.as_ref(), &self.dir, base, &self.config, now)
            .map_err(|e| AppendError::Io {
                op: "creating segment in",
                path: self.dir.clone(),
                source: e,
            })?;
        let Some(old) = guard.take() else {
            return Err(AppendError::Closed {
                dir: self.dir.clone(),
            });
        };
        if let Err(e) = old.seal() {
            return Err(self.fail("sealing", &old_path, e));
        }
        self.segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(next.segment.clone());
        **guard = Some(next);
        lock(&self.tail).clear();
        // Everything before the new segment is synced now.
        self.durable_offset.fetch_max(base, Ordering::AcqRel);
        self.synced.notify(usize::MAX);
        tracing::debug!(dir = %self.dir.display(), base, "rolled segment");
        if let Err(e) = self.write_recovery_point(base) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not write recovery checkpoint");
        }
        // The producers' state as of `base`: every batch below it is synced.
        self.write_producer_snapshot(base);
        Ok(())
    }

    /// Closes the log cleanly: syncs, seals the active segment, writes the
    /// recovery checkpoint and the clean-shutdown marker. Appends fail
    /// afterwards; reads still work. Closing twice is a no-op.
    pub fn close(&self) -> Result<(), AppendError> {
        let mut guard = lock(&self.writer);
        let Some(active) = guard.take() else {
            return Ok(());
        };
        self.check_failed()?;
        let end = active.segment.next_offset();
        let path = active.segment.log_path.clone();
        active.seal().map_err(|e| self.fail("sealing", &path, e))?;
        self.durable_offset.fetch_max(end, Ordering::AcqRel);
        self.synced.notify(usize::MAX);
        self.appended.notify(usize::MAX);
        let io = |source| AppendError::Io {
            op: "writing checkpoint in",
            path: self.dir.clone(),
            source,
        };
        self.write_recovery_point(end).map_err(io)?;
        // Before the marker, so that a clean open finds the state at the end.
        self.write_producer_snapshot(end);
        self.write_checkpoint(CheckpointKind::CleanShutdown, end)
            .map_err(io)?;
        tracing::debug!(dir = %self.dir.display(), end, "log closed cleanly");
        Ok(())
    }
}
