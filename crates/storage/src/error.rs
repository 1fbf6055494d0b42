//! The storage crate's errors, one enum per operation.

use std::io;
use std::path::PathBuf;

use carteiro::record::BatchError;

/// A configuration value outside its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `field` is `value`, outside `min..=max`.
    #[error("{field} is {value}, outside the allowed range {min}..={max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
}

/// Why a log could not be opened or recovered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The configuration is invalid.
    #[error("invalid log config: {0}")]
    Config(#[from] ConfigError),
    /// A file-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Data that had been acknowledged as durable (before the recovery
    /// checkpoint) is damaged. Nothing was changed; opening with repair
    /// truncates the log at `position`.
    #[error(
        "corrupt durable data in {file} at byte {position}: {reason}; refusing to open (repair would truncate here)"
    )]
    CorruptDurableData {
        /// The segment file.
        file: PathBuf,
        /// Byte position of the damaged batch in the file.
        position: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Why an append failed. A failed append leaves the log as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The batch is larger than the log's `max_batch_bytes`.
    #[error("batch of {bytes} bytes exceeds max_batch_bytes {limit}")]
    BatchTooLarge {
        /// The batch's size.
        bytes: usize,
        /// The limit.
        limit: u32,
    },
    /// The batch is not a valid uncompressed RecordBatch v2.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// A file-system call failed; the append is not acknowledged.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An earlier sync failed, so the log takes no more appends until reopened:
    /// after a failed fsync the page cache can no longer be trusted.
    #[error("log {dir} stopped after a failed sync: {reason}")]
    Failed {
        /// The partition directory.
        dir: PathBuf,
        /// The first failure.
        reason: String,
    },
    /// The log was closed.
    #[error("log {dir} is closed")]
    Closed {
        /// The partition directory.
        dir: PathBuf,
    },
    /// An idempotent producer's batch carries an epoch older than the one
    /// this partition knows for it: a newer instance of the producer took
    /// over (Kafka's INVALID_PRODUCER_EPOCH / PRODUCER_FENCED). Nothing
    /// was written.
    #[error(
        "producer {producer_id} is fenced: its batch has epoch {epoch}, older than the producer's current epoch {current}"
    )]
    ProducerFenced {
        /// The producer id.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The epoch this partition knows.
        current: i16,
    },
    /// An idempotent producer's batch does not start at the sequence this
    /// partition expects: it is neither the next batch nor one of the last
    /// [`PRODUCER_BATCHES_KEPT`](crate::producers::PRODUCER_BATCHES_KEPT)
    /// appended (Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER). Nothing was written.
    #[error(
        "out-of-order sequence from producer {producer_id}: expected sequence {expected}, received {received}"
    )]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The sequence the next batch must start at.
        expected: i32,
        /// The batch's base sequence.
        received: i32,
    },
    /// An idempotent producer this partition holds no state for (never seen
    /// here, or expired) sent a batch that does not start at sequence 0
    /// (Kafka's UNKNOWN_PRODUCER_ID). Nothing was written.
    #[error(
        "unknown producer {producer_id}: this partition holds no state for it (never seen here, or expired), and its batch starts at sequence {sequence}, not 0"
    )]
    UnknownProducerId {
        /// The producer id.
        producer_id: i64,
        /// The batch's base sequence.
        sequence: i32,
    },
    /// The partition already holds state for `limit` producers (idle ones
    /// expired first): a new producer is refused. Nothing was written.
    #[error(
        "the partition already holds state for {limit} idempotent producers, the most it keeps: a new producer is refused until idle ones expire"
    )]
    TooManyProducers {
        /// [`PRODUCERS_PER_PARTITION_MAX`](crate::producers::PRODUCERS_PER_PARTITION_MAX).
        limit: usize,
    },
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The offset is outside the log; the valid range is `start..=end`
    /// (`end` is the next offset to be written, where a read returns nothing yet).
    #[error("offset {requested} out of range: the log holds {start}..{end}")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: u64,
        /// The log start offset.
        start: u64,
        /// The log end offset.
        end: u64,
    },
    /// A stored batch is damaged (or its file was cut short from outside):
    /// the batches before it are served, it and those after it are not.
    #[error("corrupt batch at offset {offset} in {file} at byte {position}: {reason}")]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte position in the file.
        position: u64,
        /// The offset the damaged batch should start at.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Why a topic operation on the [`Store`](crate::Store) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The topic name is not 1 to 249 characters of `[a-zA-Z0-9._-]`.
    #[error("invalid topic name {}: {reason}", quoted(name))]
    InvalidTopicName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The partition count is outside its limits.
    #[error("partitions is {partitions}, outside the allowed range 1..={max}")]
    InvalidPartitionCount {
        /// The count given.
        partitions: u32,
        /// The largest allowed.
        max: u32,
    },
    /// A topic's new partition count is not more than it has, or over the
    /// limit: partitions can only be added, up to the limit.
    #[error("{}", increase_refusal(topic, *current, *asked, *max))]
    InvalidPartitionIncrease {
        /// The topic.
        topic: String,
        /// How many partitions it has.
        current: u32,
        /// The count asked for.
        asked: u32,
        /// The largest allowed.
        max: u32,
    },
    /// A topic of that name exists.
    #[error("topic {} already exists", quoted(name))]
    TopicExists {
        /// The name.
        name: String,
    },
    /// No topic of that name.
    #[error("unknown topic {}", quoted(name))]
    UnknownTopic {
        /// The name.
        name: String,
    },
    /// The topic has no such partition.
    #[error(
        "unknown partition {partition} of topic {}: {}",
        quoted(topic),
        carteiro::partitioner::partition_count_text(*count)
    )]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many it has.
        count: u32,
    },
    /// The topic configuration is invalid.
    #[error("invalid topic config: {0}")]
    Config(#[from] ConfigError),
    /// A partition log failed to open.
    #[error("opening partition {partition} of topic {topic:?}: {source}")]
    Open {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Why.
        #[source]
        source: OpenError,
    },
    /// A directory stands where a new partition's would go, or where a
    /// topic's partition is, and it is not (provably) that partition's: it
    /// is left alone.
    #[error(
        "{path} is in the way: {reason}; Carteiro leaves it alone (move it away, or choose another topic name)"
    )]
    DirectoryInUse {
        /// The directory.
        path: PathBuf,
        /// Why it is not ours.
        reason: String,
    },
    /// A partition directory that `topics.meta` lists is missing.
    #[error(
        "partition {partition} of topic {topic:?}: its directory {path} is missing; restore it, or open with repair to recreate it empty (its records are lost)"
    )]
    MissingPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Where its directory should be.
        path: PathBuf,
    },
    /// The metadata file is damaged.
    #[error("corrupt metadata file {path}: {reason}")]
    CorruptMetadata {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Every producer id below `limit` has been handed out: no more can be
    /// allocated in this data directory.
    #[error("producer ids exhausted: every id below {limit} has been handed out")]
    ProducerIdsExhausted {
        /// The end of the id space (`i64::MAX`, never handed out).
        limit: i64,
    },
}

/// Why a topic with `current` partitions cannot grow to `asked` (at most
/// `max`), and what it could grow to.
fn increase_refusal(topic: &str, current: u32, asked: u32, max: u32) -> String {
    let why = if asked <= current {
        "partitions can only be added"
    } else {
        "that is over the limit"
    };
    let allowed = if current < max {
        format!("a new count is {} to {max}", current + 1)
    } else {
        format!("it has the most a topic may have, {max}")
    };
    format!(
        "topic {} has {current} partitions and {asked} were asked: {why} ({allowed})",
        quoted(topic)
    )
}

/// True if `e` says the disk (or the user's quota) is full: the storage
/// engine's and every edge's one test of it.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Most characters of a client's text an error message quotes.
pub const QUOTED_CHARS_MAX: usize = 64;

/// A client's text, quoted, cut to [`QUOTED_CHARS_MAX`] characters (with its
/// full size), so that an error never echoes a huge input back.
pub fn quoted(text: &str) -> String {
    let count = text.chars().count();
    if count <= QUOTED_CHARS_MAX {
        return format!("{text:?}");
    }
    let cut: String = text.chars().take(QUOTED_CHARS_MAX).collect();
    format!("{cut:?}… ({count} characters)")
}
