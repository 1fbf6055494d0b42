//! The Kafka listener on the wire, driven by hand-built requests: versions,
//! a produce and fetch round trip with the stored bytes, the long poll, and
//! hostile input that must leave the broker up and the log unchanged.

mod common;
#[path = "kafka/raw.rs"]
mod raw;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Broker;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, CreateTopicsRequest, FetchRequest, FetchResponse, MetadataRequest,
    ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use raw::{KafkaConnection, api_versions_v0, first_produce_error, raw_request};

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn create_topic(kafka: &mut KafkaConnection, name: &str, partitions: i32) {
    let request = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1),
        ])
        .with_timeout_ms(10_000);
    let reply = kafka.call(&request, 5);
    assert_eq!(reply.topics[0].error_code, 0, "{:?}", reply.topics[0]);
}

fn produce(topic: &str, partition: i32, batch: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch)),
                ]),
        ])
}

fn fetch(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

fn records_of(reply: &FetchResponse) -> Bytes {
    let partition = &reply.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0, "{partition:?}");
    partition.records.clone().unwrap_or_default()
}

/// Asserts that a stored batch is the produced one: every byte but the two
/// fields outside the CRC that the broker owns (base offset, bytes 0..8,
/// and partition leader epoch, bytes 12..16).
fn assert_same_batch(stored: &[u8], produced: &[u8], base_offset: i64) {
    assert_eq!(stored.len(), produced.len());
    assert_eq!(&stored[..8], &base_offset.to_be_bytes());
    assert_eq!(&stored[8..12], &produced[8..12], "batch length");
    assert_eq!(
        &stored[16..],
        &produced[16..],
        "magic, CRC and everything it covers"
    );
}

/// Every file of a partition's directory, by name, with its bytes.
fn partition_files(data_dir: &Path, topic: &str) -> Vec<(String, Vec<u8>)> {
    let dir = data_dir.join(format!("{topic}-0"));
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("partition directory")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            (path.display().to_string(), bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn api_versions_lists_the_ranges_and_a_too_new_request_gets_a_v0_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let mut kafka = KafkaConnection::open(&broker.kafka());
    let reply = kafka.call(&ApiVersionsRequest::default(), 3);
    assert_eq!(reply.error_code, 0);
    let range = |key: i16| {
        reply
            .api_keys
            .iter()
            .find(|k| k.api_key == key)
            .map(|k| (k.min_version, k.max_version))
    };
    assert_eq!(range(0), Some((0, 9)), "Produce, advertised from 0");
    assert_eq!(range(1), Some((4, 12)), "Fetch");
    assert_eq!(range(3), Some((0, 12)), "Metadata");
    assert_eq!(range(18), Some((0, 3)), "ApiVersions");
    assert_eq!(
        range(22),
        Some((0, 4)),
        "InitProducerId, for idempotent producers"
    );
    // KIP-511: a version newer than ours gets a v0 answer with error 35.
    kafka.send_frame(&raw_request(18, 9, 77, &[0]));
    let (correlation_id, error, count) = api_versions_v0(kafka.read_frame().expect("answered"));
    assert_eq!((correlation_id, error), (77, 35));
    assert_eq!(count, reply.api_keys.len());
}

#[test]
fn a_produced_batch_is_fetched_byte_for_byte_and_a_long_poll_waits_then_wakes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let address = broker.kafka();
    let mut kafka = KafkaConnection::open(&address);
    create_topic(&mut kafka, "events", 1);
    let batch = Bytes::from(common::batch_of(&["one", "two", "three"]));
    let reply = kafka.call(&produce("events", 0, batch.clone(), -1), 9);
    assert_eq!(first_produce_error(&reply), 0);
    assert_eq!(reply.responses[0].partition_responses[0].base_offset, 0);
    let stored = records_of(&kafka.call(&fetch("events", 0, 0), 12));
    assert_same_batch(&stored, &batch, 0);

    // An idle partition: the fetch returns empty after max_wait_ms.
    let started = Instant::now();
    let reply = kafka.call(&fetch("events", 3, 700), 12);
    assert!(records_of(&reply).is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "returned after {:?}, before max_wait_ms",
        started.elapsed()
    );

    // A produce during a long wait wakes it at once.
    let started = Instant::now();
    let waiting = kafka.send(&fetch("events", 3, 60_000), 12);
    std::thread::sleep(Duration::from_millis(300)); // let the fetch park
    let mut producer = KafkaConnection::open(&address);
    let reply = producer.call(
        &produce("events", 0, Bytes::from(common::batch_of(&["four"])), 1),
        9,
    );
    assert_eq!(first_produce_error(&reply), 0);
    let reply = kafka.receive::<FetchRequest>(12, waiting);
    assert!(!records_of(&reply).is_empty(), "woken with the new record");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the fetch waited {:?}: it was not woken by the produce",
        started.elapsed()
    );
}

