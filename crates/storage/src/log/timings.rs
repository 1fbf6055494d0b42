//! How long a partition's appends and syncs take, and how many appended
//! batches each sync made durable (the group commit's size). Lock-free
//! histograms on the partition's own log: an append observes under the
//! writer lock it already holds, a sync under the sync lock, a durable
//! acknowledgement once its wait ends, and no two partitions ever touch
//! the same counters; the collector adds every
//! partition's up when scraped.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::{
    COUNT_BOUNDS_VALUES, CountHistogram, DURATION_BOUNDS_NS, DurationHistogram, HistogramSnapshot,
};

/// One partition's timings; see the module documentation.
#[derive(Debug)]
pub struct LogTimings {
    /// Time an append held the writer lock: the write, its index entries,
    /// a roll if one was due (with its sync), and publishing.
    pub(crate) append: DurationHistogram,
    /// Time of each sync of the group-commit path (`sync_to`, interval
    /// flushes): the `fdatasync` of the active segment.
    pub(crate) sync: DurationHistogram,
    /// Batches appended since the sync before, for each sync.
    pub(crate) sync_batches: CountHistogram,
    /// The durable write path's latency: for an append queued to the log
    /// ([`super::Log::queue_append`]), from its queueing until the sync
    /// after it returned; for one waited on with
    /// [`super::Log::wait_durable`], from the wait's start (just after the
    /// append) until the durable offset passed it.
    pub(crate) durable_wait: DurationHistogram,
    /// Batches appended since the log was opened.
    pub(crate) appended_batches: AtomicU64,
}

impl Default for LogTimings {
    fn default() -> Self {
        LogTimings {
            append: DurationHistogram::durations(),
            sync: DurationHistogram::durations(),
            sync_batches: CountHistogram::counts(),
            durable_wait: DurationHistogram::durations(),
            appended_batches: AtomicU64::new(0),
        }
    }
}

/// The timings at one moment (of one partition, or added over many).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingsSnapshot {
    /// Append durations, in ns.
    pub append: HistogramSnapshot,
    /// Sync durations, in ns.
    pub sync: HistogramSnapshot,
    /// Batches each sync covered.
    pub sync_batches: HistogramSnapshot,
    /// The durable write path's latency (see [`LogTimings`]), in ns.
    pub durable_wait: HistogramSnapshot,
}

impl Default for TimingsSnapshot {
    fn default() -> Self {
        TimingsSnapshot {
            append: HistogramSnapshot::empty(&DURATION_BOUNDS_NS),
            sync: HistogramSnapshot::empty(&DURATION_BOUNDS_NS),
            sync_batches: HistogramSnapshot::empty(&COUNT_BOUNDS_VALUES),
            durable_wait: HistogramSnapshot::empty(&DURATION_BOUNDS_NS),
        }
    }
}

impl TimingsSnapshot {
    /// Adds another partition's.
    pub fn add(&mut self, other: &TimingsSnapshot) {
        self.append.add(&other.append);
        self.sync.add(&other.sync);
        self.sync_batches.add(&other.sync_batches);
        self.durable_wait.add(&other.durable_wait);
    }
}

impl LogTimings {
    /// Counts one appended batch (under the writer lock).
    pub(crate) fn count_batch(&self) {
        self.appended_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Batches appended so far.
    pub(crate) fn batches(&self) -> u64 {
        self.appended_batches.load(Ordering::Relaxed)
    }

    /// The histograms now.
    pub fn snapshot(&self) -> TimingsSnapshot {
        TimingsSnapshot {
            append: self.append.snapshot(),
            sync: self.sync.snapshot(),
            sync_batches: self.sync_batches.snapshot(),
            durable_wait: self.durable_wait.snapshot(),
        }
    }
}
