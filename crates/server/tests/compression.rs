//! Compressed record batches end to end: the client's Producer with each
//! codec, consumed back identical both decoded by the broker and by the
//! client's Consumer; a batch whose compressed payload is garbage and a
//! zip bomb refused with INVALID_ARGUMENT, nothing stored.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use carteiro::proto;
use carteiro::record::{
    ATTRIBUTES_AT, BATCH_HEADER_BYTES, BATCH_LENGTH_AT, BATCH_LOG_OVERHEAD_BYTES, BatchHeader,
    CRC_AT, Compression, DECOMPRESSED_BYTES_MAX, NewRecord, RecordBatchBuilder,
};
use carteiro_client::{
    Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicPartition,
};
use common::*;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(60);
const RECORDS: usize = 300;

/// What was sent: key, value, headers.
type Sent = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn sent_records(codec: Compression) -> Vec<Sent> {
    (0..RECORDS)
        .map(|i| {
            let key = (i % 5 != 0).then(|| format!("key-{}", i % 3).into_bytes());
            let value = (i % 11 != 0).then(|| {
                format!("{} record {i}, ", codec.name())
                    .repeat(1 + i % 40)
                    .into_bytes()
            });
            let headers = vec![("n".to_string(), Some(i.to_string().into_bytes()))];
            (key, value, headers)
        })
        .collect()
}

/// Every stored batch of a partition, as its headers.
fn stored_headers(raw: &[u8]) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let header = BatchHeader::parse(rest).expect("a stored batch");
        rest = &rest[header.total_bytes()..];
        out.push(header);
    }
    out
}

async fn consume_all(broker: &Broker, topic: &str, want: usize) -> Vec<ConsumerRecord> {
    let mut consumer = Consumer::new(ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::new(broker.address.clone(), None)
    })
    .expect("consumer");
    consumer
        .assign(vec![TopicPartition::new(topic, 0)])
        .await
        .expect("assign");
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} arrived",
            out.len()
        );
        out.extend(
            consumer
                .poll(Duration::from_millis(200))
                .await
                .expect("poll"),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_produced_by_the_client_is_consumed_back_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let mut client = broker.broker().await;
    for codec in &Compression::ALL[1..] {
        let topic = format!("squeezed-{}", codec.name());
        create_topic(&broker, &topic, 1, small_topic(1 << 20)).await;
        let producer = Producer::new(ProducerConfig {
            compression: *codec,
            // Small batches, so there are several of them.
            batch_bytes: 16 * 1024,
            ..ProducerConfig::new(broker.address.clone())
        })
        .expect("producer");
        let sent = sent_records(*codec);
        let mut deliveries = Vec::new();
        for (key, value, headers) in &sent {
            let record = ProducerRecord {
                key: key.clone().map(Bytes::from),
                value: value.clone().map(Bytes::from),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().map(Bytes::from)))
                    .collect(),
                timestamp_ms: None,
                partition: Some(0),
            };
            deliveries.push(producer.send(&topic, record).await.expect("accepted"));
        }
        for (i, delivery) in deliveries.into_iter().enumerate() {
            let landed = delivery.await.expect("delivered");
            assert_eq!(landed.offset, i as i64);
        }
        producer.close().await.expect("closed");

        // Stored compressed, as sent, in several batches.
        let headers = stored_headers(&raw_bytes(&mut client, &topic, 0).await);
        assert!(headers.len() > 1, "{} batches", headers.len());
        assert!(
            headers.iter().all(|h| h.attributes.compression() == *codec),
            "{}: {:?}",
            codec.name(),
            headers.iter().map(|h| h.attributes).collect::<Vec<_>>()
        );

        // Decoded by the broker.
        let decoded = fetch_all(&mut client, &topic, 0, 0).await;
        let got: Vec<Sent> = decoded
            .iter()
            .map(|r| {
                (
                    r.key.as_ref().map(|k| k.to_vec()),
                    r.value.as_ref().map(|v| v.to_vec()),
                    r.headers
                        .iter()
                        .map(|h| (h.key.clone(), h.value.as_ref().map(|v| v.to_vec())))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(got, sent, "{} decoded by the broker", codec.name());
        let offsets: Vec<i64> = decoded.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..RECORDS as i64).collect::<Vec<_>>());
        // Decoding from the middle of a compressed batch starts exactly there.
        let from_middle = fetch_all(&mut client, &topic, 0, 7).await;
        assert_eq!(from_middle.first().map(|r| r.offset), Some(7));
        assert_eq!(from_middle.len(), RECORDS - 7);

        // Decoded by the client's Consumer, from the raw batches.
        let consumed = consume_all(&broker, &topic, RECORDS).await;
        let got: Vec<Sent> = consumed
            .iter()
            .map(|r| {
                (
                    r.key.as_ref().map(|k| k.to_vec()),
                    r.value.as_ref().map(|v| v.to_vec()),
                    r.headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_ref().map(|v| v.to_vec())))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(got, sent, "{} decoded by the Consumer", codec.name());
    }
}