#[test]
fn hostile_frames_close_the_connection_or_get_error_codes_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let address = broker.kafka();
    let mut kafka = KafkaConnection::open(&address);
    create_topic(&mut kafka, "safe", 1);
    let good = Bytes::from(common::batch_of(&["kept"]));
    assert_eq!(
        first_produce_error(&kafka.call(&produce("safe", 0, good, -1), 9)),
        0
    );
    let before = partition_files(dir.path(), "safe");

    // A length prefix of 2 GiB (negative as a signed length), and one just
    // under it: closed before anything is allocated.
    for prefix in [0x8000_0000u32, 0x7fff_ffff] {
        let mut hostile = KafkaConnection::open(&address);
        hostile.send_bytes(&prefix.to_be_bytes());
        assert!(hostile.is_closed_by_broker(), "prefix {prefix:#x}");
    }
    // A truncated frame: the client goes away mid-request.
    let mut truncated = KafkaConnection::open(&address);
    truncated.send_bytes(&100u32.to_be_bytes());
    truncated.send_bytes(&[0, 3, 0, 1, 0, 0]);
    truncated.finish_sending();
    assert!(truncated.is_closed_by_broker());
    // An unknown API key.
    let mut unknown = KafkaConnection::open(&address);
    unknown.send_frame(&raw_request(999, 0, 1, &[]));
    assert!(unknown.is_closed_by_broker());
    // A frame shorter than a request header.
    let mut short = KafkaConnection::open(&address);
    short.send_frame(&[0, 3]);
    assert!(short.is_closed_by_broker());
    // A 25-byte Metadata naming 2^31 - 1 topics (the codec would reserve
    // about 150 GB for them).
    let mut counted = KafkaConnection::open(&address);
    counted.send_frame(&raw_request(3, 1, 1, &0x7fff_ffffi32.to_be_bytes()));
    assert!(counted.is_closed_by_broker());

    // A batch with a bad CRC: CORRUPT_MESSAGE.
    let mut bad_crc = common::batch_of(&["damaged"]);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let reply = kafka.call(&produce("safe", 0, Bytes::from(bad_crc), -1), 9);
    assert_eq!(first_produce_error(&reply), 2, "CORRUPT_MESSAGE");
    // A negative partition: UNKNOWN_TOPIC_OR_PARTITION.
    let good = Bytes::from(common::batch_of(&["x"]));
    let reply = kafka.call(&produce("safe", -1, good, -1), 9);
    assert_eq!(first_produce_error(&reply), 3);
    // An absurd record count (the CRC recomputed so that only the count
    // is wrong): INVALID_RECORD.
    let mut absurd = common::batch_of(&["one record"]);
    absurd[57..61].copy_from_slice(&0x7fff_fff0i32.to_be_bytes());
    let crc = crc32c::crc32c(&absurd[21..]);
    absurd[17..21].copy_from_slice(&crc.to_be_bytes());
    let reply = kafka.call(&produce("safe", 0, Bytes::from(absurd), -1), 9);
    assert_eq!(first_produce_error(&reply), 87, "INVALID_RECORD");
    // Produce v0-2 are advertised and refused.
    let reply = {
        let mut body = Vec::new();
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&1000i32.to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        kafka.send_frame(&raw_request(0, 2, 500, &body));
        kafka.read_frame().expect("answered")
    };
    assert_eq!(&reply[..4], &500i32.to_be_bytes());

    // The broker is up, the connection that sent the refused batches still
    // works, and the log is byte-for-byte what it was.
    let metadata = kafka.call(&MetadataRequest::default().with_topics(None), 12);
    assert!(
        metadata
            .topics
            .iter()
            .any(|t| t.name == Some(topic_name("safe")))
    );
    let stored = records_of(&kafka.call(&fetch("safe", 0, 0), 12));
    assert_same_batch(&stored, &common::batch_of(&["kept"]), 0);
    assert_eq!(partition_files(dir.path(), "safe"), before);
    let mut fresh = KafkaConnection::open(&address);
    assert_eq!(fresh.call(&ApiVersionsRequest::default(), 3).error_code, 0);
}

