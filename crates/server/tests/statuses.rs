//! Clear to every client: unknown enum values, unsupported batch
//! attributes, header keys that are not strings and huge inputs each get
//! INVALID_ARGUMENT with a bounded message naming the field and the value;
//! and a fetch never reports a high watermark below the records it returns.

mod common;

use carteiro::proto;
use carteiro::record::{ATTRIBUTES_AT, CRC_AT};
use common::*;
use tonic::Code;

fn refused<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    needles: &[&str],
) -> tonic::Status {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "{needle:?} not in {status:?}"
        );
    }
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_enum_values_are_refused_naming_the_field_and_the_choices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "events", 1, small_topic(1 << 20)).await;
    let mut client = broker.broker().await;
    refused(
        client
            .produce(proto::ProduceRequest {
                topic: "events".into(),
                records: vec![record(None, "v")],
                acks: 7,
                ..Default::default()
            })
            .await,
        &["acks", "7 is not one of", "ACKS_DURABLE"],
    );
    refused(
        client
            .fetch(proto::FetchRequest {
                format: 9,
                ..fetch_one("events", 0, 0)
            })
            .await,
        &["format", "9 is not one of"],
    );
    refused(
        broker
            .admin()
            .await
            .create_topic(proto::CreateTopicRequest {
                name: "odd".into(),
                partitions: 1,
                config: Some(proto::TopicConfig {
                    flush: 99,
                    ..Default::default()
                }),
            })
            .await,
        &["config.flush", "99 is not one of"],
    );
    refused(
        carteiro::proto::groups_client::GroupsClient::connect(broker.url())
            .await
            .expect("connect")
            .join_group(proto::JoinGroupRequest {
                group: "g".into(),
                topics: vec!["events".into()],
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                strategy: 5,
                ..Default::default()
            })
            .await,
        &["strategy", "5 is not one of"],
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn transactional_batches_and_header_keys_that_are_not_strings_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "events", 1, small_topic(1 << 20)).await;
    let mut client = broker.broker().await;
    let mut transactional = batch_of(&["v"]);
    transactional[ATTRIBUTES_AT + 1] |= 0x10;
    let crc = crc32c::crc32c(&transactional[ATTRIBUTES_AT..]);
    transactional[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    refused(
        client
            .produce(proto::ProduceRequest {
                topic: "events".into(),
                record_batch: transactional.into(),
                ..Default::default()
            })
            .await,
        &[
            "record_batch",
            "transactional and control batches are not supported",
        ],
    );
    let mut headered = carteiro::record::RecordBatchBuilder::new();
    headered
        .append(&carteiro::record::NewRecord {
            timestamp: 1,
            key: None,
            value: Some(b"v"),
            headers: &[carteiro::record::Header {
                key: b"ok",
                value: None,
            }],
        })
        .expect("fits");
    let mut headered = headered.build().expect("batch");
    let at = headered.windows(2).rposition(|w| w == b"ok").expect("key");
    headered[at..at + 2].copy_from_slice(&[0xff, 0xfe]);
    let crc = crc32c::crc32c(&headered[ATTRIBUTES_AT..]);
    headered[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    refused(
        client
            .produce(proto::ProduceRequest {
                topic: "events".into(),
                record_batch: headered.into(),
                ..Default::default()
            })
            .await,
        &["header key is not UTF-8"],
    );
    assert!(
        fetch_all(&mut client, "events", 0, 0).await.is_empty(),
        "nothing stored"
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_name_is_quoted_cut_short_in_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let name = "n".repeat(100_000);
    let status = refused(
        broker
            .admin()
            .await
            .create_topic(proto::CreateTopicRequest {
                name: name.clone(),
                partitions: 1,
                config: None,
            })
            .await,
        &["name", "100000 characters"],
    );
    assert!(
        status.message().len() < 400,
        "{} bytes of message",
        status.message().len()
    );
    let mut client = broker.broker().await;
    let status = client
        .produce(proto::ProduceRequest {
            topic: name,
            records: vec![record(None, "v")],
            ..Default::default()
        })
        .await
        .expect_err("unknown topic");
    assert!(
        status.message().len() < 400,
        "{} bytes of message",
        status.message().len()
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_never_returns_records_past_the_high_watermark_it_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "busy", 1, small_topic(1 << 20)).await;
    let producing = {
        let mut producer = broker.broker().await;
        tokio::spawn(async move {
            for i in 0..2000 {
                producer
                    .produce(proto::ProduceRequest {
                        topic: "busy".into(),
                        partition: Some(0),
                        records: vec![record(None, &format!("r{i}"))],
                        // Appended: the sync that makes it visible comes later.
                        acks: proto::Acks::Appended as i32,
                        ..Default::default()
                    })
                    .await
                    .expect("produce");
            }
        })
    };
    let mut client = broker.broker().await;
    let mut checked = 0;
    while !producing.is_finished() || checked < 100 {
        let reply = client
            .fetch(fetch_one("busy", 0, 0))
            .await
            .expect("fetch")
            .into_inner();
        let part = &reply.partitions[0];
        assert!(
            part.next_offset <= part.high_watermark,
            "records up to {} returned with a high watermark of {}",
            part.next_offset,
            part.high_watermark
        );
        checked += 1;
    }
    producing.await.expect("producer");
    broker.stop();
}
