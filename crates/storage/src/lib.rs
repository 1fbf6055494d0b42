//! Carteiro's storage engine: durable, segmented partition
//! logs and the topic store that holds them.
//!
//! It knows nothing of gRPC or async runtimes. Modules, one concept each:
//! - [`config`]: a log's limits and defaults; [`clock`]: injected time.
//! - [`medium`]: the file system as the log uses it; [`simulated`]: one
//!   that loses unsynced bytes on a simulated power loss.
//! - `region` (private): a file with one writer (`pwrite`) and many
//!   readers (`pread`), grown a step at a time; `cursor` (private):
//!   buffered sequential reads of one.
//! - `segment`, `active`, `index`, `checkpoint` (private): the segment
//!   files, the writer of the active segment, the sparse indexes, and the
//!   recovery checkpoint and clean-shutdown marker.
//! - [`recovery`]: opening a log after any shutdown; `segment_check`
//!   (private): checking one segment file's bytes for it.
//! - [`batch`]: a client's batch, checked once before any log takes it.
//! - [`producers`]: idempotent producers — the checks that store a batch
//!   sent twice once, their snapshot file, and the producer id allocator.
//! - [`log`]: the partition log — append, read, sync, roll, retention.
//! - [`metrics`]: lock-free histograms and counters, read when `/metrics`
//!   is scraped (the logs' append and sync times, both edges' requests).
//! - [`store`]: topics, their partitions and config, persisted atomically;
//!   `data_dir` (private): what of the data directory is provably ours.
//!
//! File layouts are in `docs/format.md`.

mod active;
pub mod batch;
mod checkpoint;
pub mod clock;
pub mod config;
mod cursor;
mod data_dir;
pub mod error;
mod index;
pub mod log;
pub mod medium;
mod metadata;
pub mod metrics;
pub mod producers;
pub mod recovery;
mod region;
mod sealed_files;
mod segment;
mod segment_check;
pub mod simulated;
pub mod store;

pub use batch::{CheckedBatch, batches_checked};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{FlushPolicy, LogConfig};
pub use error::{AppendError, ConfigError, OpenError, ReadError, StoreError};
pub use log::{
    AckWait, Acks, AfterSync, AppendInfo, Log, LogOptions, LogRead, LogStats, LogTimings,
    LogTraffic, QueuedAppend, RetentionReport, TAIL_BATCH_BYTES_MAX, TAIL_CACHE_BYTES_MAX,
    TimingsSnapshot, TrafficSnapshot,
};
pub use medium::{Medium, OsMedium};
pub use producers::{
    NO_PRODUCER_ID, PRODUCER_BATCHES_KEPT, PRODUCER_ID_BLOCK, PRODUCER_ID_EXPIRATION_MS_DEFAULT,
    PRODUCERS_PER_PARTITION_MAX,
};
pub use recovery::RecoveryReport;
pub use sealed_files::SEALED_FILES_OPEN_MAX;
pub use segment::LOG_HEADER_BYTES;
pub use simulated::SimulatedMedium;
pub use store::{Store, StoreOptions, Topic, TopicConfig};