#[test]
fn a_fetch_serves_the_first_batch_over_its_limit_and_answers_out_of_range_with_the_log_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let mut kafka = KafkaConnection::open(&broker.kafka());
    create_topic(&mut kafka, "wide", 1);
    let big_value = "x".repeat(64 * 1024);
    let batch = Bytes::from(common::batch_of(&[big_value.as_str(), "after"]));
    // acks=all: on a flush-always topic, visible once acknowledged.
    assert_eq!(
        first_produce_error(&kafka.call(&produce("wide", 0, batch.clone(), -1), 9)),
        0
    );
    // Limits far below the batch: the whole first batch still comes, so a
    // consumer always makes progress.
    let mut small = fetch("wide", 1, 0);
    small.max_bytes = 100;
    small.topics[0].partitions[0].partition_max_bytes = 100;
    let stored = records_of(&kafka.call(&small, 12));
    assert_same_batch(&stored, &batch, 0);
    // Past the end: OFFSET_OUT_OF_RANGE with the log's start offset.
    let reply = kafka.call(&fetch("wide", 50, 0), 12);
    let partition = &reply.responses[0].partitions[0];
    assert_eq!(
        partition.error_code, 1,
        "OFFSET_OUT_OF_RANGE: {partition:?}"
    );
    assert_eq!(partition.log_start_offset, 0);
    assert_eq!(partition.high_watermark, 2);
    // read_committed sees what read_uncommitted sees: no transactions.
    let mut committed = fetch("wide", 0, 0);
    committed.isolation_level = 1;
    let reply = kafka.call(&committed, 12);
    assert_eq!(reply.responses[0].partitions[0].last_stable_offset, 2);
    assert_same_batch(&records_of(&reply), &batch, 0);
}

#[test]
fn group_joins_ask_for_a_member_id_first_and_static_membership_is_refused() {
    use kafka_protocol::messages::JoinGroupRequest;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let mut kafka = KafkaConnection::open(&broker.kafka());
    let join = |member_id: &str| {
        JoinGroupRequest::default()
            .with_group_id(kafka_protocol::messages::GroupId(
                StrBytes::from_static_str("g"),
            ))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(Bytes::from_static(b"subscription")),
            ])
    };
    // KIP-394: the first join gets MEMBER_ID_REQUIRED and an id.
    let first = kafka.call(&join(""), 5);
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    assert!(!first.member_id.is_empty());
    let joined = kafka.call(&join(first.member_id.as_str()), 5);
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.member_id, first.member_id);
    assert_eq!(joined.leader, first.member_id, "the only member leads");
    assert_eq!(
        joined.members.len(),
        1,
        "the leader gets every subscription"
    );
    assert_eq!(
        joined.members[0].metadata,
        Bytes::from_static(b"subscription")
    );
    // v3 has no KIP-394 step: an id at once.
    let mut old = KafkaConnection::open(&broker.kafka());
    let v3 = old.call(
        &join("").with_group_id(kafka_protocol::messages::GroupId(
            StrBytes::from_static_str("h"),
        )),
        3,
    );
    assert_eq!(v3.error_code, 0);
    // Static membership: refused with its error code.
    let fixed = join("").with_group_instance_id(Some(StrBytes::from_static_str("pod-1")));
    assert_eq!(kafka.call(&fixed, 5).error_code, 35, "UNSUPPORTED_VERSION");
}

#[test]
fn init_producer_id_gives_ids_and_epochs_and_refuses_transactions() {
    use kafka_protocol::messages::{InitProducerIdRequest, ProducerId, TransactionalId};
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let mut kafka = KafkaConnection::open(&broker.kafka());
    let fresh = || {
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let first = kafka.call(&fresh(), 4);
    assert_eq!(first.error_code, 0);
    assert!(first.producer_id.0 >= 0);
    assert_eq!(first.producer_epoch, 0);
    let second = kafka.call(&fresh(), 1);
    assert_ne!(second.producer_id, first.producer_id, "a new id each time");
    // KIP-360: the same id, the next epoch.
    let bumped = kafka.call(
        &fresh()
            .with_producer_id(first.producer_id)
            .with_producer_epoch(first.producer_epoch),
        4,
    );
    assert_eq!(
        (bumped.producer_id, bumped.producer_epoch),
        (first.producer_id, 1)
    );
    let transactional =
        fresh().with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))));
    assert_eq!(
        kafka.call(&transactional, 4).error_code,
        53,
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"
    );
    // A produce with a transactional id appends nothing.
    let mut produce = produce("tx-topic", 0, Bytes::from(common::batch_of(&["t"])), -1);
    produce.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx")));
    assert_eq!(first_produce_error(&kafka.call(&produce, 9)), 53);
}

