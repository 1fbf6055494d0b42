//! Idempotent producers on the wire, by hand-built batches: an
//! acknowledged batch sent again gets its original offsets and the log
//! holds one copy; a sequence gap and an older epoch are refused; all of it
//! again after a restart. Over Kafka and over gRPC.

mod common;
#[path = "kafka/raw.rs"]
mod raw;

use bytes::Bytes;
use carteiro::proto;
use carteiro::record::{NewRecord, ProducerStamp, RecordBatchBuilder};
use common::{Broker, fetch_all, record_values};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use raw::KafkaConnection;

/// A batch of `values` stamped as producer `id`, `epoch`, from `sequence`.
fn stamped(id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Bytes {
    let mut builder = RecordBatchBuilder::new().with_producer(ProducerStamp {
        producer_id: id,
        epoch,
        base_sequence: sequence,
    });
    for value in values {
        builder
            .append(&NewRecord {
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(value.as_bytes()),
                headers: &[],
            })
            .expect("fits");
    }
    Bytes::from(builder.build().expect("built"))
}

fn kafka_produce(topic: &str, batch: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch)),
                ]),
        ])
}

/// `(error code, base offset)` of a Kafka produce of `batch`.
fn kafka_send(kafka: &mut KafkaConnection, topic: &str, batch: Bytes) -> (i16, i64) {
    let reply = kafka.call(&kafka_produce(topic, batch), 9);
    let p = &reply.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A one-partition `topic`, a gRPC client, and a new producer's id and epoch.
async fn grpc_producer(
    broker: &Broker,
    topic: &str,
) -> (
    proto::broker_client::BrokerClient<tonic::transport::Channel>,
    i64,
    i16,
) {
    common::create_topic(broker, topic, 1, common::small_topic(1 << 20)).await;
    let mut client = broker.broker().await;
    let identity = client
        .init_producer_id(proto::InitProducerIdRequest::default())
        .await
        .expect("init")
        .into_inner();
    let epoch = i16::try_from(identity.producer_epoch).expect("an epoch");
    (client, identity.producer_id, epoch)
}

/// A gRPC produce of `batch` to partition 0 of `topic`.
fn grpc_produce(topic: &str, batch: Bytes) -> proto::ProduceRequest {
    proto::ProduceRequest {
        topic: topic.into(),
        partition: Some(0),
        record_batch: batch,
        ..Default::default()
    }
}

async fn values_of(broker: &Broker, topic: &str) -> Vec<String> {
    let mut client = broker.broker().await;
    record_values(&fetch_all(&mut client, topic, 0, 0).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn over_kafka_a_resent_batch_is_stored_once_and_gaps_and_old_epochs_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let kafka_address = broker.kafka();
    let mut kafka = KafkaConnection::open(&kafka_address);
    let init = kafka.call(
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
        4,
    );
    assert_eq!(init.error_code, 0);
    let (id, epoch) = (init.producer_id.0, init.producer_epoch);
    let first = stamped(id, epoch, 0, &["a", "b"]);
    let second = stamped(id, epoch, 2, &["c"]);
    assert_eq!(kafka_send(&mut kafka, "once", first.clone()), (0, 0));
    assert_eq!(kafka_send(&mut kafka, "once", second.clone()), (0, 2));
    // Sent again: the original offsets, nothing appended.
    assert_eq!(kafka_send(&mut kafka, "once", first.clone()), (0, 0));
    assert_eq!(kafka_send(&mut kafka, "once", second.clone()), (0, 2));
    // A gap: OUT_OF_ORDER_SEQUENCE_NUMBER.
    assert_eq!(
        kafka_send(&mut kafka, "once", stamped(id, epoch, 9, &["x"])).0,
        45
    );
    // The next epoch fences the old one: INVALID_PRODUCER_EPOCH.
    assert_eq!(
        kafka_send(&mut kafka, "once", stamped(id, epoch + 1, 0, &["d"])),
        (0, 3)
    );
    assert_eq!(
        kafka_send(&mut kafka, "once", stamped(id, epoch, 3, &["y"])).0,
        47
    );
    assert_eq!(values_of(&broker, "once").await, ["a", "b", "c", "d"]);

    // After a restart (SIGKILL: no clean shutdown), the same answers.
    let address = broker.address.clone();
    broker.kill();
    let broker = Broker::start_on(&address, dir.path(), &["--kafka-listen", &kafka_address]);
    let mut kafka = KafkaConnection::open(&kafka_address);
    assert_eq!(
        kafka_send(&mut kafka, "once", stamped(id, epoch + 1, 0, &["d"])),
        (0, 3)
    );
    assert_eq!(
        kafka_send(&mut kafka, "once", stamped(id, epoch, 3, &["y"])).0,
        47
    );
    assert_eq!(
        kafka_send(&mut kafka, "once", stamped(id, epoch + 1, 5, &["z"])).0,
        45
    );
    assert_eq!(
        kafka_send(&mut kafka, "once", stamped(id, epoch + 1, 1, &["e"])),
        (0, 4)
    );
    assert_eq!(values_of(&broker, "once").await, ["a", "b", "c", "d", "e"]);
    // A new producer id is never one given before the restart.
    let again = kafka.call(
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
        4,
    );
    assert!(
        again.producer_id.0 > id,
        "{} after {id}",
        again.producer_id.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn over_grpc_a_resent_batch_gets_its_original_offsets_and_is_marked_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let (mut client, id, epoch) = grpc_producer(&broker, "once").await;
    let produce = |batch| grpc_produce("once", batch);
    let batch = stamped(id, epoch, 0, &["a", "b"]);
    let first = client
        .produce(produce(batch.clone()))
        .await
        .expect("appended")
        .into_inner();
    assert!(!first.partitions[0].duplicate);
    let again = client
        .produce(produce(batch))
        .await
        .expect("answered")
        .into_inner();
    assert!(again.partitions[0].duplicate);
    assert_eq!(
        again.partitions[0].base_offset,
        first.partitions[0].base_offset
    );
    let gap = client
        .produce(produce(stamped(id, epoch, 7, &["x"])))
        .await
        .expect_err("a gap");
    assert_eq!(gap.code(), tonic::Code::FailedPrecondition, "{gap:?}");
    assert!(gap.message().contains("sequence"), "{}", gap.message());
    // The next epoch, from InitProducerId with the current identity.
    let bumped = client
        .init_producer_id(proto::InitProducerIdRequest {
            producer_id: Some(id),
            producer_epoch: Some(i32::from(epoch)),
        })
        .await
        .expect("bumped")
        .into_inner();
    assert_eq!(
        (bumped.producer_id, bumped.producer_epoch),
        (id, i32::from(epoch) + 1)
    );
    client
        .produce(produce(stamped(id, epoch + 1, 0, &["c"])))
        .await
        .expect("the new epoch starts at 0");
    let fenced = client
        .produce(produce(stamped(id, epoch, 2, &["y"])))
        .await
        .expect_err("fenced");
    assert_eq!(fenced.code(), tonic::Code::FailedPrecondition, "{fenced:?}");
    assert_eq!(values_of(&broker, "once").await, ["a", "b", "c"]);

    // After a SIGKILL and a restart: the same answers.
    let address = broker.address.clone();
    broker.kill();
    let broker = Broker::start_on(&address, dir.path(), &[]);
    let mut client = broker.broker().await;
    let again = client
        .produce(produce(stamped(id, epoch + 1, 0, &["c"])))
        .await
        .expect("answered")
        .into_inner();
    assert!(
        again.partitions[0].duplicate,
        "recognised after the restart"
    );
    assert_eq!(again.partitions[0].base_offset, 2);
    let fenced = client
        .produce(produce(stamped(id, epoch, 2, &["y"])))
        .await
        .expect_err("still fenced");
    assert_eq!(fenced.code(), tonic::Code::FailedPrecondition, "{fenced:?}");
    let gap = client
        .produce(produce(stamped(id, epoch + 1, 4, &["x"])))
        .await
        .expect_err("still a gap");
    assert!(gap.message().contains("sequence"), "{}", gap.message());
    assert_eq!(values_of(&broker, "once").await, ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_producer_expires_and_is_then_unknown_past_sequence_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(
        dir.path(),
        &[
            "--producer-id-expiration-ms",
            "300",
            "--retention-check-interval-ms",
            "100",
        ],
    );
    let (mut client, id, epoch) = grpc_producer(&broker, "idle").await;
    let produce = |batch| grpc_produce("idle", batch);
    client
        .produce(produce(stamped(id, epoch, 0, &["a", "b"])))
        .await
        .expect("appended");
    // A probe that changes nothing either way: sequence 5 is a gap while
    // the producer is known, and past 0 for one that expired. Each probe
    // is a round trip, which paces the loop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let expired = loop {
        let refused = client
            .produce(produce(stamped(id, epoch, 5, &["probe"])))
            .await
            .expect_err("never appended");
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{refused:?}"
        );
        if refused.message().contains("unknown producer") {
            break refused;
        }
        assert!(
            refused.message().contains("sequence"),
            "{}",
            refused.message()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the producer never expired: {}",
            refused.message()
        );
    };
    assert!(
        expired.message().contains(&id.to_string()),
        "{}",
        expired.message()
    );
    assert_eq!(
        values_of(&broker, "idle").await,
        ["a", "b"],
        "nothing stored changed"
    );
}
