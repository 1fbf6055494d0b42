//! The client library against a real broker: producers, consumers that
//! track and commit their offsets, replay, seek by time, and surviving a
//! broker restart; an idempotent producer going on under its next epoch
//! after a batch is refused for good, and one that is not idempotent.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use carteiro_client::{
    Admin, CommitMode, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, Seek, TopicPartition, TopicSettings,
};
use common::*;

const POLL: Duration = Duration::from_millis(200);
const DEADLINE: Duration = Duration::from_secs(60);

fn settings() -> TopicSettings {
    TopicSettings {
        segment_bytes: Some(64 * 1024),
        ..TopicSettings::default()
    }
}

/// Polls until `want` records arrived (bounded by `DEADLINE`).
async fn consume(consumer: &mut Consumer, want: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} records arrived",
            out.len()
        );
        out.extend(consumer.poll(POLL).await.expect("poll"));
    }
    out
}

fn value(r: &ConsumerRecord) -> String {
    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned()
}

async fn produce_numbered(
    broker: &Broker,
    topic: &str,
    count: usize,
) -> Vec<carteiro_client::RecordMetadata> {
    let producer = Producer::new(ProducerConfig::new(broker.address.clone())).expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..count {
        let record = ProducerRecord::keyed(format!("key-{}", i % 7), format!("value-{i}"))
            .header("n", i.to_string());
        deliveries.push(producer.send(topic, record).await.expect("accepted"));
    }
    let mut landed = Vec::new();
    for delivery in deliveries {
        landed.push(delivery.await.expect("delivered"));
    }
    producer.close().await.expect("close");
    landed
}

