//! File descriptors and memory under load, tried as an outside client
//! would: a topic with small segments under a low open-files limit, floods
//! of large fetches and of large produce requests, and request bodies that
//! are too large or are not protobuf at all.

mod common;

use bytes::Bytes;
use carteiro::proto;
use common::*;
use futures_util::future::join_all;
use prost::Message;
use tonic::Code;

const MIB: u64 = 1024 * 1024;

async fn produce_batch(
    client: &mut carteiro::proto::broker_client::BrokerClient<tonic::transport::Channel>,
    topic: &str,
    batch: Vec<u8>,
) -> Result<(), tonic::Status> {
    client
        .produce(proto::ProduceRequest {
            topic: topic.into(),
            partition: Some(0),
            record_batch: batch.into(),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

/// A broker whose request budget is the smallest allowed, one largest
/// request (returned), with `topic` taking batches up to `max_batch_bytes`.
async fn with_smallest_request_budget(
    dir: &std::path::Path,
    topic: &str,
    max_batch_bytes: u32,
) -> (Broker, u64) {
    let budget = carteiro_server::server::GRPC_REQUEST_BYTES_MAX as u64;
    let broker = Broker::start(dir, &["--max-request-bytes-in-flight", &budget.to_string()]);
    let config = proto::TopicConfig {
        max_batch_bytes: Some(max_batch_bytes),
        ..small_topic(512 * MIB)
    };
    create_topic(&broker, topic, 1, config).await;
    (broker, budget)
}

#[tokio::test(flavor = "multi_thread")]
async fn small_segments_under_a_low_open_files_limit_run_out_of_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 128 descriptors in all; before, each closed segment kept three open,
    // and 336 produces to such a topic exhausted a limit of 1024.
    let broker = Broker::start_with_open_files(dir.path(), &[], 128);
    create_topic(&broker, "rolls", 1, small_topic(64 * 1024)).await;
    let mut client = broker.broker().await;
    // 16 kB records, three to a 64 KiB segment: 600 produces make 200
    // segments, 600 files, several times the limit.
    let value = "r".repeat(16_000);
    for i in 0..600 {
        let batch = batch_of(&[format!("{i:04}{value}")]);
        produce_batch(&mut client, "rolls", batch)
            .await
            .unwrap_or_else(|e| panic!("produce {i}: {e:?}"));
    }
    let described = broker
        .admin()
        .await
        .describe_topic(proto::DescribeTopicRequest {
            name: "rolls".into(),
        })
        .await
        .expect("describe")
        .into_inner();
    let segments = described.partition_details[0].segment_count;
    assert!(segments >= 150, "{segments} segments");
    // Every record reads back, from every segment, in order.
    let records = fetch_all(&mut client, "rolls", 0, 0).await;
    assert_eq!(records.len(), 600);
    for (i, r) in records.iter().enumerate() {
        assert!(
            r.value
                .as_ref()
                .expect("value")
                .starts_with(format!("{i:04}").as_bytes())
        );
    }
    let open = open_files(broker.pid());
    eprintln!("{open} descriptors open for {segments} segments");
    assert!(
        open < 128,
        "{open} descriptors open for {segments} segments"
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_large_fetches_stays_within_the_reply_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let budget = 32 * MIB;
    let broker = Broker::start(
        dir.path(),
        &["--max-fetch-bytes-in-flight", &budget.to_string()],
    );
    create_topic(&broker, "large", 1, small_topic(64 * MIB)).await;
    let mut client = broker.broker().await;
    // 24 MiB stored, in 1 MB batches.
    let value = "f".repeat(1_000_000);
    for _ in 0..24 {
        produce_batch(&mut client, "large", batch_of(&[value.as_str()]))
            .await
            .expect("produce");
    }
    let before = status_kb(broker.pid(), "VmHWM");
    // 16 clients at once, each asking for everything (64 MiB).
    let fetches = (0..16).map(|_| {
        let url = broker.url();
        async move {
            let mut client = proto::broker_client::BrokerClient::connect(url)
                .await
                .expect("connect")
                .max_decoding_message_size(128 << 20);
            let reply = client
                .fetch(proto::FetchRequest {
                    partitions: vec![proto::FetchPartition {
                        topic: "large".into(),
                        partition: 0,
                        offset: 0,
                        max_bytes: 64 << 20,
                    }],
                    max_bytes: 64 << 20,
                    max_wait_ms: 60_000,
                    ..Default::default()
                })
                .await
                .expect("fetch")
                .into_inner();
            reply.partitions[0]
                .record_batches
                .iter()
                .map(Bytes::len)
                .sum::<usize>()
        }
    });
    let sizes = join_all(fetches).await;
    assert!(
        sizes.iter().all(|&n| n > 0),
        "every fetch got records: {sizes:?}"
    );
    let grown_mib = (status_kb(broker.pid(), "VmHWM").saturating_sub(before)) / 1024;
    eprintln!("fetch flood: peak memory grew {grown_mib} MiB; reply bytes {sizes:?}");
    // Unbounded, 16 × 24 MiB replies (each also encoded once) would be
    // ~768 MiB; within the budget the peak grows by at most a few budgets.
    assert!(
        grown_mib <= 4 * budget / MIB,
        "peak memory grew {grown_mib} MiB under a {} MiB budget (replies {sizes:?})",
        budget / MIB
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_are_counted_before_they_are_decoded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "events", 1, small_topic(MIB)).await;
    let produce = "/carteiro.v1.Broker/Produce";
    // Over the largest request: refused from its length prefix, naming the limit.
    let huge = Bytes::from(vec![0u8; 65 * MIB as usize]);
    let refused = call_raw(&broker, produce, huge)
        .await
        .expect_err("too large");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("exceeds the limit")
            && refused
                .message()
                .contains(&carteiro_server::server::GRPC_REQUEST_BYTES_MAX.to_string()),
        "{refused:?}"
    );
    // Not protobuf, and a string field that is not UTF-8: bad input, not INTERNAL.
    let garbage = call_raw(&broker, produce, Bytes::from_static(b"\xff\xff\xff\xff"))
        .await
        .expect_err("not protobuf");
    assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");
    let mut not_utf8 = proto::ProduceRequest {
        topic: "events".into(),
        partition: Some(0),
        ..Default::default()
    }
    .encode_to_vec();
    let at = not_utf8
        .windows(6)
        .position(|w| w == b"events")
        .expect("topic bytes");
    not_utf8[at] = 0xff;
    let bad_string = call_raw(&broker, produce, Bytes::from(not_utf8))
        .await
        .expect_err("topic not UTF-8");
    assert_eq!(bad_string.code(), Code::InvalidArgument, "{bad_string:?}");
    // The Groups service's own smaller limit answers the same way.
    let big_join = call_raw(
        &broker,
        "/carteiro.v1.Groups/JoinGroup",
        Bytes::from(vec![0u8; 5 * MIB as usize]),
    )
    .await
    .expect_err("over the Groups limit");
    assert_eq!(big_join.code(), Code::InvalidArgument, "{big_join:?}");
    // Nothing was stored, and the broker still serves.
    let mut client = broker.broker().await;
    assert!(fetch_all(&mut client, "events", 0, 0).await.is_empty());
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_large_produce_requests_stays_within_the_request_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, budget) = with_smallest_request_budget(dir.path(), "bulk", 50_000_000).await;
    let before = status_kb(broker.pid(), "VmHWM");
    // 10 clients each send a 48 MB batch at once: 480 MB if all were held;
    // the budget holds one at a time (beside it, each connection's HTTP/2
    // window, 2 MiB, is buffered whatever the budget).
    let value = "p".repeat(48_000_000);
    let batch = Bytes::from(batch_of(&[value.as_str()]));
    let sends = (0..10).map(|_| {
        let (url, batch) = (broker.url(), batch.clone());
        async move {
            let mut client = proto::broker_client::BrokerClient::connect(url)
                .await
                .expect("connect")
                .max_encoding_message_size(64 << 20);
            client
                .produce(proto::ProduceRequest {
                    topic: "bulk".into(),
                    partition: Some(0),
                    record_batch: batch,
                    ..Default::default()
                })
                .await
                .map(|_| ())
        }
    });
    let results = join_all(sends).await;
    let mut stored = 0;
    for result in &results {
        match result {
            Ok(()) => stored += 1,
            // Waiting past the bound is the only other outcome.
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
        }
    }
    assert!(stored > 0, "{results:?}");
    let grown_mib = (status_kb(broker.pid(), "VmHWM").saturating_sub(before)) / 1024;
    eprintln!("produce flood: peak memory grew {grown_mib} MiB; {stored} of 10 stored");
    assert!(
        grown_mib <= 2 * budget / MIB,
        "peak memory grew {grown_mib} MiB under a {} MiB request budget",
        budget / MIB
    );
    let mut client = broker.broker().await;
    assert_eq!(fetch_all(&mut client, "bulk", 0, 0).await.len(), stored);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_descriptors_is_resource_exhausted_and_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start_with_open_files(dir.path(), &[], 64);
    create_topic(&broker, "rolls", 1, small_topic(64 * 1024)).await;
    let mut client = broker.broker().await;
    // Sockets that take every descriptor left: the accept loop meets EMFILE
    // and backs off instead of spinning.
    let sockets: Vec<std::net::TcpStream> = (0..80)
        .filter_map(|_| std::net::TcpStream::connect(&broker.address).ok())
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while open_files(broker.pid()) < 64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker never filled its descriptors ({} open)",
            open_files(broker.pid())
        );
        tokio::task::yield_now().await;
    }
    // A produce that needs a new segment cannot open its files: it is told
    // so as RESOURCE_EXHAUSTED, and nothing is half-written.
    let value = "e".repeat(16_000);
    let mut refused = None;
    let mut stored = 0;
    for i in 0..12 {
        match produce_batch(&mut client, "rolls", batch_of(&[format!("{i:02}{value}")])).await {
            Ok(()) => stored += 1,
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("a produce needing new files is refused while none are left");
    eprintln!("after {stored} produces: {refused:?}");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("open files"), "{refused:?}");
    // With the sockets gone, everything works again, on old and new connections.
    drop(sockets);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let retried = produce_batch(
            &mut client,
            "rolls",
            batch_of(&[format!("{stored:02}{value}")]),
        )
        .await;
        match retried {
            Ok(()) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(std::time::Instant::now() < deadline, "{status:?}");
                tokio::task::yield_now().await;
            }
        }
    }
    stored += 1;
    let mut fresh = broker.broker().await;
    let records = fetch_all(&mut fresh, "rolls", 0, 0).await;
    assert_eq!(records.len(), stored);
    for (i, r) in records.iter().enumerate() {
        assert!(
            r.value
                .as_ref()
                .expect("value")
                .starts_with(format!("{i:02}").as_bytes())
        );
    }
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_produce_streams_hold_none_of_the_request_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, _) = with_smallest_request_budget(dir.path(), "idle", 40_000_000).await;
    let value = "i".repeat(30_000_000);
    let batch = Bytes::from(batch_of(&[value.as_str()]));
    let request = || proto::ProduceRequest {
        topic: "idle".into(),
        partition: Some(0),
        record_batch: batch.clone(),
        ..Default::default()
    };
    // Three streams each send a 30 MB batch, get it acknowledged, then stay
    // open and silent: 90 MB if each kept its message's share.
    let mut open_streams = Vec::new();
    for _ in 0..3 {
        let mut client = broker.broker().await.max_encoding_message_size(64 << 20);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(request()).await.expect("queued");
        let mut replies = client
            .produce_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("stream opened")
            .into_inner();
        let reply = replies.message().await.expect("reply").expect("one reply");
        assert_eq!(reply.error_code, 0, "{reply:?}");
        open_streams.push((tx, replies));
    }
    // A unary produce of the same size is served at once.
    let mut client = broker.broker().await.max_encoding_message_size(64 << 20);
    client
        .produce(request())
        .await
        .expect("served while the streams idle");
    drop(open_streams);
    let mut reader = broker.broker().await;
    assert_eq!(
        fetch_all(&mut reader, "idle", 0, 0).await.len(),
        4,
        "every batch stored"
    );
    broker.stop();
}
