//! A produced batch is parsed and CRC-checked once on its way to the log,
//! even when its first key picks the partition. Alone in its test binary:
//! the count of checks is process-wide.

use std::sync::Arc;

use bytes::Bytes;
use carteiro::record::{NewRecord, RecordBatchBuilder};
use carteiro_core::produce::{Payload, ProduceRequest};
use carteiro_core::topics::TopicSettings;
use carteiro_core::{Acks, Broker, BrokerOptions};
use carteiro_storage::batches_checked;

fn open(dir: &std::path::Path) -> Arc<Broker> {
    Broker::open(&BrokerOptions {
        data_dir: dir.to_path_buf(),
        repair: false,
        retention_check_interval_ms: 60_000,
    })
    .expect("opens")
}

fn keyed_batch(keys: &[&str]) -> Bytes {
    let mut builder = RecordBatchBuilder::new();
    for key in keys {
        builder
            .append(&NewRecord {
                timestamp: 1_700_000_000_000,
                key: Some(key.as_bytes()),
                value: Some(b"v"),
                headers: &[],
            })
            .expect("fits");
    }
    Bytes::from(builder.build().expect("non-empty"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_produced_batch_is_checked_once_on_its_way_to_the_log_even_when_its_key_picks_the_partition()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic(
            "orders",
            3,
            &TopicSettings {
                segment_bytes: Some(1 << 20),
                ..TopicSettings::default()
            },
        )
        .await
        .expect("create");
    for (acks, partition) in [
        (Acks::Durable, None),
        (Acks::Appended, None),
        (Acks::Durable, Some(2)),
    ] {
        let before = batches_checked();
        let landed = broker
            .produce(ProduceRequest {
                topic: "orders".into(),
                partition,
                payload: Payload::Batch(keyed_batch(&["alice", "bob"])),
                acks,
            })
            .await
            .expect("produce");
        assert_eq!(
            batches_checked() - before,
            1,
            "{acks:?}, partition {partition:?}: parsed and CRC-checked once"
        );
        assert_eq!(landed.len(), 1);
        assert_eq!(landed[0].record_count, 2);
        let expected = partition.unwrap_or(carteiro::partitioner::partition_for_key(b"alice", 3));
        assert_eq!(
            landed[0].partition, expected,
            "the first key picks the partition"
        );
    }
}
