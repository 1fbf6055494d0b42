//! Growing a topic's partition count over gRPC (`Admin.CreatePartitions`):
//! the reply, every refusal's status, a consumer group that gets the new
//! partitions in the rebalance the growth starts and reads from them, and
//! the count kept across a restart. Every wait is bounded; none sleeps.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use carteiro::proto;
use carteiro_client::{Admin, ClientError, Consumer, ConsumerConfig, RebalanceEvent};
use common::*;
use tokio::sync::mpsc;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(60);

/// What the group member reports.
#[derive(Debug)]
enum Seen {
    /// Its partitions of the topic after a rebalance.
    Assigned(BTreeSet<u32>),
    /// A record it polled: partition and value.
    Record(u32, String),
}

/// Waits (bounded) for the first report `wanted` accepts.
async fn next_matching<T>(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    what: &str,
    mut wanted: impl FnMut(&Seen) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = seen.recv().await {
            if let Some(found) = wanted(&event) {
                return Some(found);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(found)) => found,
        Ok(None) => panic!("the member stopped before {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

fn broker_error(result: Result<proto::TopicDescription, ClientError>) -> (Code, String) {
    match result {
        Err(ClientError::Broker { code, message }) => (code, message),
        other => panic!("expected a broker error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grown_topic_is_served_and_its_group_gets_the_new_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "grow", 2, small_topic(1 << 20)).await;
    let mut client = broker.broker().await;
    produce_values(&mut client, "grow", &["before"])
        .await
        .expect("produce");

    // One group member, reporting its assignments and records.
    let (report, mut seen) = mpsc::unbounded_channel();
    let config = ConsumerConfig {
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        client_id: "member".into(),
        ..ConsumerConfig::new(&broker.address, Some("growers"))
    };
    let member = tokio::spawn(async move {
        let mut consumer = Consumer::new(config).expect("consumer");
        let events = report.clone();
        consumer.on_rebalance(move |event| {
            if let RebalanceEvent::Assigned { partitions, .. } = event {
                let _ = events.send(Seen::Assigned(
                    partitions.iter().map(|tp| tp.partition).collect(),
                ));
            }
        });
        consumer.subscribe(&["grow"]).await.expect("subscribe");
        loop {
            let records = consumer
                .poll(Duration::from_millis(200))
                .await
                .expect("poll");
            for r in records {
                let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                if report
                    .send(Seen::Record(r.partition, value.into()))
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    let first = next_matching(&mut seen, "the first assignment", |s| match s {
        Seen::Assigned(p) => Some(p.clone()),
        Seen::Record(..) => None,
    })
    .await;
    assert_eq!(first, BTreeSet::from([0, 1]));

    let mut admin = Admin::connect(&broker.address).expect("admin");
    // Refusals: each status and a message naming the counts.
    let (code, message) = broker_error(admin.create_partitions("grow", 2, false).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.contains("partitions") && message.contains("has 2 partitions"),
        "{message}"
    );
    let (code, message) = broker_error(admin.create_partitions("grow", 5000, false).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("1024"), "{message}");
    let (code, _) = broker_error(admin.create_partitions("nope", 3, false).await);
    assert_eq!(code, Code::NotFound);
    let (code, _) = broker_error(
        admin
            .create_partitions("__consumer_offsets", 3, false)
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    let checked = admin
        .create_partitions("grow", 3, true)
        .await
        .expect("valid");
    assert_eq!(checked.partitions, 2, "validate only changes nothing");

    let grown = admin
        .create_partitions("grow", 3, false)
        .await
        .expect("grows");
    assert_eq!(grown.name, "grow");
    assert_eq!(grown.partitions, 3);
    let ends: Vec<i64> = grown
        .partition_details
        .iter()
        .map(|p| p.end_offset)
        .collect();
    assert_eq!(ends, vec![1, 0, 0], "the old partitions keep their records");
    assert_eq!(
        grown.config, checked.config,
        "the config is the topic's, unchanged"
    );

    // The growth starts a rebalance: the member gets the new partition.
    let after = next_matching(
        &mut seen,
        "the assignment with the new partition",
        |s| match s {
            Seen::Assigned(p) if p.contains(&2) => Some(p.clone()),
            _ => None,
        },
    )
    .await;
    assert_eq!(after, BTreeSet::from([0, 1, 2]));
    client
        .produce(proto::ProduceRequest {
            topic: "grow".into(),
            partition: Some(2),
            records: vec![record(None, "in the new partition")],
            ..Default::default()
        })
        .await
        .expect("produce to partition 2");
    let polled = next_matching(&mut seen, "the record of partition 2", |s| match s {
        Seen::Record(2, value) => Some(value.clone()),
        _ => None,
    })
    .await;
    assert_eq!(polled, "in the new partition");
    member.abort();

    // The count and the records outlive a restart.
    broker.stop();
    let broker = Broker::start(dir.path(), &[]);
    let mut admin = Admin::connect(&broker.address).expect("admin");
    let described = admin.describe_topic("grow").await.expect("describe");
    assert_eq!(described.partitions, 3);
    let ends: Vec<i64> = described
        .partition_details
        .iter()
        .map(|p| p.end_offset)
        .collect();
    assert_eq!(ends, vec![1, 0, 1]);
}

/// A running `Producer` learns a grown topic's count once its layout is
/// older than `metadata_max_age`, and places keys over the new count.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_producer_places_keys_over_the_grown_count_after_its_metadata_age() {
    use carteiro_client::{Producer, ProducerConfig, ProducerRecord};
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "keys", 1, small_topic(1 << 20)).await;
    let producer = Producer::new(ProducerConfig {
        metadata_max_age: Duration::from_millis(1),
        linger: Duration::ZERO,
        ..ProducerConfig::new(&broker.address)
    })
    .expect("producer");
    // A key that Kafka's partitioner puts elsewhere than 0 over 8 partitions.
    let key = (0..)
        .map(|i| format!("customer-{i}"))
        .find(|k| carteiro::partitioner::partition_for_key(k.as_bytes(), 8) != 0)
        .expect("some key");
    let before = producer
        .send_and_wait("keys", ProducerRecord::keyed(key.clone(), "before"))
        .await
        .expect("delivered");
    assert_eq!(before.partition, 0);
    let mut admin = Admin::connect(&broker.address).expect("admin");
    admin
        .create_partitions("keys", 8, false)
        .await
        .expect("grown");
    let after = producer
        .send_and_wait("keys", ProducerRecord::keyed(key.clone(), "after"))
        .await
        .expect("delivered");
    assert_eq!(
        after.partition,
        carteiro::partitioner::partition_for_key(key.as_bytes(), 8),
        "the key follows Kafka's partitioner over the new count"
    );
    producer.close().await.expect("close");
}
