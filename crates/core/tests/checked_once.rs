//! A produced batch is parsed and CRC-checked once on its way to the log,
//! even when its first key picks the partition. Alone in its test binary:
//! the count of checks is process-wide.

mod common;

use carteiro_core::Acks;
use carteiro_core::produce::{Payload, ProduceRequest};
use carteiro_storage::batches_checked;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_produced_batch_is_checked_once_on_its_way_to_the_log_even_when_its_key_picks_the_partition()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("orders", 3, &settings())
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
