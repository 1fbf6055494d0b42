//! Growing a topic's partition count through the core: refusals, validate
//! only, records in the new partitions, keys spread over the new count by
//! Kafka's partitioner, and an assigned group rebalancing onto them.

mod common;

use std::time::Duration;

use bytes::Bytes;
use carteiro::partitioner::partition_for_key;
use carteiro_core::BrokerError;
use carteiro_core::assignment::Strategy;
use carteiro_core::coordinator::{HeartbeatStatus, JoinOutcome, JoinRequest, Subscription};
use carteiro_core::produce::{Payload, ProduceRequest, ProducedRecord};
use carteiro_core::{Acks, INTERNAL_TOPIC_PREFIX};
use carteiro_storage::store::PARTITIONS_MAX;
use common::*;

fn keyed(topic: &str, key: &str) -> ProduceRequest {
    ProduceRequest {
        topic: topic.into(),
        partition: None,
        payload: Payload::Records(vec![ProducedRecord {
            key: Some(Bytes::from(key.to_string())),
            value: Some(Bytes::from_static(b"v")),
            ..ProducedRecord::default()
        }]),
        acks: Acks::Durable,
    }
}

fn refused_field(result: Result<impl std::fmt::Debug, BrokerError>) -> (&'static str, String) {
    match result {
        Err(BrokerError::InvalidArgument { field, message }) => (field, message),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_grows_and_keys_follow_the_partitioner_over_the_new_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("grow", 2, &settings())
        .await
        .expect("create");
    broker.produce(keyed("grow", "k")).await.expect("produce");

    // Refusals name the topic, the current count and the asked one.
    for asked in [1, 2, PARTITIONS_MAX + 1] {
        let (field, message) = refused_field(broker.create_partitions("grow", asked, false).await);
        assert_eq!(field, "partitions");
        for part in [
            "\"grow\"",
            "has 2 partitions",
            &format!("{asked} were asked"),
        ] {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
        assert!(message.contains(&PARTITIONS_MAX.to_string()), "{message}");
    }
    assert!(matches!(
        broker.create_partitions("nope", 3, false).await,
        Err(BrokerError::Store(
            carteiro_storage::StoreError::UnknownTopic { .. }
        ))
    ));
    let internal = format!("{INTERNAL_TOPIC_PREFIX}consumer_offsets");
    let (field, _) = refused_field(broker.create_partitions(&internal, 5, false).await);
    assert_eq!(field, "name");

    // Validate only: checked, nothing changed.
    let checked = broker
        .create_partitions("grow", 4, true)
        .await
        .expect("valid");
    assert_eq!(checked.partitions.len(), 2);
    assert_eq!(
        broker
            .describe_topic("grow")
            .expect("topic")
            .partitions
            .len(),
        2
    );
    let (field, _) = refused_field(broker.create_partitions("grow", 2, true).await);
    assert_eq!(field, "partitions");

    let grown = broker
        .create_partitions("grow", 4, false)
        .await
        .expect("grows");
    assert_eq!(grown.partitions.len(), 4);
    assert_eq!(
        grown.partitions.iter().map(|p| p.end_offset).sum::<u64>(),
        1,
        "the record produced before is still there"
    );
    assert_eq!(broker.list_topics(), vec![("grow".to_string(), 4)]);

    // A record sent to a new partition lands there.
    let landed = broker
        .produce(ProduceRequest {
            partition: Some(3),
            ..keyed("grow", "anything")
        })
        .await
        .expect("produce to partition 3");
    assert_eq!((landed[0].partition, landed[0].base_offset), (3, 0));

    // A key whose partition moved with the count goes where Kafka's
    // partitioner puts it over 4 partitions.
    let key = (0..1000)
        .map(|i| format!("key-{i}"))
        .find(|k| partition_for_key(k.as_bytes(), 4) >= 2)
        .expect("some key hashes to a new partition");
    let landed = broker.produce(keyed("grow", &key)).await.expect("produce");
    assert_eq!(landed[0].partition, partition_for_key(key.as_bytes(), 4));
    assert!(landed[0].partition >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assigned_group_rebalances_onto_the_new_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open(dir.path());
    broker
        .create_topic("grow", 2, &settings())
        .await
        .expect("create");
    let request = JoinRequest {
        group: "g".into(),
        member_id: None,
        client_id: "test".into(),
        session_timeout_ms: 30_000,
        rebalance_timeout_ms: 30_000,
        subscription: Subscription::Assigned {
            topics: vec!["grow".into()],
            strategy: Strategy::Range,
        },
    };
    let joined = broker.join_group(request.clone()).await.expect("joins");
    let partitions = |outcome: &JoinOutcome| match outcome {
        JoinOutcome::Assigned(partitions) => {
            let mut numbers: Vec<u32> = partitions.iter().map(|(_, p)| *p).collect();
            numbers.sort_unstable();
            numbers
        }
        other => panic!("an assigned group, got {other:?}"),
    };
    assert_eq!(partitions(&joined.outcome), vec![0, 1]);
    assert_eq!(
        broker.heartbeat("g", &joined.member_id, joined.generation),
        HeartbeatStatus::Ok
    );

    broker
        .create_partitions("grow", 3, false)
        .await
        .expect("grows");
    assert_eq!(
        broker.heartbeat("g", &joined.member_id, joined.generation),
        HeartbeatStatus::Rebalance,
        "the growth starts a rebalance"
    );
    let rejoined = tokio::time::timeout(
        Duration::from_secs(20),
        broker.join_group(JoinRequest {
            member_id: Some(joined.member_id.clone()),
            ..request
        }),
    )
    .await
    .expect("the rebalance completes")
    .expect("joins again");
    assert!(rejoined.generation > joined.generation);
    assert_eq!(partitions(&rejoined.outcome), vec![0, 1, 2]);
}
