//! Conversions at the edge between the wire types and storage's types.

use bytes::Bytes;
use carteiro::proto;
use carteiro::record::{Header, NewRecord, RecordBatch, RecordBatchBuilder};
use carteiro_storage::{FlushPolicy, LOG_HEADER_BYTES, LogConfig};

use crate::error::BrokerError;

/// Encodes the easy path's records into one batch; timestamps of 0 become `now_ms`.
pub fn encode_records(records: &[&proto::Record], now_ms: i64) -> Result<Vec<u8>, BrokerError> {
    let mut builder = RecordBatchBuilder::new();
    for record in records {
        let headers: Vec<Header<'_>> = record
            .headers
            .iter()
            .map(|h| Header {
                key: h.key.as_bytes(),
                value: h.value.as_deref(),
            })
            .collect();
        let timestamp = if record.timestamp_ms == 0 {
            now_ms
        } else {
            record.timestamp_ms
        };
        let new = NewRecord {
            timestamp,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
        };
        builder
            .append(&new)
            .map_err(|e| BrokerError::invalid("records", e.to_string()))?;
    }
    builder
        .build()
        .map_err(|e| BrokerError::invalid("records", e.to_string()))
}

/// Decodes stored batches into records at or after `from_offset`.
pub fn decode_records(
    chunks: &[Bytes],
    from_offset: u64,
    out: &mut Vec<proto::Record>,
) -> Result<(), BrokerError> {
    for chunk in chunks {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let damaged = |offset: i64, e: &dyn std::fmt::Display| {
                BrokerError::DataLoss(format!("stored batch at offset {offset}: {e}"))
            };
            let (batch, tail) = RecordBatch::parse(rest).map_err(|e| damaged(-1, &e))?;
            let base = batch.base_offset();
            for record in batch.records().map_err(|e| damaged(base, &e))? {
                let record = record.map_err(|e| damaged(base, &e))?;
                if (record.offset as u64) < from_offset {
                    continue;
                }
                out.push(proto::Record {
                    key: record.key.map(|k| chunk.slice_ref(k)),
                    value: record.value.map(|v| chunk.slice_ref(v)),
                    headers: record
                        .headers
                        .iter()
                        .map(|h| proto::Header {
                            key: String::from_utf8_lossy(h.key).into_owned(),
                            value: h.value.map(|v| chunk.slice_ref(v)),
                        })
                        .collect(),
                    timestamp_ms: record.timestamp,
                    offset: record.offset,
                });
            }
            rest = tail;
        }
    }
    Ok(())
}

/// The key of the first record of an encoded batch, if it has one.
pub fn first_key(batch: &[u8]) -> Option<Vec<u8>> {
    let batch = RecordBatch::parse_exact(batch).ok()?;
    let first = batch.records().ok()?.next()?.ok()?;
    first.key.map(<[u8]>::to_vec)
}

fn non_negative(field: &'static str, value: Option<i64>) -> Result<Option<u64>, BrokerError> {
    match value {
        None | Some(-1) => Ok(None),
        Some(v) if v > 0 => Ok(Some(v as u64)),
        Some(v) => Err(BrokerError::invalid(
            field,
            format!("{v} is not allowed: use a positive value, or -1 for no limit"),
        )),
    }
}

/// A topic's log config from the wire, absent fields from `defaults`.
pub fn log_config(
    config: Option<&proto::TopicConfig>,
    defaults: &LogConfig,
) -> Result<LogConfig, BrokerError> {
    let Some(c) = config else {
        return Ok(defaults.clone());
    };
    let flush = match c.flush() {
        proto::FlushPolicy::Always => FlushPolicy::Always,
        proto::FlushPolicy::Os => FlushPolicy::Os,
        proto::FlushPolicy::Interval => match c.flush_interval_ms {
            Some(ms) => FlushPolicy::IntervalMs(ms),
            None => {
                return Err(BrokerError::invalid(
                    "config.flush_interval_ms",
                    "required with FLUSH_POLICY_INTERVAL",
                ));
            }
        },
    };
    let segment_bytes = c.segment_bytes.unwrap_or(defaults.segment_bytes);
    // Unless given, the batch limit shrinks to fit a small segment.
    let fits = segment_bytes
        .saturating_sub(LOG_HEADER_BYTES as u64)
        .min(u64::from(u32::MAX)) as u32;
    Ok(LogConfig {
        retention_ms: match c.retention_ms {
            None => defaults.retention_ms,
            v => non_negative("config.retention_ms", v)?,
        },
        retention_bytes: match c.retention_bytes {
            None => defaults.retention_bytes,
            v => non_negative("config.retention_bytes", v)?,
        },
        segment_bytes,
        segment_ms: c.segment_ms.unwrap_or(defaults.segment_ms),
        max_batch_bytes: c
            .max_batch_bytes
            .unwrap_or(defaults.max_batch_bytes.min(fits)),
        index_interval_bytes: defaults.index_interval_bytes.min(fits),
        flush,
        ..defaults.clone()
    })
}

/// The effective config of a topic, every field set.
pub fn topic_config(config: &LogConfig) -> proto::TopicConfig {
    let (flush, interval) = match config.flush {
        FlushPolicy::Always => (proto::FlushPolicy::Always, None),
        FlushPolicy::IntervalMs(ms) => (proto::FlushPolicy::Interval, Some(ms)),
        FlushPolicy::Os => (proto::FlushPolicy::Os, None),
    };
    let limit = |v: Option<u64>| Some(v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)));
    proto::TopicConfig {
        retention_ms: limit(config.retention_ms),
        retention_bytes: limit(config.retention_bytes),
        segment_bytes: Some(config.segment_bytes),
        segment_ms: Some(config.segment_ms),
        max_batch_bytes: Some(config.max_batch_bytes),
        flush: flush as i32,
        flush_interval_ms: interval,
    }
}
