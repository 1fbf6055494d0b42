//! `ProduceStream`, the pipelined produce, against a real broker: requests
//! appended in the order sent, a failure ending the stream after the
//! earlier requests are acknowledged, shutdown with a stream open, and a
//! pipelining idempotent `Producer` through broker kills (SIGKILL) and
//! restarts storing each record it was told was delivered exactly once, at
//! that offset, in the order sent.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use carteiro::proto;
use carteiro::proto::broker_client::BrokerClient;
use carteiro_client::{ClientError, Producer, ProducerConfig, ProducerRecord};
use common::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Longest wait for a reply before the test fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

fn request(topic: &str, values: &[String]) -> proto::ProduceRequest {
    proto::ProduceRequest {
        topic: topic.into(),
        partition: Some(0),
        record_batch: Bytes::from(batch_of(values)),
        acks: proto::Acks::Durable as i32,
        ..Default::default()
    }
}

/// Opens a stream; returns its request sender and its replies.
async fn open(
    client: &mut BrokerClient<Channel>,
    capacity: usize,
) -> (
    mpsc::Sender<proto::ProduceRequest>,
    tonic::Streaming<proto::ProduceStreamReply>,
) {
    let (tx, rx) = mpsc::channel(capacity);
    let replies = client
        .produce_stream(ReceiverStream::new(rx))
        .await
        .expect("open stream")
        .into_inner();
    (tx, replies)
}

async fn next_reply(
    replies: &mut tonic::Streaming<proto::ProduceStreamReply>,
) -> Option<proto::ProduceStreamReply> {
    tokio::time::timeout(REPLY_TIMEOUT, replies.message())
        .await
        .expect("a reply in time")
        .expect("stream ok")
}

