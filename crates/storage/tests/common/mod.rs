//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use carteiro::record::{Compression, NewRecord, ProducerStamp, RecordBatch, RecordBatchBuilder};
use carteiro_storage::{
    Clock, FlushPolicy, Log, LogConfig, LogOptions, Medium, OpenError, SimulatedMedium,
};

/// A batch of `count` records whose values are `"{tag}-{i}"`, all at `timestamp`.
pub fn batch(tag: &str, count: usize, timestamp: i64) -> Vec<u8> {
    let values: Vec<String> = (0..count).map(|i| format!("{tag}-{i}")).collect();
    batch_of(
        &values
            .iter()
            .map(|v| (v.as_bytes(), timestamp))
            .collect::<Vec<_>>(),
    )
}

/// An idempotent producer's batch: producer `producer_id` in `epoch`, its
/// first record at sequence `sequence`, `count` records whose values are
/// `"{tag}-{i}"`, all at `timestamp`.
pub fn producer_batch(
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    tag: &str,
    count: usize,
    timestamp: i64,
) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new().with_producer(ProducerStamp {
        producer_id,
        epoch,
        base_sequence: sequence,
    });
    for i in 0..count {
        let value = format!("{tag}-{i}");
        builder
            .append(&NewRecord {
                timestamp,
                key: None,
                value: Some(value.as_bytes()),
                headers: &[],
            })
            .expect("small record");
    }
    builder.build().expect("non-empty")
}

/// A batch with one record per `(value, timestamp)`.
pub fn batch_of(records: &[(&[u8], i64)]) -> Vec<u8> {
    compressed_batch_of(Compression::None, records)
}

/// A batch with one record per `(value, timestamp)`, compressed with `codec`
/// (if that makes it smaller: give values that repeat).
pub fn compressed_batch_of(codec: Compression, records: &[(&[u8], i64)]) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new().with_compression(codec);
    for (value, timestamp) in records {
        builder
            .append(&NewRecord {
                timestamp: *timestamp,
                key: None,
                value: Some(value),
                headers: &[],
            })
            .expect("small record");
    }
    builder.build().expect("non-empty")
}

/// A small config that rolls often and indexes densely.
pub fn small_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        max_batch_bytes: (segment_bytes as u32 - 64).min(64 * 1024),
        index_interval_bytes: 256,
        retention_ms: None,
        checkpoint_interval_ms: u64::MAX,
        ..LogConfig::default()
    }
}

/// Options over a simulated medium.
pub fn sim_options(medium: &SimulatedMedium) -> LogOptions {
    LogOptions {
        medium: Arc::new(medium.clone()),
        ..LogOptions::default()
    }
}

/// Options over the real file system with `clock`.
pub fn os_options_with_clock(clock: Arc<dyn Clock>) -> LogOptions {
    LogOptions {
        clock,
        ..LogOptions::default()
    }
}

/// Calls `each` with every batch in the log, in order, read from the start.
pub fn for_each_batch(log: &Log, mut each: impl FnMut(&RecordBatch<'_>)) {
    let mut offset = log.start_offset();
    loop {
        let read = log.read(offset, 64 * 1024).expect("readable");
        if read.batches.is_empty() {
            return;
        }
        let mut rest = &read.batches[..];
        while !rest.is_empty() {
            let (batch, tail) = RecordBatch::parse(rest).expect("stored batches are valid");
            each(&batch);
            rest = tail;
        }
        offset = read.next_offset;
    }
}

/// Every record in the log as `(offset, value, timestamp)`, read batch by batch from the start.
pub fn all_records(log: &Log) -> Vec<(u64, Vec<u8>, i64)> {
    let mut out = Vec::new();
    for_each_batch(log, |batch| {
        for record in batch.records().expect("decodable").iter() {
            let record = record.expect("valid record");
            out.push((
                record.offset as u64,
                record.value.unwrap_or_default().to_vec(),
                record.timestamp,
            ));
        }
    });
    out
}

/// Values only.
pub fn all_values(log: &Log) -> Vec<Vec<u8>> {
    all_records(log).into_iter().map(|(_, v, _)| v).collect()
}

/// Values of the records of `batches`, in order.
pub fn values_of(batches: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for b in batches {
        let batch = RecordBatch::parse_exact(b).expect("valid");
        for record in batch.records().expect("decodable").iter() {
            out.push(record.expect("valid").value.unwrap_or_default().to_vec());
        }
    }
    out
}

/// The segment `.log` file of base offset `base` in `dir`.
pub fn segment_path(dir: &Path, base: u64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// Reads a whole file through a medium.
pub fn read_file(medium: &dyn Medium, path: &Path) -> Vec<u8> {
    medium.read_file(path).expect("readable").expect("exists")
}

/// Config with the given flush policy.
pub fn with_flush(mut config: LogConfig, flush: FlushPolicy) -> LogConfig {
    config.flush = flush;
    config
}

/// Store options with no maintenance thread (tests drive it themselves).
pub fn store_options() -> carteiro_storage::StoreOptions {
    carteiro_storage::StoreOptions {
        maintenance_interval_ms: None,
        ..carteiro_storage::StoreOptions::default()
    }
}

/// A topic of `partitions` partitions with 4 KiB segments.
pub fn small_topic(partitions: u32) -> carteiro_storage::TopicConfig {
    carteiro_storage::TopicConfig {
        partitions,
        log: small_config(4096),
    }
}

/// The file, byte and reason of a refusal to open for damaged data.
pub fn refusal(opened: Result<Log, OpenError>) -> (PathBuf, u64, String) {
    match opened {
        Err(OpenError::CorruptDurableData {
            file,
            position,
            reason,
        }) => (file, position, reason),
        other => panic!("expected CorruptDurableData, got {:?}", other.map(|_| ())),
    }
}

/// Flips one byte of a file, as a failing disk would.
pub fn damage(medium: &SimulatedMedium, path: &Path, at: usize) {
    let bytes = read_file(medium, path);
    medium
        .corrupt(path, at, &[bytes[at] ^ 0x5a])
        .expect("in the file");
}
