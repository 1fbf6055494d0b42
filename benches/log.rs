//! Criterion benchmarks of the storage engine on the real file system:
//! append throughput (100 B and 1 KiB records, batches of 1000, flush
//! policies `os` and `always`), sequential read (every batch copied out of
//! the file with its CRC checked), recovery scan speed, and the time to
//! recover a partition with 1 MiB written to a 1 GiB segment after a crash.
//!
//! `cargo bench --bench log` (set `CARTEIRO_BENCH_DIR` to choose the disk;
//! the default is the system temp directory).
//!
//! Run as a test (`cargo test --benches`), each benchmark runs once on small data.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::Duration;

use carteiro::record::{NewRecord, RecordBatch, RecordBatchBuilder};
use carteiro_storage::{Acks, CheckedBatch, FlushPolicy, Log, LogConfig, LogOptions};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const RECORDS_PER_BATCH: usize = 1000;

fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("CARTEIRO_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("bench directory")
}

fn batch(record_bytes: usize) -> Vec<u8> {
    let value = vec![0x42; record_bytes];
    let mut builder = RecordBatchBuilder::with_capacity(RECORDS_PER_BATCH * (record_bytes + 16));
    for i in 0..RECORDS_PER_BATCH {
        let record = NewRecord {
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(&value),
            headers: &[],
        };
        builder.append(&record).expect("fits");
    }
    builder.build().expect("non-empty")
}

fn config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        segment_bytes: if benchmarking() { 256 << 20 } else { 4 << 20 },
        retention_bytes: Some(if benchmarking() { 1 << 30 } else { 8 << 20 }),
        retention_ms: None,
        flush,
        ..LogConfig::default()
    }
}

fn append(c: &mut Criterion) {
    for record_bytes in [100usize, 1024] {
        let batch = batch(record_bytes);
        let mut group = c.benchmark_group(format!("append/{record_bytes}B x {RECORDS_PER_BATCH}"));
        group.throughput(Throughput::Bytes(batch.len() as u64));
        for (name, flush) in [("os", FlushPolicy::Os), ("always", FlushPolicy::Always)] {
            let dir = bench_dir();
            let log = Log::open(dir.path(), config(flush), &LogOptions::default()).expect("opens");
            let mut appended = 0u64;
            let bytes = bytes::Bytes::from(batch.clone());
            group.bench_function(name, |b| {
                b.iter(|| {
                    // Checked and appended, as the broker's produce path does.
                    let checked = CheckedBatch::new(black_box(bytes.clone())).expect("valid");
                    log.append_checked(&checked, Acks::Durable).expect("append");
                    appended += 1;
                    // Keep the disk bounded: drop old segments as Kafka's retention would.
                    if appended.is_multiple_of(256) {
                        log.apply_retention();
                    }
                })
            });
            log.close().expect("close");
        }
        group.finish();
    }
}

/// A log of about `bytes` of 1 KiB-record batches in one segment; the log is left open.
fn filled(dir: &tempfile::TempDir, bytes: usize, flush: FlushPolicy) -> Log {
    filled_in_segments(dir, bytes, flush, 1 << 30)
}

/// As [`filled`], in segments of `segment_bytes`.
fn filled_in_segments(
    dir: &tempfile::TempDir,
    bytes: usize,
    flush: FlushPolicy,
    segment_bytes: u64,
) -> Log {
    let batch = batch(1024);
    let config = LogConfig {
        retention_bytes: None,
        segment_bytes,
        ..config(flush)
    };
    let log = Log::open(dir.path(), config, &LogOptions::default()).expect("opens");
    for _ in 0..bytes.div_ceil(batch.len()) {
        log.append_unsynced(&batch).expect("append");
    }
    log.flush().expect("flush");
    log
}