#[test]
fn with_auto_creation_off_a_missing_topic_is_unknown_and_the_listener_can_be_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &["--auto-create-topics", "false"]);
    let mut kafka = KafkaConnection::open(&broker.kafka());
    let metadata = kafka.call(
        &MetadataRequest::default()
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(topic_name("absent"))),
            ]))
            .with_allow_auto_topic_creation(true),
        12,
    );
    assert_eq!(
        metadata.topics[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    let reply = kafka.call(
        &produce("absent", 0, Bytes::from(common::batch_of(&["x"])), 1),
        9,
    );
    assert_eq!(first_produce_error(&reply), 3);
    assert!(!dir.path().join("absent-0").exists());
    drop(broker);

    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &["--kafka-listen", "off"]);
    assert_eq!(broker.kafka_address, None, "no Kafka listener");
}

#[test]
fn connections_past_the_limit_are_closed_and_the_others_served_in_parallel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &["--max-connections", "2"]);
    let address = broker.kafka();
    let mut first = KafkaConnection::open(&address);
    let mut second = KafkaConnection::open(&address);
    // Both are served, a long poll on one not holding up the other.
    create_topic(&mut first, "idle", 1);
    let waiting = first.send(&fetch("idle", 0, 2_000), 12);
    assert_eq!(second.call(&ApiVersionsRequest::default(), 3).error_code, 0);
    let mut third = KafkaConnection::open(&address);
    assert!(third.is_closed_by_broker(), "a third connection is refused");
    assert!(records_of(&first.receive::<FetchRequest>(12, waiting)).is_empty());
    drop(second);
    // A closed connection frees its place (accepted once the broker sees it go).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut again = KafkaConnection::open(&address);
        let id = again.send(&ApiVersionsRequest::default(), 3);
        if let Some(mut frame) = again.read_frame() {
            use bytes::Buf;
            assert_eq!(frame.get_i32(), id);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never given back"
        );
    }
}

#[test]
fn acks_0_produces_are_appended_in_order_and_a_failed_one_closes_only_its_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let address = broker.kafka();
    let mut kafka = KafkaConnection::open(&address);
    create_topic(&mut kafka, "quiet", 1);
    let first = Bytes::from(common::batch_of(&["first"]));
    let second = Bytes::from(common::batch_of(&["second"]));
    // acks=0 gets no reply; the acks=all produce after it lands after it.
    kafka.send(&produce("quiet", 0, first.clone(), 0), 9);
    let reply = kafka.call(&produce("quiet", 0, second.clone(), -1), 9);
    let partition = &reply.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.base_offset), (0, 1));
    // A refused batch with acks=all is answered and the connection goes on:
    // the next batch on it is appended (each produce stands alone).
    let mut bad_crc = common::batch_of(&["damaged"]);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let bad_crc = Bytes::from(bad_crc);
    let reply = kafka.call(&produce("quiet", 0, bad_crc.clone(), -1), 9);
    assert_eq!(first_produce_error(&reply), 2, "CORRUPT_MESSAGE");
    let third = Bytes::from(common::batch_of(&["third"]));
    let reply = kafka.call(&produce("quiet", 0, third.clone(), -1), 9);
    let partition = &reply.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.base_offset), (0, 2));
    // The same refusal with acks=0 has no reply to carry it: the broker
    // closes the connection, as Kafka does.
    kafka.send(&produce("quiet", 0, bad_crc, 0), 9);
    assert!(kafka.is_closed_by_broker());
    let mut other = KafkaConnection::open(&address);
    for (offset, batch) in [first, second, third].iter().enumerate() {
        let stored = records_of(&other.call(&fetch("quiet", offset as i64, 0), 12));
        let length = 12 + i32::from_be_bytes(stored[8..12].try_into().expect("4 bytes")) as usize;
        assert_same_batch(&stored[..length], batch, offset as i64);
    }
    let reply = other.call(&fetch("quiet", 3, 0), 12);
    assert_eq!(
        reply.responses[0].partitions[0].high_watermark, 3,
        "nothing after the third batch"
    );
}
