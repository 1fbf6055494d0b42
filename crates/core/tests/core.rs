//! The broker core driven as an edge drives it, with no wire protocol:
//! topics, produce, fetch with long poll, list offsets, commits, and a
//! guard that the core depends on no gRPC crate.

mod common;

use std::time::Duration;

use bytes::Bytes;
use carteiro::record::RecordBatch;
use carteiro_core::fetch::{FetchPartition, FetchRequest, OffsetSpec};
use carteiro_core::groups::OffsetCommit;
use carteiro_core::produce::{Payload, ProduceRequest, ProducedRecord};
use carteiro_core::{Acks, BrokerError};
use common::*;

fn fetch_one(topic: &str, partition: u32, offset: i64, wait_ms: u32) -> FetchRequest {
    FetchRequest {
        partitions: vec![FetchPartition {
            topic: topic.into(),
            partition,
            offset,
            max_bytes: 0,
        }],
        max_bytes: 0,
        min_bytes: 1,
        max_wait_ms: wait_ms,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_is_woken_by_the_produce_that_makes_records_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("events", 1, &settings())
        .await
        .expect("create");
    let waiting = {
        let broker = broker.clone();
        tokio::spawn(async move { broker.fetch(fetch_one("events", 0, 0, 30_000)).await })
    };
    let landed = broker
        .produce(ProduceRequest {
            topic: "events".into(),
            partition: None,
            payload: Payload::Records(vec![ProducedRecord {
                value: Some(Bytes::from_static(b"hello")),
                ..ProducedRecord::default()
            }]),
            acks: Acks::Durable,
        })
        .await
        .expect("produce");
    assert_eq!(landed[0].base_offset, 0);
    let fetched = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("woken, not timed out")
        .expect("task")
        .expect("fetch");
    let part = &fetched.partitions[0];
    assert!(part.error.is_none());
    assert_eq!(part.next_offset, 1);
    let (batch, _) = RecordBatch::parse(&part.batches[0]).expect("a stored batch");
    let records = batch.records().expect("records");
    let record = records.iter().next().expect("one").expect("valid");
    assert_eq!(record.value, Some(&b"hello"[..]));
    assert!(
        record.timestamp > 0,
        "a zero timestamp takes the append time"
    );
    assert_eq!(
        broker
            .list_offset("events", 0, OffsetSpec::Latest)
            .expect("latest"),
        1
    );
    assert_eq!(
        broker
            .list_offset("events", 0, OffsetSpec::Earliest)
            .expect("earliest"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn commits_are_durable_and_internal_topics_are_the_brokers_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let broker = open(dir.path());
        broker
            .create_topic("events", 2, &settings())
            .await
            .expect("create");
        broker
            .commit_offsets(
                "billing",
                "",
                0,
                vec![OffsetCommit {
                    topic: "events".into(),
                    partition: 1,
                    offset: 7,
                    metadata: "seen".into(),
                }],
            )
            .await
            .expect("commit");
        let refused = broker
            .produce(ProduceRequest {
                topic: "__consumer_offsets".into(),
                partition: None,
                payload: Payload::Batch(keyed_batch(&["k"])),
                acks: Acks::Durable,
            })
            .await
            .expect_err("internal topic");
        assert!(
            matches!(refused, BrokerError::InvalidArgument { field: "topic", .. }),
            "{refused}"
        );
        broker.shut_down();
        broker.close().expect("close");
    }
    let broker = open(dir.path());
    let committed = broker
        .committed_offset("billing", "events", 1)
        .expect("kept");
    assert_eq!((committed.offset, committed.metadata.as_str()), (7, "seen"));
    let described = broker.describe_group("billing").expect("described");
    assert_eq!(
        described.partitions[0].lag, 0,
        "an empty partition has nothing to lag"
    );
}

#[test]
fn the_core_holds_no_grpc() {
    let manifest = include_str!("../Cargo.toml");
    for wire in ["tonic", "prost", "h2", "hyper"] {
        assert!(
            !manifest.lines().any(|l| l.trim_start().starts_with(wire)),
            "carteiro-core depends on {wire}"
        );
    }
    assert!(
        manifest.contains("carteiro.workspace = true"),
        "the contract crate without its grpc feature"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_partly_in_memory_and_partly_on_file_counts_each_record_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("mixed", 2, &settings())
        .await
        .expect("create");
    let produce = |partition: u32, value: Vec<u8>| ProduceRequest {
        topic: "mixed".into(),
        partition: Some(partition),
        payload: Payload::Records(vec![ProducedRecord {
            value: Some(Bytes::from(value)),
            ..ProducedRecord::default()
        }]),
        acks: Acks::Durable,
    };
    // Partition 0 is answered from the tail cache; partition 1 only from
    // its file (its batch is too large for the cache).
    broker
        .produce(produce(0, b"small".to_vec()))
        .await
        .expect("produce");
    broker
        .produce(produce(
            1,
            vec![b'x'; carteiro_storage::TAIL_BATCH_BYTES_MAX + 1],
        ))
        .await
        .expect("produce");
    let request = FetchRequest {
        partitions: (0..2)
            .map(|partition| FetchPartition {
                topic: "mixed".into(),
                partition,
                offset: 0,
                max_bytes: 0,
            })
            .collect(),
        max_bytes: 0,
        min_bytes: 1,
        max_wait_ms: 0,
    };
    let fetched = broker.fetch(request).await.expect("fetch");
    assert!(fetched.partitions.iter().all(|p| !p.batches.is_empty()));
    let topic = broker.store().topic("mixed").expect("topic");
    for (partition, log) in topic.partitions().iter().enumerate() {
        let traffic = log.traffic().snapshot();
        assert_eq!(traffic.fetched_records, 1, "partition {partition}");
        let served: usize = fetched.partitions[partition]
            .batches
            .iter()
            .map(|b| b.len())
            .sum();
        assert_eq!(
            traffic.fetched_bytes, served as u64,
            "partition {partition}"
        );
    }
}