#[tokio::test(flavor = "multi_thread")]
async fn records_from_a_producer_come_back_in_order_through_a_consumer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    Admin::connect(&broker.address)
        .expect("admin")
        .create_topic("events", 3, &settings())
        .await
        .expect("create");
    let landed = produce_numbered(&broker, "events", 300).await;
    // Same key, same partition (the broker's murmur2 rule), offsets in send order.
    let mut by_key: BTreeMap<String, Vec<(u32, i64)>> = BTreeMap::new();
    for (i, meta) in landed.iter().enumerate() {
        by_key
            .entry(format!("key-{}", i % 7))
            .or_default()
            .push((meta.partition, meta.offset));
    }
    for (key, places) in &by_key {
        assert!(
            places.iter().all(|p| p.0 == places[0].0),
            "{key} stayed in one partition"
        );
        assert!(
            places.windows(2).all(|w| w[0].1 < w[1].1),
            "{key} in send order"
        );
        assert_eq!(
            places[0].0,
            carteiro::partitioner::partition_for_key(key.as_bytes(), 3)
        );
    }

    let mut consumer =
        Consumer::new(ConsumerConfig::new(broker.address.clone(), None)).expect("consumer");
    consumer.subscribe(&["events"]).await.expect("subscribe");
    let records = consume(&mut consumer, 300).await;
    assert_eq!(records.len(), 300);
    let mut per_partition: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for r in &records {
        per_partition.entry(r.partition).or_default().push(r.offset);
        let n: usize = value(r)
            .trim_start_matches("value-")
            .parse()
            .expect("numbered");
        assert_eq!(r.key.as_deref(), Some(format!("key-{}", n % 7).as_bytes()));
        assert_eq!(
            r.headers,
            vec![("n".to_string(), Some(bytes::Bytes::from(n.to_string())))]
        );
        assert_eq!(landed[n].offset, r.offset);
    }
    for offsets in per_partition.values() {
        assert_eq!(
            *offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "every offset, in order"
        );
    }
    assert!(
        consumer
            .poll(Duration::from_millis(50))
            .await
            .expect("poll")
            .is_empty(),
        "nothing more"
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_that_commits_resumes_exactly_after_its_last_commit_and_groups_are_independent()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    Admin::connect(&broker.address)
        .expect("admin")
        .create_topic("jobs", 1, &settings())
        .await
        .expect("create");
    produce_numbered(&broker, "jobs", 50).await;
    let config = |group: &str| ConsumerConfig {
        commit: CommitMode::Manual,
        ..ConsumerConfig::new(broker.address.clone(), Some(group))
    };

    let mut first = Consumer::new(config("workers")).expect("consumer");
    first.subscribe(&["jobs"]).await.expect("subscribe");
    let mut seen = consume(&mut first, 1).await;
    while seen.len() < 20 {
        seen.extend(first.poll(POLL).await.expect("poll"));
    }
    // Process exactly 20, then commit where processing stopped.
    first.seek("jobs", 0, Seek::Offset(20)).await.expect("seek");
    first.commit().await.expect("commit");
    first.close().await.expect("leave the group");

    let mut again = Consumer::new(config("workers")).expect("consumer");
    again.subscribe(&["jobs"]).await.expect("subscribe");
    assert_eq!(again.position("jobs", 0), Some(20));
    let rest = consume(&mut again, 30).await;
    assert_eq!(
        rest.first().map(|r| r.offset),
        Some(20),
        "resumes exactly after the last commit"
    );
    assert_eq!(rest.last().map(|r| r.offset), Some(49));
    let committing = again.commit_async().expect("group").await.expect("task");
    committing.expect("async commit");

    // A second group replays the same topic from zero, unaffected.
    let mut auditors = Consumer::new(config("auditors")).expect("consumer");
    auditors.subscribe(&["jobs"]).await.expect("subscribe");
    let all = consume(&mut auditors, 50).await;
    assert_eq!(all.first().map(|r| r.offset), Some(0));
    let mut admin = Admin::connect(&broker.address).expect("admin");
    let workers = admin.describe_group("workers").await.expect("describe");
    assert_eq!(
        (
            workers.partitions[0].committed_offset,
            workers.partitions[0].lag
        ),
        (50, 0)
    );
    let auditors_group = admin
        .describe_group("auditors")
        .await
        .expect("a live group");
    assert!(
        auditors_group.partitions.is_empty(),
        "auditors never committed"
    );
    assert_eq!(
        (auditors_group.state.as_str(), auditors_group.members.len()),
        ("STABLE", 1)
    );
    auditors.close().await.expect("leave");

    // Automatic commits: a poll after the interval stores the position.
    let auto = ConsumerConfig {
        commit: CommitMode::Auto(Duration::ZERO),
        ..ConsumerConfig::new(broker.address.clone(), Some("auto"))
    };
    let mut auto = Consumer::new(auto).expect("consumer");
    auto.assign(vec![TopicPartition::new("jobs", 0)])
        .await
        .expect("assign");
    consume(&mut auto, 50).await;
    auto.poll(Duration::from_millis(10))
        .await
        .expect("poll commits");
    assert_eq!(
        admin
            .describe_group("auto")
            .await
            .expect("describe")
            .partitions[0]
            .committed_offset,
        50
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_seek_and_offset_reset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    Admin::connect(&broker.address)
        .expect("admin")
        .create_topic("history", 1, &settings())
        .await
        .expect("create");
    let producer = Producer::new(ProducerConfig::new(broker.address.clone())).expect("producer");
    for i in 0..20i64 {
        let record = ProducerRecord {
            timestamp_ms: Some(1_000_000 + i * 1000),
            ..ProducerRecord::value(format!("t{i}"))
        };
        producer
            .send_and_wait("history", record)
            .await
            .expect("delivered");
    }
    producer.close().await.expect("close");

    let latest = ConsumerConfig {
        auto_offset_reset: OffsetReset::Latest,
        ..ConsumerConfig::new(broker.address.clone(), None)
    };
    let mut consumer = Consumer::new(latest).expect("consumer");
    consumer.subscribe(&["history"]).await.expect("subscribe");
    assert_eq!(
        consumer.position("history", 0),
        Some(20),
        "latest starts at the end"
    );
    assert!(
        consumer
            .poll(Duration::from_millis(50))
            .await
            .expect("poll")
            .is_empty()
    );

    consumer.seek_to_beginning().await.expect("replay");
    let all = consume(&mut consumer, 20).await;
    assert_eq!(
        all.iter().map(value).collect::<Vec<_>>(),
        (0..20).map(|i| format!("t{i}")).collect::<Vec<_>>()
    );

    consumer
        .seek("history", 0, Seek::Time(1_012_500))
        .await
        .expect("seek by time");
    assert_eq!(consumer.position("history", 0), Some(13));
    let from_time = consume(&mut consumer, 7).await;
    assert_eq!(from_time[0].timestamp_ms, 1_013_000);
    consumer
        .seek("history", 0, Seek::End)
        .await
        .expect("seek end");
    assert_eq!(consumer.position("history", 0), Some(20));
    assert!(
        consumer.seek("nope", 0, Seek::Beginning).await.is_err(),
        "only assigned partitions"
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_keeps_its_records_through_a_broker_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let address = broker.address.clone();
    Admin::connect(&address)
        .expect("admin")
        .create_topic("steady", 2, &settings())
        .await
        .expect("create");
    let producer = Producer::new(ProducerConfig::new(address.clone())).expect("producer");
    let mut consumer = Consumer::new(ConsumerConfig::new(address.clone(), None)).expect("consumer");
    consumer.subscribe(&["steady"]).await.expect("subscribe");

    let mut deliveries = Vec::new();
    for i in 0..100 {
        deliveries.push(
            producer
                .send(
                    "steady",
                    ProducerRecord::keyed(format!("k{}", i % 4), format!("before-{i}")),
                )
                .await
                .expect("accepted"),
        );
    }
    producer.flush().await.expect("flush");
    broker.stop();
    // Accepted while the broker is down: retried until it is back.
    for i in 0..100 {
        deliveries.push(
            producer
                .send(
                    "steady",
                    ProducerRecord::keyed(format!("k{}", i % 4), format!("during-{i}")),
                )
                .await
                .expect("accepted"),
        );
    }
    let during = consumer
        .poll(Duration::from_millis(100))
        .await
        .expect("a poll during the outage is not an error");
    assert!(
        during.is_empty(),
        "nothing can arrive while the broker is down"
    );
    let broker = Broker::start_on(&address, dir.path(), &[]);
    for delivery in deliveries {
        delivery.await.expect("delivered after the restart");
    }
    producer.close().await.expect("close");

    let mut replay = Consumer::new(ConsumerConfig::new(address.clone(), None)).expect("consumer");
    replay.subscribe(&["steady"]).await.expect("subscribe");
    let records = consume(&mut replay, 200).await;
    let values: Vec<String> = records.iter().map(value).collect();
    for phase in ["before", "during"] {
        for i in 0..100 {
            assert!(values.contains(&format!("{phase}-{i}")), "{phase}-{i} lost");
        }
    }
    // Within a key, order is kept across the retries.
    for k in 0..4 {
        let key = format!("k{k}");
        let mine: Vec<String> = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .map(value)
            .collect();
        let during_starts = mine
            .iter()
            .position(|v| v.starts_with("during"))
            .unwrap_or(mine.len());
        assert!(
            mine[..during_starts]
                .iter()
                .all(|v| v.starts_with("before")),
            "{key}: order kept"
        );
    }
    // The consumer from before the restart carries on too.
    let caught_up = consume(&mut consumer, 1).await;
    assert!(!caught_up.is_empty());
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotent_producer_goes_on_under_its_next_epoch_after_a_batch_is_refused_for_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let mut admin = Admin::connect(&broker.address).expect("admin");
    admin
        .create_topic("bumped", 1, &settings())
        .await
        .expect("create");
    let producer = Producer::new(ProducerConfig {
        linger: Duration::ZERO,
        batch_bytes: 1024,
        ..ProducerConfig::new(broker.address.clone())
    })
    .expect("producer");
    // The producer learns the topic's layout (the default largest batch)
    // from a record for a partition the topic lacks; nothing is sent.
    let learned = producer
        .send_and_wait(
            "bumped",
            ProducerRecord {
                partition: Some(9),
                ..ProducerRecord::value("never")
            },
        )
        .await;
    assert!(
        matches!(learned, Err(carteiro_client::ClientError::Invalid(_))),
        "{learned:?}"
    );
    // Made again with a 4 KiB batch limit the producer does not know of
    // (it trusts the layout for metadata_max_age): the broker, not the
    // producer, refuses the 8 KiB record sent among good ones.
    admin.delete_topic("bumped").await.expect("delete");
    let small_batches = TopicSettings {
        max_batch_bytes: Some(4096),
        ..settings()
    };
    admin
        .create_topic("bumped", 1, &small_batches)
        .await
        .expect("create again");
    const REFUSED_AT: usize = 20;
    let big = "x".repeat(8 * 1024);
    let mut deliveries = Vec::new();
    let mut sent = Vec::new();
    for i in 0..40 {
        let value = if i == REFUSED_AT {
            big.clone()
        } else {
            sent.push(format!("good-{i:02}"));
            format!("good-{i:02}")
        };
        let delivery = producer
            .send("bumped", ProducerRecord::value(value.clone()))
            .await
            .expect("accepted");
        deliveries.push((value, delivery));
    }
    let mut landed = BTreeMap::new();
    for (value, delivery) in deliveries {
        match delivery.await {
            Ok(meta) => {
                assert_ne!(value, big, "the big record was delivered");
                landed.insert(meta.offset, value);
            }
            Err(e) => {
                assert_eq!(value, big, "{value} not delivered: {e}");
                assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{e}");
            }
        }
    }
    // And it goes on.
    for i in 40..50 {
        let value = format!("good-{i:02}");
        let meta = producer
            .send_and_wait("bumped", ProducerRecord::value(value.clone()))
            .await
            .expect("delivered after the refusal");
        landed.insert(meta.offset, value.clone());
        sent.push(value);
    }
    producer.close().await.expect("close");

    let mut client = broker.broker().await;
    let stored = record_values(&fetch_all(&mut client, "bumped", 0, 0).await);
    assert_eq!(stored, sent, "every good record once, in the order sent");
    assert_eq!(landed.len(), sent.len());
    for (offset, value) in &landed {
        assert_eq!(stored.get(*offset as usize), Some(value), "offset {offset}");
    }
    // The batches after the refused one carry the next epoch of the same
    // id, their sequences starting again at 0; each epoch's run unbroken.
    let stamps = stored_stamps(&broker, "bumped", 0).await;
    let id = stamps[0].0;
    assert!(id >= 0, "{stamps:?}");
    assert!(stamps.iter().all(|s| s.0 == id), "{stamps:?}");
    let epochs: Vec<i16> = stamps.iter().map(|s| s.1).collect();
    assert_eq!(epochs.first(), Some(&0), "{stamps:?}");
    assert_eq!(epochs.last(), Some(&1), "{stamps:?}");
    assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    let mut next = BTreeMap::new();
    for (_, epoch, base_sequence, count) in &stamps {
        let expected = next.entry(*epoch).or_insert(0);
        assert_eq!(base_sequence, expected, "epoch {epoch}: {stamps:?}");
        *expected += count;
    }
    let before: i32 = stamps.iter().filter(|s| s.1 == 0).map(|s| s.3).sum();
    assert_eq!(
        before as usize, REFUSED_AT,
        "the records before the refused one, under epoch 0"
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_that_is_not_idempotent_sends_unstamped_batches_as_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    Admin::connect(&broker.address)
        .expect("admin")
        .create_topic("plain", 1, &settings())
        .await
        .expect("create");
    // More in flight per partition than an idempotent producer may have.
    let producer = Producer::new(ProducerConfig {
        idempotent: false,
        linger: Duration::ZERO,
        batch_bytes: 512,
        max_in_flight_per_partition: 8,
        ..ProducerConfig::new(broker.address.clone())
    })
    .expect("producer");
    let sent: Vec<String> = (0..500).map(|i| format!("plain-{i:03}")).collect();
    let mut deliveries = Vec::new();
    for value in &sent {
        deliveries.push(
            producer
                .send("plain", ProducerRecord::value(value.clone()))
                .await
                .expect("accepted"),
        );
    }
    let mut offsets = Vec::new();
    for delivery in deliveries {
        offsets.push(delivery.await.expect("delivered").offset);
    }
    producer.close().await.expect("close");
    assert_eq!(offsets, (0..500).collect::<Vec<i64>>());
    let mut client = broker.broker().await;
    let stored = record_values(&fetch_all(&mut client, "plain", 0, 0).await);
    assert_eq!(stored, sent);
    let stamps = stored_stamps(&broker, "plain", 0).await;
    assert!(stamps.len() > 1, "several batches: {stamps:?}");
    assert!(
        stamps.iter().all(|s| (s.0, s.1, s.2) == (-1, -1, -1)),
        "no producer stamp: {stamps:?}"
    );
    broker.stop();
}