fn values(records: &[proto::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_sent_without_waiting_are_appended_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "ordered", 1, small_topic(16 * 1024)).await;
    let mut client = broker.broker().await;
    const REQUESTS: usize = 300;
    // Everything is sent before any reply is read: the broker pipelines.
    let (tx, mut replies) = open(&mut client, REQUESTS).await;
    let mut sent = Vec::new();
    for i in 0..REQUESTS {
        let pair = vec![format!("{i}-a"), format!("{i}-b")];
        tx.send(request("ordered", &pair)).await.expect("send");
        sent.extend(pair);
    }
    drop(tx);
    let mut base_by_sequence = BTreeMap::new();
    while let Some(reply) = next_reply(&mut replies).await {
        assert_eq!(reply.error_code, 0, "{}", reply.error_message);
        let landed = &reply.response.expect("response").partitions[0];
        assert_eq!(landed.record_count, 2);
        assert!(
            base_by_sequence
                .insert(reply.sequence, landed.base_offset)
                .is_none(),
            "sequence {} acknowledged twice",
            reply.sequence
        );
    }
    assert_eq!(
        base_by_sequence.len(),
        REQUESTS,
        "every request acknowledged"
    );
    for (sequence, base) in &base_by_sequence {
        assert_eq!(
            *base,
            *sequence as i64 * 2,
            "request {sequence} out of order"
        );
    }
    let stored = fetch_all(&mut client, "ordered", 0, 0).await;
    assert_eq!(values(&stored), sent);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_request_ends_the_stream_and_nothing_after_it_is_appended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "strict", 1, small_topic(16 * 1024)).await;
    let mut client = broker.broker().await;
    let (tx, mut replies) = open(&mut client, 8).await;
    let one = |v: &str| vec![v.to_string()];
    tx.send(request("strict", &one("first")))
        .await
        .expect("send");
    tx.send(request("strict", &one("second")))
        .await
        .expect("send");
    tx.send(request("no-such-topic", &one("lost")))
        .await
        .expect("send");
    tx.send(request("strict", &one("after")))
        .await
        .expect("send");

    let mut seen = BTreeMap::new();
    while let Some(reply) = next_reply(&mut replies).await {
        seen.insert(reply.sequence, reply);
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2],
        "the request after the failure gets no reply"
    );
    assert_eq!(seen[&0].error_code, 0);
    assert_eq!(seen[&1].error_code, 0);
    assert_eq!(seen[&2].error_code, tonic::Code::NotFound as i32);
    assert!(
        seen[&2].error_message.contains("no-such-topic"),
        "{}",
        seen[&2].error_message
    );
    let stored = fetch_all(&mut client, "strict", 0, 0).await;
    assert_eq!(values(&stored), vec!["first", "second"]);

    // A new stream carries on where the log is.
    let (tx, mut replies) = open(&mut client, 1).await;
    tx.send(request("strict", &one("after")))
        .await
        .expect("send");
    let reply = next_reply(&mut replies).await.expect("reply");
    assert_eq!(reply.error_code, 0, "{}", reply.error_message);
    assert_eq!(
        reply.response.expect("response").partitions[0].base_offset,
        2
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_refused_while_queued_stops_every_later_request_of_the_stream_on_any_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "two", 2, small_topic(16 * 1024)).await;
    let mut client = broker.broker().await;
    let (tx, mut replies) = open(&mut client, 8).await;
    let one = |v: &str| vec![v.to_string()];
    // A batch whose CRC no longer matches: refused by the partition's
    // appending thread, after the stream has gone on reading.
    let mut damaged = request("two", &one("damaged"));
    let mut bytes = damaged.record_batch.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    damaged.record_batch = Bytes::from(bytes);
    let on = |partition: u32, value: &str| proto::ProduceRequest {
        partition: Some(partition),
        ..request("two", &one(value))
    };
    for request in [
        on(0, "first"),
        damaged,
        on(0, "after-0"),
        on(1, "after-1"),
        on(0, "later-0"),
    ] {
        tx.send(request).await.expect("send");
    }
    let mut seen = BTreeMap::new();
    while let Some(reply) = next_reply(&mut replies).await {
        seen.insert(reply.sequence, reply);
    }
    assert_eq!(seen[&0].error_code, 0, "{}", seen[&0].error_message);
    assert_eq!(
        seen[&1].error_code,
        tonic::Code::InvalidArgument as i32,
        "{}",
        seen[&1].error_message
    );
    // Later requests the broker read before it learnt of the failure are
    // answered ABORTED (sent again by a client), the rest are not read.
    for (sequence, reply) in seen.range(2..) {
        assert_eq!(
            reply.error_code,
            tonic::Code::Aborted as i32,
            "request {sequence}: {}",
            reply.error_message
        );
        assert!(
            reply.error_message.contains("send it again"),
            "{}",
            reply.error_message
        );
    }
    assert_eq!(
        values(&fetch_all(&mut client, "two", 0, 0).await),
        vec!["first"]
    );
    assert!(fetch_all(&mut client, "two", 1, 0).await.is_empty());
    // A new stream carries on where the log is.
    let (tx, mut replies) = open(&mut client, 1).await;
    tx.send(on(0, "again")).await.expect("send");
    let reply = next_reply(&mut replies).await.expect("reply");
    assert_eq!(reply.error_code, 0, "{}", reply.error_message);
    assert_eq!(
        reply.response.expect("response").partitions[0].base_offset,
        1
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_stops_cleanly_with_a_stream_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "idle", 1, small_topic(16 * 1024)).await;
    let mut client = broker.broker().await;
    let (tx, mut replies) = open(&mut client, 1).await;
    tx.send(request("idle", &["only".to_string()]))
        .await
        .expect("send");
    let reply = next_reply(&mut replies).await.expect("reply");
    assert_eq!(reply.error_code, 0, "{}", reply.error_message);
    // The stream stays open (the sender is alive) while the broker stops.
    broker.stop();
    drop(tx);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipelining_idempotent_producer_through_broker_kills_stores_each_record_once_in_order() {
    const RECORDS: u64 = 20_000;
    const KILL_AT: [usize; 4] = [1_000, 5_000, 9_000, 13_000];
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = Broker::start(dir.path(), &[]);
    let address = broker.address.clone();
    create_topic(&broker, "orders", 1, small_topic(64 * 1024)).await;
    let config = ProducerConfig {
        linger: Duration::ZERO,
        max_in_flight_per_partition: 5,
        batch_bytes: 2 * 1024,
        ..ProducerConfig::new(address.clone())
    };
    assert!(config.idempotent, "the default");
    let producer = Producer::new(config).expect("producer");
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Sends every record at once; the producer batches and pipelines them
    // and, after each kill, sends the unacknowledged batches again.
    let sender = tokio::spawn(async move {
        for i in 0..RECORDS {
            let value = format!("{i:06}");
            let delivery = producer
                .send("orders", ProducerRecord::value(value.clone()))
                .await
                .expect("accepted");
            let report = tx.clone();
            tokio::spawn(async move {
                let _ = report.send((delivery.await, value));
            });
        }
        producer
    });
    type Outcome = (Result<carteiro_client::RecordMetadata, ClientError>, String);
    fn record(delivered: &mut BTreeMap<i64, String>, (result, value): Outcome) {
        let metadata = result.unwrap_or_else(|e| panic!("{value} not delivered: {e}"));
        assert!(
            delivered.insert(metadata.offset, value).is_none(),
            "offset {} reported twice",
            metadata.offset
        );
    }
    let mut delivered = BTreeMap::new();
    for kill_at in KILL_AT {
        while delivered.len() < kill_at {
            let outcome = rx.recv().await.expect("deliveries go on");
            record(&mut delivered, outcome);
        }
        broker.kill();
        broker = Broker::start_on(&address, dir.path(), &[]);
    }
    let producer = sender.await.expect("sender");
    producer.close().await.expect("close: everything delivered");
    while let Some(outcome) = rx.recv().await {
        record(&mut delivered, outcome);
    }
    assert_eq!(
        delivered.len() as u64,
        RECORDS,
        "every record delivered once"
    );

    let mut client = broker.broker().await;
    let stored = values(&fetch_all(&mut client, "orders", 0, 0).await);
    for (offset, value) in &delivered {
        assert_eq!(
            stored.get(*offset as usize),
            Some(value),
            "delivered record at offset {offset} lost or changed"
        );
    }
    // Idempotent: a batch appended whose acknowledgement a kill swallowed
    // is recognised when sent again (and answered with its first offsets),
    // never appended twice. One producer, one partition: exactly the
    // records sent, once each, in the order sent.
    let sent: Vec<String> = (0..RECORDS).map(|i| format!("{i:06}")).collect();
    assert_eq!(
        stored.len() as u64,
        RECORDS,
        "{} stored for {RECORDS} records: copies appended by retries",
        stored.len()
    );
    if let Some(at) = stored.iter().zip(&sent).position(|(got, want)| got != want) {
        panic!(
            "offset {at} holds record {} where record {} was sent: not the order sent",
            stored[at], sent[at]
        );
    }
    broker.stop();
}

