//! Per-log configuration, its limits and defaults.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::segment::LOG_HEADER_BYTES;

/// Default largest batch a log accepts, in bytes (1 MiB, Kafka's default).
pub const MAX_BATCH_BYTES_DEFAULT: u32 = 1024 * 1024;
/// Largest value `max_batch_bytes` may be set to, in bytes (64 MiB).
pub const MAX_BATCH_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// Default segment size, in bytes (1 GiB, Kafka's default).
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;
/// Disk space a segment file reserves at a time ahead of its writes, in
/// bytes (16 MiB, as Redpanda's fallocation step): a new segment takes one
/// step, not `segment_bytes`, and a reopened one takes none until written.
pub const SEGMENT_ALLOCATE_STEP_BYTES: u64 = 16 * 1024 * 1024;
/// Smallest segment size, in bytes: tests use small segments to roll often.
pub const SEGMENT_BYTES_MIN: u64 = 1024;
/// Largest segment size, in bytes: index entries hold 32-bit positions.
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;
/// Default age at which the active segment rolls, in ms (7 days).
pub const SEGMENT_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// Default bytes of log between two offset-index entries (4 KiB).
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// Largest `segment_ms`, in ms (one year).
pub const SEGMENT_MS_MAX: u64 = 365 * 24 * 60 * 60 * 1000;
/// Largest `retention_ms`, in ms (100 years; `None` keeps everything).
pub const RETENTION_MS_MAX: u64 = 100 * 365 * 24 * 60 * 60 * 1000;
/// Largest `retention_bytes`, in bytes (the largest signed 64-bit value,
/// what clients can send; `None` keeps everything).
pub const RETENTION_BYTES_MAX: u64 = i64::MAX as u64;
/// Longest `interval` flush policy, in ms (one minute): a durable produce
/// waits at most this long for its flush, holding its admission.
pub const FLUSH_INTERVAL_MS_MAX: u64 = 60 * 1000;
/// Default age past which closed segments are deleted, in ms (7 days).
pub const RETENTION_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// Default longest time between two recovery checkpoints while appending, in ms.
pub const CHECKPOINT_INTERVAL_MS_DEFAULT: u64 = 1000;

/// When appended bytes are synced to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlushPolicy {
    /// Every append is synced before it is acknowledged as durable;
    /// concurrent appends share one sync (group commit).
    Always,
    /// Synced at most this many milliseconds after the append.
    IntervalMs(u64),
    /// Left to the operating system; synced on roll and on close.
    Os,
}

/// The configuration of one partition log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Size at which the active segment rolls, in bytes (its file grows to it
    /// [`SEGMENT_ALLOCATE_STEP_BYTES`] at a time).
    pub segment_bytes: u64,
    /// Age at which a non-empty active segment rolls, in ms.
    pub segment_ms: u64,
    /// Largest batch accepted, in bytes.
    pub max_batch_bytes: u32,
    /// Bytes of log between two offset-index entries.
    pub index_interval_bytes: u32,
    /// Closed segments whose newest record is older than this are deleted, in ms; `None` keeps them.
    pub retention_ms: Option<u64>,
    /// Oldest closed segments are deleted while the log exceeds this, in bytes; `None` keeps them.
    pub retention_bytes: Option<u64>,
    /// When appends are synced.
    pub flush: FlushPolicy,
    /// Time between two recovery checkpoints while appending, in ms (in a
    /// store, the maintenance thread writes one within its period after it
    /// is due). Not a client's setting; `u64::MAX` means never.
    pub checkpoint_interval_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            max_batch_bytes: MAX_BATCH_BYTES_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            retention_ms: Some(RETENTION_MS_DEFAULT),
            retention_bytes: None,
            flush: FlushPolicy::Always,
            checkpoint_interval_ms: CHECKPOINT_INTERVAL_MS_DEFAULT,
        }
    }
}

/// A millisecond setting as a signed time span, saturating: `u64::MAX` means "never".
pub(crate) fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn in_range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::OutOfRange {
            field,
            value,
            min,
            max,
        });
    }
    Ok(())
}

impl LogConfig {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range(
            "segment_bytes",
            self.segment_bytes,
            SEGMENT_BYTES_MIN,
            SEGMENT_BYTES_MAX,
        )?;
        in_range("segment_ms", self.segment_ms, 1, SEGMENT_MS_MAX)?;
        // A batch must fit in an empty segment.
        let batch_max =
            (self.segment_bytes - LOG_HEADER_BYTES as u64).min(u64::from(MAX_BATCH_BYTES_MAX));
        in_range(
            "max_batch_bytes",
            u64::from(self.max_batch_bytes),
            61,
            batch_max,
        )?;
        in_range(
            "index_interval_bytes",
            u64::from(self.index_interval_bytes),
            0,
            self.segment_bytes,
        )?;
        if let Some(ms) = self.retention_ms {
            in_range("retention_ms", ms, 1, RETENTION_MS_MAX)?;
        }
        if let Some(bytes) = self.retention_bytes {
            in_range("retention_bytes", bytes, 1, RETENTION_BYTES_MAX)?;
        }
        if let FlushPolicy::IntervalMs(ms) = self.flush {
            in_range("flush interval_ms", ms, 1, FLUSH_INTERVAL_MS_MAX)?;
        }
        in_range(
            "checkpoint_interval_ms",
            self.checkpoint_interval_ms,
            1,
            u64::MAX,
        )?;
        Ok(())
    }

    /// This config with its time and retention settings cut to their
    /// maxima: a topic created before the maxima existed still opens.
    pub fn clamped(&self) -> LogConfig {
        LogConfig {
            segment_ms: self.segment_ms.min(SEGMENT_MS_MAX),
            retention_ms: self.retention_ms.map(|ms| ms.min(RETENTION_MS_MAX)),
            retention_bytes: self.retention_bytes.map(|b| b.min(RETENTION_BYTES_MAX)),
            flush: match self.flush {
                FlushPolicy::IntervalMs(ms) => {
                    FlushPolicy::IntervalMs(ms.min(FLUSH_INTERVAL_MS_MAX))
                }
                other => other,
            },
            ..self.clone()
        }
    }

    /// Capacity of a segment's offset index, in entries: one per
    /// `index_interval_bytes` of log, plus one per batch at worst.
    pub(crate) fn max_index_entries(&self) -> usize {
        let interval = u64::from(self.index_interval_bytes.max(61));
        (self.segment_bytes / interval + 2) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        LogConfig::default()
            .validate()
            .expect("defaults are within limits");
    }

    #[test]
    fn batch_larger_than_segment_is_rejected() {
        let config = LogConfig {
            segment_bytes: 4096,
            max_batch_bytes: 8192,
            ..LogConfig::default()
        };
        let err = config.validate().expect_err("batch cannot fit");
        assert!(err.to_string().contains("max_batch_bytes"), "{err}");
        assert!(err.to_string().contains("8192"), "{err}");
    }
}