/// Every batch of `log` from offset 0, 1 MiB at a time; returns the
/// records seen (`validate`: each batch parsed again) or the chunks read.
fn read_all(log: &Log, validate: bool) -> usize {
    let mut offset = 0;
    let mut seen = 0usize;
    loop {
        let read = log.read(offset, 1 << 20).expect("read");
        if read.batches.is_empty() {
            return seen;
        }
        if validate {
            let mut rest = &read.batches[..];
            while !rest.is_empty() {
                let (batch, tail) = RecordBatch::parse(rest).expect("valid");
                seen += batch.record_count() as usize;
                rest = tail;
            }
        } else {
            seen += read.batches.len();
        }
        offset = read.next_offset;
    }
}

fn read(c: &mut Criterion) {
    let bytes = if benchmarking() { 512 << 20 } else { 4 << 20 };
    let dir = bench_dir();
    let log = filled(&dir, bytes, FlushPolicy::Os);
    let total = log.stats().size_bytes;
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Bytes(total));
    group.sample_size(10);
    group.bench_function("sequential, CRC checked by the log", |b| {
        b.iter(|| black_box(read_all(&log, false)))
    });
    group.bench_function("sequential, parsed again by the reader", |b| {
        b.iter(|| black_box(read_all(&log, true)))
    });
    group.finish();
    log.close().expect("close");
    // Sealed segments are read through the process's cache of open sealed
    // files (256): 128 segments of 4 MiB, or 256 of 2 MiB, each with its
    // log and index files, so a pass opens files the last pass closed.
    for segment_mib in [4u64, 2] {
        let dir = bench_dir();
        let log = filled_in_segments(&dir, bytes, FlushPolicy::Os, segment_mib << 20);
        let mut group = c.benchmark_group("read");
        group.throughput(Throughput::Bytes(log.stats().size_bytes));
        group.sample_size(10);
        let name = format!("sequential over sealed {segment_mib} MiB segments");
        group.bench_function(name, |b| b.iter(|| black_box(read_all(&log, false))));
        group.finish();
        log.close().expect("close");
    }
}

fn recovery(c: &mut Criterion) {
    let bytes = if benchmarking() { 512 << 20 } else { 4 << 20 };
    let dir = bench_dir();
    let config = {
        let log = filled(&dir, bytes, FlushPolicy::Os);
        let config = log.config().clone();
        // Dropped without close: the next open scans and checks every batch.
        drop(log);
        config
    };
    let mut group = c.benchmark_group("recovery");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("unclean open, scan with CRC", |b| {
        b.iter_batched(
            || (),
            |()| {
                let log = Log::open(dir.path(), config.clone(), &LogOptions::default())
                    .expect("recovers");
                assert!(!log.recovery_report().clean_shutdown);
                log
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Recovery after a crash of a partition whose active 1 GiB segment holds
/// 1 MiB: what a restart costs does not depend on the segment size.
fn crash_recovery(c: &mut Criterion) {
    let dir = bench_dir();
    let config = LogConfig {
        segment_bytes: 1 << 30,
        ..config(FlushPolicy::Always)
    };
    let segment = dir.path().join(format!("{:020}.log", 0));
    {
        let log = Log::open(dir.path(), config.clone(), &LogOptions::default()).expect("opens");
        let batch = batch(1024);
        while log.stats().size_bytes < 1 << 20 {
            log.append(&batch).expect("append");
        }
        // Dropped without close: a crash.
    }
    let allocated = std::fs::metadata(&segment).expect("segment").len();
    let mut group = c.benchmark_group("recovery");
    group.sample_size(20);
    group.bench_function("after a crash, 1 MiB written to a 1 GiB segment", |b| {
        b.iter_batched(
            || {
                // The crash image: the segment file as far as it was
                // allocated (the unused end is zeros), no clean-shutdown marker.
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&segment)
                    .expect("segment");
                rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, allocated)
                    .expect("allocate as before the crash");
            },
            |()| {
                let log = Log::open(dir.path(), config.clone(), &LogOptions::default())
                    .expect("recovers");
                assert!(!log.recovery_report().clean_shutdown);
                assert!(log.recovery_report().scanned_bytes >= 1 << 20);
                log
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, append, read, recovery, crash_recovery);
criterion_main!(benches);
