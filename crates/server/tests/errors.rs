//! Every bad input gets its status code and a message naming the field, the
//! value and the limit, and the stored log is byte-for-byte unchanged.
//! Also: limits under load, retention while running, shutdown, and the
//! binary's own bad arguments.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use carteiro::proto;
use common::*;
use tonic::Code;

fn assert_status(
    result: Result<impl std::fmt::Debug, tonic::Status>,
    code: Code,
    fragments: &[&str],
) {
    let status = result.expect_err("request must fail");
    assert_eq!(status.code(), code, "{status:?}");
    for fragment in fragments {
        assert!(
            status.message().contains(fragment),
            "{fragment:?} missing from {:?}",
            status.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_its_status_and_leaves_the_log_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let config = proto::TopicConfig {
        max_batch_bytes: Some(1024),
        ..small_topic(64 * 1024)
    };
    create_topic(&broker, "guarded", 2, config).await;
    let mut client = broker.broker().await;
    let mut admin = broker.admin().await;
    client
        .produce(proto::ProduceRequest {
            topic: "guarded".into(),
            partition: Some(0),
            records: vec![record(None, "kept")],
            ..Default::default()
        })
        .await
        .expect("produce");
    let before = raw_bytes(&mut client, "guarded", 0).await;
    let produce = |topic: &str,
                   partition: Option<u32>,
                   records: Vec<proto::Record>,
                   batch: Vec<u8>| proto::ProduceRequest {
        topic: topic.into(),
        partition,
        records,
        record_batch: Bytes::from(batch),
        ..Default::default()
    };

    assert_status(
        client
            .produce(produce("missing", None, vec![record(None, "x")], vec![]))
            .await,
        Code::NotFound,
        &["missing"],
    );
    assert_status(
        client
            .produce(produce("guarded", Some(9), vec![record(None, "x")], vec![]))
            .await,
        Code::NotFound,
        &["partition 9", "2 partitions, numbered 0 to 1"],
    );
    assert_status(
        client
            .produce(produce("guarded", Some(0), vec![], vec![]))
            .await,
        Code::InvalidArgument,
        &["records", "empty"],
    );
    assert_status(
        client
            .produce(produce(
                "guarded",
                Some(0),
                vec![record(None, "x")],
                batch_of(&["y"]),
            ))
            .await,
        Code::InvalidArgument,
        &["record_batch", "not both"],
    );
    let big = "z".repeat(2000);
    assert_status(
        client
            .produce(produce("guarded", Some(0), vec![], batch_of(&[&big])))
            .await,
        Code::InvalidArgument,
        &["record_batch", "max_batch_bytes 1024", "exceeds"],
    );
    assert_status(
        client
            .produce(produce(
                "guarded",
                Some(0),
                vec![record(None, &big)],
                vec![],
            ))
            .await,
        Code::InvalidArgument,
        &["records", "max_batch_bytes 1024"],
    );
    let mut corrupt = batch_of(&["a", "b"]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_status(
        client
            .produce(produce("guarded", Some(0), vec![], corrupt))
            .await,
        Code::InvalidArgument,
        &["record_batch", "checksum"],
    );
    assert_status(
        client
            .produce(produce(
                "guarded",
                Some(0),
                vec![],
                b"not a batch at all".to_vec(),
            ))
            .await,
        Code::InvalidArgument,
        &["record_batch", "truncated"],
    );
    assert_status(
        client
            .produce(produce(
                "__consumer_offsets",
                Some(0),
                vec![record(None, "x")],
                vec![],
            ))
            .await,
        Code::InvalidArgument,
        &["reserved"],
    );

    // Fetch: an offset outside the log fails that partition alone, with the range.
    let fetched = client
        .fetch(proto::FetchRequest {
            partitions: vec![
                proto::FetchPartition {
                    topic: "guarded".into(),
                    partition: 0,
                    offset: 50,
                    max_bytes: 0,
                },
                proto::FetchPartition {
                    topic: "guarded".into(),
                    partition: 0,
                    offset: 0,
                    max_bytes: 0,
                },
                proto::FetchPartition {
                    topic: "missing".into(),
                    partition: 0,
                    offset: 0,
                    max_bytes: 0,
                },
            ],
            ..Default::default()
        })
        .await
        .expect("fetch")
        .into_inner();
    let out_of_range = fetched.partitions[0].error.as_ref().expect("error");
    assert_eq!(out_of_range.code, Code::OutOfRange as i32);
    assert_eq!((out_of_range.valid_start, out_of_range.valid_end), (0, 1));
    assert!(
        out_of_range.message.contains("offset 50"),
        "{}",
        out_of_range.message
    );
    assert!(
        fetched.partitions[1].error.is_none() && !fetched.partitions[1].record_batches.is_empty()
    );
    assert_eq!(
        fetched.partitions[2].error.as_ref().map(|e| e.code),
        Some(Code::NotFound as i32)
    );
    assert_status(
        client
            .fetch(proto::FetchRequest {
                partitions: vec![],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["partitions"],
    );
    assert_status(
        client
            .fetch(proto::FetchRequest {
                max_wait_ms: 10_000_000,
                ..fetch_one("guarded", 0, 0)
            })
            .await,
        Code::InvalidArgument,
        &["max_wait_ms", "10000000", "300000"],
    );

    // Admin.
    let create = |name: &str, partitions: u32, config: Option<proto::TopicConfig>| {
        proto::CreateTopicRequest {
            name: name.into(),
            partitions,
            config,
        }
    };
    assert_status(
        admin.create_topic(create("guarded", 1, None)).await,
        Code::AlreadyExists,
        &["guarded"],
    );
    assert_status(
        admin.create_topic(create("bad/name", 1, None)).await,
        Code::InvalidArgument,
        &["name", "bad/name", "'/'"],
    );
    assert_status(
        admin.create_topic(create(&"n".repeat(250), 1, None)).await,
        Code::InvalidArgument,
        &["249", "250"],
    );
    assert_status(
        admin.create_topic(create("zero", 0, None)).await,
        Code::InvalidArgument,
        &["partitions is 0", "1024"],
    );
    assert_status(
        admin.create_topic(create("__mine", 1, None)).await,
        Code::InvalidArgument,
        &["reserved"],
    );
    assert_status(
        admin
            .create_topic(create("tiny", 1, Some(small_topic(10))))
            .await,
        Code::InvalidArgument,
        &["segment_bytes is 10", "1024"],
    );
    assert_status(
        admin
            .create_topic(create(
                "ret",
                1,
                Some(proto::TopicConfig {
                    retention_ms: Some(-5),
                    ..Default::default()
                }),
            ))
            .await,
        Code::InvalidArgument,
        &["config.retention_ms", "-5"],
    );
    assert_status(
        admin
            .delete_topic(proto::DeleteTopicRequest {
                name: "missing".into(),
            })
            .await,
        Code::NotFound,
        &["missing"],
    );
    assert_status(
        admin
            .describe_group(proto::DescribeGroupRequest {
                group: "nobody".into(),
            })
            .await,
        Code::NotFound,
        &["nobody"],
    );

    // Commits.
    let commit = |topic: &str, partition: u32, offset: i64| proto::CommitOffsetsRequest {
        group: "g".into(),
        commits: vec![proto::OffsetCommit {
            topic: topic.into(),
            partition,
            offset,
            metadata: String::new(),
        }],
        ..Default::default()
    };
    assert_status(
        client.commit_offsets(commit("missing", 0, 1)).await,
        Code::NotFound,
        &["missing"],
    );
    assert_status(
        client.commit_offsets(commit("guarded", 5, 1)).await,
        Code::NotFound,
        &["partition 5"],
    );
    assert_status(
        client.commit_offsets(commit("guarded", 0, -3)).await,
        Code::InvalidArgument,
        &["commits.offset", "-3"],
    );
    assert_status(
        client
            .commit_offsets(proto::CommitOffsetsRequest {
                group: String::new(),
                commits: vec![],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        &["group"],
    );
    let nothing = client
        .fetch_offsets(proto::FetchOffsetsRequest {
            group: "g".into(),
            partitions: vec![],
        })
        .await
        .expect("fetch offsets")
        .into_inner();
    assert!(
        nothing.offsets.is_empty(),
        "rejected commits stored nothing"
    );

    // After all of that, the log is byte-for-byte what it was.
    assert_eq!(raw_bytes(&mut client, "guarded", 0).await, before);
    assert!(raw_bytes(&mut client, "guarded", 1).await.is_empty());
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_requests_is_refused_with_resource_exhausted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &["--max-requests-in-flight", "1"]);
    // A durable produce to a topic flushed once a minute holds its place
    // until the flush.
    let slow = proto::TopicConfig {
        flush: proto::FlushPolicy::Interval as i32,
        flush_interval_ms: Some(60_000),
        ..small_topic(64 * 1024)
    };
    create_topic(&broker, "busy", 1, slow).await;
    let hold =
        |mut producer: carteiro::proto::broker_client::BrokerClient<tonic::transport::Channel>| {
            tokio::spawn(async move {
                producer
                    .produce(proto::ProduceRequest {
                        topic: "busy".into(),
                        partition: Some(0),
                        records: vec![record(None, "waits for its flush")],
                        ..Default::default()
                    })
                    .await
            })
        };
    // One produce holds the only place, so other requests are refused at
    // once. (If it loses the race for the place, it is refused and sent
    // again.) The wait is bounded.
    let mut held = hold(broker.broker().await);
    let mut client = broker.broker().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        assert!(Instant::now() < deadline, "never refused");
        if held.is_finished() {
            let lost = held
                .await
                .expect("task")
                .expect_err("a durable produce only ends early when refused");
            assert_eq!(lost.code(), Code::ResourceExhausted);
            held = hold(broker.broker().await);
        }
        match client
            .list_offsets(proto::ListOffsetsRequest { queries: vec![] })
            .await
        {
            Err(status) if status.code() == Code::ResourceExhausted && !held.is_finished() => {
                break status;
            }
            _ => tokio::task::yield_now().await,
        }
    };
    assert!(
        refused.message().contains("requests in flight")
            && refused.message().contains("limit of 1"),
        "{refused:?}"
    );
    // Shutdown flushes every log: the waiting produce is acknowledged.
    broker.stop();
    let finished = held.await.expect("task");
    assert!(
        finished.is_ok(),
        "the produce in flight was acknowledged during shutdown: {finished:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_takes_effect_while_the_broker_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &["--retention-check-interval-ms", "20"]);
    let config = proto::TopicConfig {
        retention_ms: Some(60_000),
        ..small_topic(1024)
    };
    create_topic(&broker, "short", 1, config).await;
    let mut client = broker.broker().await;
    // Records stamped an hour ago are past retention as soon as their segment closes.
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 3_600_000;
    for i in 0..60 {
        let mut r = record(None, &format!("old {i}"));
        r.timestamp_ms = hour_ago;
        client
            .produce(proto::ProduceRequest {
                topic: "short".into(),
                records: vec![r],
                ..Default::default()
            })
            .await
            .expect("produce");
    }
    let mut admin = broker.admin().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let start = loop {
        let described = admin
            .describe_topic(proto::DescribeTopicRequest {
                name: "short".into(),
            })
            .await
            .expect("describe")
            .into_inner();
        let p = &described.partition_details[0];
        // Every closed segment expired; only the active one remains.
        if p.start_offset > 0 && p.segment_count == 1 {
            break p.start_offset;
        }
        assert!(Instant::now() < deadline, "retention never ran: {p:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let fetched = client
        .fetch(proto::FetchRequest {
            ..fetch_one("short", 0, 0)
        })
        .await
        .expect("fetch")
        .into_inner();
    let error = fetched.partitions[0]
        .error
        .as_ref()
        .expect("offset 0 is gone");
    assert_eq!(
        (error.code, error.valid_start),
        (Code::OutOfRange as i32, start)
    );
    broker.stop();
}

#[test]
fn bad_arguments_exit_non_zero_with_a_message() {
    let output = std::process::Command::new(broker_binary())
        .args(["--max-connections", "0"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("max_connections is 0"));
    for (listen, says) in [
        ("not-an-address", "HOST:PORT"),
        ("7199", "HOST:PORT"),
        (":7199", "the host is missing"),
        ("127.0.0.1:99999", "not a number from 0 to 65535"),
    ] {
        let output = std::process::Command::new(broker_binary())
            .args(["--listen", listen])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{listen}: {stderr}");
        assert!(
            stderr.contains(listen) && stderr.contains(says),
            "{listen}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_max_connections_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &["--max-connections", "1"]);
    let mut first = broker.admin().await;
    first
        .list_topics(proto::ListTopicsRequest {})
        .await
        .expect("the first connection is served");
    let second = tonic::transport::Endpoint::from_shared(broker.url())
        .expect("url")
        .connect()
        .await;
    let refused = match second {
        Err(e) => e.to_string(),
        Ok(channel) => {
            let mut admin = carteiro::proto::admin_client::AdminClient::new(channel);
            let status = admin
                .list_topics(proto::ListTopicsRequest {})
                .await
                .expect_err("second connection refused");
            // The refused connection surfaces as a transport failure (UNAVAILABLE,
            // UNKNOWN or CANCELLED, depending on when it closed); a status the
            // broker sent has no source.
            assert!(std::error::Error::source(&status).is_some(), "{status:?}");
            status.to_string()
        }
    };
    assert!(!refused.is_empty());
    first
        .list_topics(proto::ListTopicsRequest {})
        .await
        .expect("the first connection still works");
    broker.stop();
}