/// `batch` with its records section replaced by `section` and its codec set
/// to `codec`, lengths and CRC made right: what a client could send.
fn with_section(batch: &[u8], codec: Compression, section: &[u8]) -> Vec<u8> {
    let mut out = batch[..BATCH_HEADER_BYTES].to_vec();
    out.extend_from_slice(section);
    let batch_length = (out.len() - BATCH_LOG_OVERHEAD_BYTES) as i32;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&i16::from(codec.id()).to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Produces `batch` to partition 0 of `topic`: the status of a refusal.
async fn refused(broker: &Broker, topic: &str, batch: Vec<u8>) -> tonic::Status {
    broker
        .broker()
        .await
        .produce(proto::ProduceRequest {
            topic: topic.into(),
            partition: Some(0),
            record_batch: Bytes::from(batch),
            ..Default::default()
        })
        .await
        .expect_err("refused")
}

async fn assert_nothing_stored(broker: &Broker, topic: &str) {
    let mut client = broker.broker().await;
    assert!(raw_bytes(&mut client, topic, 0).await.is_empty());
    // And the partition still takes a good batch at offset 0.
    let reply = client
        .produce(proto::ProduceRequest {
            topic: topic.into(),
            partition: Some(0),
            record_batch: Bytes::from(batch_of(&["good"])),
            ..Default::default()
        })
        .await
        .expect("a good batch")
        .into_inner();
    assert_eq!(reply.partitions[0].base_offset, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_payload_that_is_garbage_is_refused_and_nothing_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let garbage = b"these bytes were never compressed by anything at all".repeat(3);
    for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
        let topic = format!("garbage-{}", codec.name());
        create_topic(&broker, &topic, 1, small_topic(1 << 20)).await;
        let batch = with_section(&batch_of(&["a", "b"]), codec, &garbage);
        let status = refused(&broker, &topic, batch).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let message = status.message();
        assert!(
            message.contains(codec.name()) && message.contains("does not decompress"),
            "{message}"
        );
        assert_nothing_stored(&broker, &topic).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_bomb_is_refused_naming_the_decompression_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "bombed", 1, small_topic(1 << 20)).await;
    // A gzip batch of one record of 1 MiB of zeros: its records section is
    // one gzip member of about 1 KiB. A gzip stream may hold many members:
    // 65 of them decompress to more than 64 MiB.
    let zeros = vec![0u8; 1 << 20];
    let mut builder = RecordBatchBuilder::new().with_compression(Compression::Gzip);
    builder
        .append(&NewRecord {
            timestamp: 1,
            value: Some(&zeros),
            ..NewRecord::default()
        })
        .expect("fits");
    let one = builder.build().expect("built");
    assert_eq!(
        BatchHeader::parse(&one)
            .expect("header")
            .attributes
            .compression(),
        Compression::Gzip
    );
    let member = &one[BATCH_HEADER_BYTES..];
    let bomb = member.repeat(DECOMPRESSED_BYTES_MAX / zeros.len() + 1);
    assert!(
        bomb.len() < 256 * 1024,
        "a small batch: {} bytes",
        bomb.len()
    );
    let status = refused(
        &broker,
        "bombed",
        with_section(&one, Compression::Gzip, &bomb),
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let message = status.message();
    assert!(
        message.contains("gzip")
            && message.contains(&DECOMPRESSED_BYTES_MAX.to_string())
            && message.contains("DECOMPRESSED_BYTES_MAX"),
        "{message}"
    );
    assert_nothing_stored(&broker, "bombed").await;
}
