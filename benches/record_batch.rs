//! Criterion benchmarks of the RecordBatch v2 codec: encoding 1000 records,
//! validating a batch (CRC and every record), and iterating its records;
//! then encoding and validating (decompressing) with each codec.
//!
//! `cargo bench --bench record_batch`

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use carteiro::record::{Compression, NewRecord, RecordBatch, RecordBatchBuilder};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const RECORDS: usize = 1000;

fn encode(value: &[u8]) -> Vec<u8> {
    encode_with(value, Compression::None)
}

fn encode_with(value: &[u8], codec: Compression) -> Vec<u8> {
    let mut builder =
        RecordBatchBuilder::with_capacity(RECORDS * (value.len() + 16)).with_compression(codec);
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
                for record in batch.records().expect("uncompressed").iter() {
                    total += record.expect("valid").value.map_or(0, <[u8]>::len);
                }
                total
            })
        });
        group.finish();
    }
}

fn compressed(c: &mut Criterion) {
    // Values of 1 KiB, a quarter of them repeating: compressible, not trivially.
    let value: Vec<u8> = (0..1024u32)
        .map(|i| (i % 256) as u8 ^ (i / 256) as u8)
        .collect();
    let plain = encode(&value);
    let mut group = c.benchmark_group(format!("record_batch/compressed 1KiB x {RECORDS}"));
    group.throughput(Throughput::Bytes(plain.len() as u64));
    for codec in &Compression::ALL[1..] {
        let batch = encode_with(&value, *codec);
        group.bench_function(format!("{} encode", codec.name()), |b| {
            b.iter(|| encode_with(black_box(&value), *codec))
        });
        group.bench_function(format!("{} parse+validate", codec.name()), |b| {
            b.iter(|| {
                let batch = RecordBatch::parse_exact(black_box(&batch)).expect("valid");
                batch.validate().expect("valid");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec, compressed);
criterion_main!(benches);
