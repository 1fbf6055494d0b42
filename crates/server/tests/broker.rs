//! End-to-end tests of the broker: a real `carteiro` process on an
//! ephemeral loopback port with a temporary data directory.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use carteiro::proto;
use carteiro::record::{Header, NewRecord, RecordBatch, RecordBatchBuilder};
use common::*;
use tonic::Code;

fn headers(pairs: &[(&str, Option<&str>)]) -> Vec<proto::Header> {
    pairs
        .iter()
        .map(|(k, v)| proto::Header {
            key: k.to_string(),
            value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn records_produced_by_both_paths_come_back_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "orders", 3, small_topic(64 * 1024)).await;
    let mut client = broker.broker().await;

    // The easy path: records with keys, headers and timestamps.
    let easy: Vec<proto::Record> = (0..5)
        .map(|i| proto::Record {
            key: Some(Bytes::from(format!("k{i}"))),
            value: if i == 3 {
                None
            } else {
                Some(Bytes::from(format!("value {i}")))
            },
            headers: headers(&[("trace", Some("abc")), ("empty", None)]),
            timestamp_ms: 1_700_000_000_000 + i,
            offset: 0,
        })
        .collect();
    let reply = client
        .produce(proto::ProduceRequest {
            topic: "orders".into(),
            partition: Some(0),
            records: easy.clone(),
            ..Default::default()
        })
        .await
        .expect("produce records")
        .into_inner();
    assert_eq!(reply.partitions.len(), 1);
    assert_eq!(
        (
            reply.partitions[0].partition,
            reply.partitions[0].base_offset,
            reply.partitions[0].record_count
        ),
        (0, 0, 5)
    );
    assert!(reply.partitions[0].append_time_ms > 0);

    // The fast path: one batch encoded by the client.
    let header_set = [Header {
        key: b"h",
        value: Some(b"1"),
    }];
    let mut builder = RecordBatchBuilder::new();
    for i in 0..4 {
        let value = format!("fast {i}");
        let key = format!("f{i}");
        builder
            .append(&NewRecord {
                timestamp: 1_800_000_000_000 + i,
                key: Some(key.as_bytes()),
                value: Some(value.as_bytes()),
                headers: &header_set,
            })
            .expect("fits");
    }
    let batch = builder.build().expect("non-empty");
    let reply = client
        .produce(proto::ProduceRequest {
            topic: "orders".into(),
            partition: Some(1),
            record_batch: Bytes::from(batch.clone()),
            ..Default::default()
        })
        .await
        .expect("produce batch")
        .into_inner();
    assert_eq!(
        (
            reply.partitions[0].partition,
            reply.partitions[0].base_offset,
            reply.partitions[0].record_count
        ),
        (1, 0, 4)
    );

    // Decoded fetch of both partitions in one request.
    let fetched = client
        .fetch(proto::FetchRequest {
            partitions: vec![
                proto::FetchPartition {
                    topic: "orders".into(),
                    partition: 0,
                    offset: 0,
                    max_bytes: 0,
                },
                proto::FetchPartition {
                    topic: "orders".into(),
                    partition: 1,
                    offset: 2,
                    max_bytes: 0,
                },
            ],
            format: proto::FetchFormat::Decoded as i32,
            ..Default::default()
        })
        .await
        .expect("fetch")
        .into_inner();
    let p0 = &fetched.partitions[0];
    assert_eq!(p0.high_watermark, 5);
    assert_eq!(p0.next_offset, 5);
    for (i, (got, sent)) in p0.records.iter().zip(&easy).enumerate() {
        assert_eq!(got.offset, i as i64);
        assert_eq!(
            (&got.key, &got.value, &got.headers, got.timestamp_ms),
            (&sent.key, &sent.value, &sent.headers, sent.timestamp_ms)
        );
    }
    assert_eq!(p0.records.len(), 5);
    let p1 = &fetched.partitions[1];
    let offsets: Vec<i64> = p1.records.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        vec![2, 3],
        "decoded fetch starts exactly at the requested offset"
    );
    assert_eq!(p1.records[0].value.as_deref(), Some(&b"fast 2"[..]));
    assert_eq!(p1.records[0].headers, headers(&[("h", Some("1"))]));

    // Raw fetch returns the producer's batch, only base offset and epoch stamped.
    let raw = client
        .fetch(proto::FetchRequest {
            ..fetch_one("orders", 1, 0)
        })
        .await
        .expect("fetch")
        .into_inner();
    let stored = &raw.partitions[0].record_batches[0];
    assert_eq!(
        &stored[16..],
        &batch[16..],
        "no re-encoding between producer and consumer"
    );
    RecordBatch::parse_exact(stored)
        .expect("valid batch")
        .validate()
        .expect("valid records");
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_pick_partitions_by_murmur2_and_keyless_records_spread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "keyed", 4, small_topic(64 * 1024)).await;
    let mut client = broker.broker().await;
    let keys = ["alice", "bob", "carol", "dave", "erin"];
    let reply = client
        .produce(proto::ProduceRequest {
            topic: "keyed".into(),
            records: keys.iter().map(|k| record(Some(k), "v")).collect(),
            ..Default::default()
        })
        .await
        .expect("produce")
        .into_inner();
    let total: u32 = reply.partitions.iter().map(|p| p.record_count).sum();
    assert_eq!(total, 5);
    for key in keys {
        let partition = carteiro::partitioner::partition_for_key(key.as_bytes(), 4);
        let records = fetch_all(&mut client, "keyed", partition, 0).await;
        assert!(
            records
                .iter()
                .any(|r| r.key.as_deref() == Some(key.as_bytes())),
            "{key} in partition {partition}"
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let reply = client
            .produce(proto::ProduceRequest {
                topic: "keyed".into(),
                records: vec![record(None, "x")],
                ..Default::default()
            })
            .await
            .expect("produce")
            .into_inner();
        seen.insert(reply.partitions[0].partition);
    }
    assert_eq!(seen.len(), 4, "keyless produces go round the partitions");
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_poll_wakes_on_produce_and_times_out_empty_without_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "poll", 1, small_topic(64 * 1024)).await;
    let mut client = broker.broker().await;

    let started = Instant::now();
    let empty = client
        .fetch(proto::FetchRequest {
            min_bytes: 1,
            max_wait_ms: 300,
            ..fetch_one("poll", 0, 0)
        })
        .await
        .expect("fetch")
        .into_inner();
    assert!(empty.partitions[0].record_batches.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "waited out max_wait_ms"
    );

    let mut poller = broker.broker().await;
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        poller
            .fetch(proto::FetchRequest {
                min_bytes: 1,
                max_wait_ms: 30_000,
                format: proto::FetchFormat::Decoded as i32,
                ..fetch_one("poll", 0, 0)
            })
            .await
    });
    client
        .produce(proto::ProduceRequest {
            topic: "poll".into(),
            records: vec![record(None, "wake")],
            ..Default::default()
        })
        .await
        .expect("produce");
    let woken = poll.await.expect("task").expect("fetch").into_inner();
    assert_eq!(
        woken.partitions[0].records[0].value.as_deref(),
        Some(&b"wake"[..])
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken by the append, long before max_wait_ms"
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn list_offsets_by_position_and_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "times", 1, small_topic(4096)).await;
    let mut client = broker.broker().await;
    for i in 0..30 {
        let mut r = record(None, &format!("t{i}"));
        r.timestamp_ms = 1_000_000 + i * 1000;
        client
            .produce(proto::ProduceRequest {
                topic: "times".into(),
                records: vec![r],
                ..Default::default()
            })
            .await
            .expect("produce");
    }
    let query = |spec| proto::OffsetQuery {
        topic: "times".into(),
        partition: 0,
        spec: Some(spec),
    };
    use proto::offset_query::Spec;
    let answers = client
        .list_offsets(proto::ListOffsetsRequest {
            queries: vec![
                query(Spec::Earliest(true)),
                query(Spec::Latest(true)),
                query(Spec::TimestampMs(1_010_500)),
                query(Spec::TimestampMs(9_000_000)),
                proto::OffsetQuery {
                    topic: "nope".into(),
                    partition: 0,
                    spec: Some(Spec::Latest(true)),
                },
            ],
        })
        .await
        .expect("list offsets")
        .into_inner()
        .answers;
    let offsets: Vec<i64> = answers.iter().take(4).map(|a| a.offset).collect();
    assert_eq!(offsets, vec![0, 30, 11, 30]);
    assert_eq!(
        answers[4].error.as_ref().map(|e| e.code),
        Some(Code::NotFound as i32)
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_answer() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let channel = tonic::transport::Endpoint::from_shared(broker.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel.clone());
    for service in ["carteiro.v1.Broker", "carteiro.v1.Admin"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection")
        .into_inner();
    let reply = replies.message().await.expect("reply").expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("expected a service list, got {:?}", reply.message_response);
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "carteiro.v1.Broker",
        "carteiro.v1.Admin",
        "carteiro.v1.Groups",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    // The older reflection version too, which many tools (Python's
    // grpcio-reflection among them) speak.
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let channel = tonic::transport::Channel::from_shared(broker.url())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let reply = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("v1alpha reflection")
            .into_inner()
            .message()
            .await
            .expect("reply")
            .expect("one reply");
        let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
            panic!("expected a service list, got {:?}", reply.message_response);
        };
        assert!(list.service.iter().any(|s| s.name == "carteiro.v1.Groups"));
    }
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn durable_acks_follow_each_flush_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let interval = proto::TopicConfig {
        flush: proto::FlushPolicy::Interval as i32,
        flush_interval_ms: Some(20),
        ..small_topic(64 * 1024)
    };
    let os = proto::TopicConfig {
        flush: proto::FlushPolicy::Os as i32,
        ..small_topic(64 * 1024)
    };
    let described = create_topic(&broker, "interval", 1, interval).await;
    assert_eq!(
        described.config.map(|c| (c.flush, c.flush_interval_ms)),
        Some((proto::FlushPolicy::Interval as i32, Some(20)))
    );
    create_topic(&broker, "os", 1, os).await;
    create_topic(&broker, "always", 1, small_topic(64 * 1024)).await;
    let mut client = broker.broker().await;
    for topic in ["interval", "os", "always"] {
        for acks in [proto::Acks::Durable, proto::Acks::Appended] {
            client
                .produce(proto::ProduceRequest {
                    topic: topic.into(),
                    records: vec![record(None, &format!("{topic} {acks:?}"))],
                    acks: acks as i32,
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{topic} {acks:?}: {e}"));
        }
        // The same on a produce stream, whose batches are queued to the
        // partition's draining thread.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let mut replies = client
            .produce_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("open stream")
            .into_inner();
        for acks in [proto::Acks::Durable, proto::Acks::Appended] {
            tx.send(proto::ProduceRequest {
                topic: topic.into(),
                partition: Some(0),
                record_batch: bytes::Bytes::from(batch_of(&[format!("{topic} streamed {acks:?}")])),
                acks: acks as i32,
                ..Default::default()
            })
            .await
            .expect("send");
        }
        drop(tx);
        let mut acknowledged = 0;
        while let Some(reply) = replies.message().await.expect("reply") {
            assert_eq!(reply.error_code, 0, "{topic}: {}", reply.error_message);
            acknowledged += 1;
        }
        assert_eq!(acknowledged, 2, "{topic}");
        // Appended records become visible too (for ALWAYS, once the sync after them lands).
        let mut poller = broker.broker().await;
        let reply = poller
            .fetch(proto::FetchRequest {
                min_bytes: 1,
                max_wait_ms: 30_000,
                format: proto::FetchFormat::Decoded as i32,
                ..fetch_one(topic, 0, 3)
            })
            .await
            .expect("fetch")
            .into_inner();
        // The last record, appended without waiting on a stream; the ones
        // before it are visible once it is.
        assert_eq!(reply.partitions[0].records.len(), 1, "{topic}");
    }
    broker.stop();
}
