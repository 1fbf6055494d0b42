//! Criterion benchmarks of the broker in process, through gRPC over
//! loopback: produce (a pre-encoded batch of 1000 records, DURABLE, so each
//! iteration includes the sync), the same pipelined four at a time on a
//! ProduceStream, and fetch (1 MiB of raw batches from a filled partition).
//!
//! `cargo bench --bench grpc` (data in the temp directory, or `CARTEIRO_BENCH_DIR`).

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::time::Duration;

use bytes::Bytes;
use carteiro::proto::{self, admin_client::AdminClient, broker_client::BrokerClient};
use carteiro::record::{NewRecord, RecordBatchBuilder};
use carteiro_server::{BrokerConfig, open_broker, serve};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tonic::transport::Channel;

fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn batch(record_bytes: usize) -> Bytes {
    let value = vec![0x42; record_bytes];
    let mut builder = RecordBatchBuilder::with_capacity(1000 * (record_bytes + 16));
    for i in 0..1000 {
        let record = NewRecord {
            timestamp: 1_700_000_000_000 + i,
            key: None,
            value: Some(&value),
            headers: &[],
        };
        builder.append(&record).expect("fits");
    }
    Bytes::from(builder.build().expect("non-empty"))
}

struct Running {
    runtime: tokio::runtime::Runtime,
    client: BrokerClient<Channel>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

fn start() -> Running {
    let dir = match std::env::var_os("CARTEIRO_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    }
    .expect("bench directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        ..BrokerConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let broker = open_broker(&config).await.expect("broker");
        tokio::spawn(serve(config, listener, None, broker, async move {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{address}"))
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut admin = AdminClient::new(channel.clone());
        let segment = if benchmarking() { 1 << 30 } else { 16 << 20 };
        let config = proto::TopicConfig {
            segment_bytes: Some(segment),
            retention_bytes: Some(2 << 30),
            ..Default::default()
        };
        admin
            .create_topic(proto::CreateTopicRequest {
                name: "bench".into(),
                partitions: 1,
                config: Some(config),
            })
            .await
            .expect("create topic");
        BrokerClient::new(channel)
            .max_decoding_message_size(80 << 20)
            .max_encoding_message_size(80 << 20)
    });
    Running {
        runtime,
        client,
        stop: Some(stop),
        _dir: dir,
    }
}

fn produce_request(batch: &Bytes) -> proto::ProduceRequest {
    proto::ProduceRequest {
        topic: "bench".into(),
        partition: Some(0),
        record_batch: batch.clone(),
        ..Default::default()
    }
}

fn grpc(c: &mut Criterion) {
    let mut running = start();
    let mut group = c.benchmark_group("grpc loopback");
    for record_bytes in [100usize, 1024] {
        let batch = batch(record_bytes);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(format!("produce {record_bytes}B x 1000, durable"), |b| {
            b.iter(|| {
                let mut client = running.client.clone();
                running
                    .runtime
                    .block_on(client.produce(produce_request(&batch)))
                    .expect("produce");
            })
        });
    }
    // Pipelined: PIPELINE requests out at once on one ProduceStream, each
    // iteration sending them and waiting for their acknowledgements.
    const PIPELINE: usize = 4;
    let batch = batch(100);
    let (requests, outgoing) = tokio::sync::mpsc::channel(PIPELINE);
    let mut replies = {
        let mut client = running.client.clone();
        running
            .runtime
            .block_on(client.produce_stream(tokio_stream::wrappers::ReceiverStream::new(outgoing)))
            .expect("open stream")
            .into_inner()
    };
    group.throughput(Throughput::Bytes((PIPELINE * batch.len()) as u64));
    group.bench_function(
        format!("produce stream 100B x 1000, {PIPELINE} pipelined, durable"),
        |b| {
            b.iter(|| {
                running.runtime.block_on(async {
                    for _ in 0..PIPELINE {
                        requests
                            .send(produce_request(&batch))
                            .await
                            .expect("stream open");
                    }
                    for _ in 0..PIPELINE {
                        let reply = replies.message().await.expect("reply").expect("open");
                        assert_eq!(reply.error_code, 0, "{}", reply.error_message);
                    }
                })
            })
        },
    );
    drop(requests);
    // Fetch 1 MiB from the start of what the produce benchmarks wrote.
    group.throughput(Throughput::Bytes(1 << 20));
    group.measurement_time(Duration::from_secs(if benchmarking() { 5 } else { 1 }));
    group.bench_function("fetch 1 MiB raw", |b| {
        b.iter(|| {
            let mut client = running.client.clone();
            let request = proto::FetchRequest {
                partitions: vec![proto::FetchPartition {
                    topic: "bench".into(),
                    partition: 0,
                    offset: 0,
                    max_bytes: 1 << 20,
                }],
                ..Default::default()
            };
            let reply = running
                .runtime
                .block_on(client.fetch(request))
                .expect("fetch")
                .into_inner();
            assert!(!reply.partitions[0].record_batches.is_empty());
        })
    });
    group.finish();
    if let Some(stop) = running.stop.take() {
        let _ = stop.send(());
    }
}

criterion_group!(benches, grpc);
criterion_main!(benches);
