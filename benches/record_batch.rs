//! Criterion benchmarks of the RecordBatch v2 codec: encoding 1000 records,
//! validating a batch (CRC and every record), and iterating its records.
//!
//! `cargo bench --bench record_batch`

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use carteiro::record::{NewRecord, RecordBatch, RecordBatchBuilder};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const RECORDS: usize = 1000;

fn encode(value: &[u8]) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::with_capacity(RECORDS * (value.len() + 16));
    for i in 0..RECORDS {
        let record = NewRecord {
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(value),
            headers: &[],
        };
        builder.append(&record).expect("fits");
    }
    builder.build().expect("non-empty")
}

fn codec(c: &mut Criterion) {
    for size in [100usize, 1024] {
        let value = vec![0x5a; size];
        let batch = encode(&value);
        let mut group = c.benchmark_group(format!("record_batch/{size}B x {RECORDS}"));
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function("encode", |b| b.iter(|| encode(black_box(&value))));
        group.bench_function("parse+validate", |b| {
            b.iter(|| {
                let batch = RecordBatch::parse_exact(black_box(&batch)).expect("valid");
                batch.validate().expect("valid");
            })
        });
        group.bench_function("iterate records", |b| {
            b.iter(|| {
                let batch = RecordBatch::parse_exact(black_box(&batch)).expect("valid");
                let mut total = 0usize;
                for record in batch.records().expect("uncompressed") {
                    total += record.expect("valid").value.map_or(0, <[u8]>::len);
                }
                total
            })
        });
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