/// A record whose key lands in `partition` of a `partitions`-partition topic.
fn keyed_to(partition: u32, partitions: u32, value: &str) -> proto::Record {
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| carteiro::partitioner::partition_for_key(k.as_bytes(), partitions) == partition)
        .expect("some key lands there");
    record(Some(&key), value)
}

#[tokio::test(flavor = "multi_thread")]
async fn records_appended_before_a_later_partition_fails_still_become_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let config = proto::TopicConfig {
        max_batch_bytes: Some(4096),
        ..small_topic(64 * 1024)
    };
    create_topic(&broker, "split", 2, config).await;
    let mut client = broker.broker().await;
    // Partition 0 gets a small batch and is appended first; partition 1's
    // batch is over the topic's 4 KiB limit and fails the request, on a
    // stream and then unary.
    let big = "x".repeat(8 * 1024);
    let records = vec![keyed_to(0, 2, "small"), keyed_to(1, 2, &big)];
    let failing = |records: Vec<proto::Record>| proto::ProduceRequest {
        topic: "split".into(),
        records,
        acks: proto::Acks::Durable as i32,
        ..Default::default()
    };
    let (tx, mut replies) = open(&mut client, 1).await;
    tx.send(failing(records.clone())).await.expect("send");
    let reply = next_reply(&mut replies).await.expect("reply");
    assert_eq!(reply.error_code, tonic::Code::InvalidArgument as i32);
    assert_eq!(read_one(&mut client, 0).await, "small");
    let unary = client.produce(failing(records)).await;
    assert_eq!(
        unary.expect_err("refused").code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(read_one(&mut client, 1).await, "small");
    broker.stop();
}

/// Long-polls partition 0 of "split" for the record at `offset`: each
/// failed request appended "small" to it before failing, and a consumer
/// must be able to read it.
async fn read_one(client: &mut BrokerClient<Channel>, offset: i64) -> String {
    let reply = client
        .fetch(proto::FetchRequest {
            format: proto::FetchFormat::Decoded as i32,
            min_bytes: 1,
            max_wait_ms: 10_000,
            ..fetch_one("split", 0, offset)
        })
        .await
        .expect("fetch")
        .into_inner();
    let got = values(&reply.partitions[0].records);
    assert!(
        !got.is_empty(),
        "the record at {offset} never became readable"
    );
    got[0].clone()
}
