//! Bounded under hostile load, tried as an outside client would: abandoned
//! produce streams on an interval topic, long polls flooding one
//! connection, sockets that never start HTTP/2, a stream request that is
//! not a request, spoofed and absurd settings. Each case checks that other
//! clients are still served and that the broker stops promptly.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use carteiro::proto;
use common::*;
use tonic::Code;
use tonic::transport::Channel;

/// A bounded wait for `done`, checking it after each yield.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::task::yield_now().await;
    }
}

fn interval_topic() -> proto::TopicConfig {
    proto::TopicConfig {
        flush: proto::FlushPolicy::Interval as i32,
        flush_interval_ms: Some(60_000),
        ..small_topic(1 << 20)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn abandoned_produce_streams_on_an_interval_topic_lock_nobody_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &["--max-requests-in-flight", "8"]);
    create_topic(&broker, "slow", 1, interval_topic()).await;
    // Each stream sends a durable produce, which waits for the flush a
    // minute away, then its client goes away.
    for i in 0..20 {
        let mut client = broker.broker().await;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(proto::ProduceRequest {
            topic: "slow".into(),
            partition: Some(0),
            records: vec![record(None, &format!("abandoned {i}"))],
            ..Default::default()
        })
        .await
        .expect("queued");
        let replies = client
            .produce_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("stream opened");
        drop(replies);
        drop(tx);
    }
    // Everyone else is served: the abandoned requests gave their places back.
    let mut client = broker.broker().await;
    until("a produce is admitted again", async || {
        client
            .produce(proto::ProduceRequest {
                topic: "slow".into(),
                partition: Some(0),
                records: vec![record(None, "served")],
                acks: proto::Acks::Appended as i32,
                ..Default::default()
            })
            .await
            .is_ok()
    })
    .await;
    let fetched = client
        .fetch(fetch_one("slow", 0, 0))
        .await
        .expect("fetch admitted");
    assert!(fetched.into_inner().partitions[0].error.is_none());
    // And SIGTERM stops the broker at once (stop() bounds the wait).
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn long_polls_flooding_one_connection_starve_nobody_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &["--max-requests-in-flight", "16"]);
    create_topic(&broker, "quiet", 1, small_topic(1 << 20)).await;
    let poller = broker.broker().await;
    // 1,024 long polls on one connection (the client queues those past the
    // server's 256 streams per connection).
    let mut polls = Vec::new();
    for _ in 0..1024 {
        let mut poller = poller.clone();
        polls.push(tokio::spawn(async move {
            poller
                .fetch(proto::FetchRequest {
                    min_bytes: 1,
                    max_wait_ms: 60_000,
                    ..fetch_one("quiet", 0, 0)
                })
                .await
        }));
    }
    // The connection's own cap refuses the polls past it...
    let mut refused_status = None;
    until("a poll past the connection's cap is refused", async || {
        if refused_status.is_some() {
            return true;
        }
        for poll in polls.iter_mut() {
            if poll.is_finished() {
                let status = poll.await.expect("task").expect_err("refused");
                refused_status = Some(status);
                return true;
            }
        }
        false
    })
    .await;
    let status = refused_status.expect("one refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("fetches in flight on one connection")
            && status.message().contains("limit of 64"),
        "{status:?}"
    );
    // ...while another client produces, creates topics, lists them and
    // joins a group: none of that waits on the long polls.
    let mut other = broker.broker().await;
    for i in 0..20 {
        other
            .produce(proto::ProduceRequest {
                topic: "quiet".into(),
                partition: Some(0),
                records: vec![record(None, &format!("r{i}"))],
                ..Default::default()
            })
            .await
            .expect("produce is not starved");
    }
    create_topic(&broker, "another", 1, small_topic(64 * 1024)).await;
    let listed = broker
        .admin()
        .await
        .list_topics(proto::ListTopicsRequest {})
        .await
        .expect("admin is not starved");
    assert_eq!(listed.into_inner().topics.len(), 2);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn sockets_that_never_start_http2_are_closed_and_free_their_places() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(
        dir.path(),
        &[
            "--max-connections",
            "4",
            "--connection-handshake-timeout-ms",
            "500",
        ],
    );
    // Four sockets take every place and say nothing.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(
            tokio::net::TcpStream::connect(&broker.address)
                .await
                .expect("connect"),
        );
    }
    // The broker closes each after the handshake timeout...
    for socket in &mut idle {
        // The broker's HTTP/2 settings may come first; then the close.
        let mut seen = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(30), async {
            use tokio::io::AsyncReadExt;
            socket.read_to_end(&mut seen).await
        })
        .await;
        assert!(closed.is_ok(), "closed within 30 s");
    }
    // ...and a real client is served again.
    until(
        "a client is served after the idle sockets are closed",
        async || match Channel::from_shared(broker.url())
            .expect("url")
            .connect()
            .await
        {
            Ok(channel) => carteiro::proto::admin_client::AdminClient::new(channel)
                .list_topics(proto::ListTopicsRequest {})
                .await
                .is_ok(),
            Err(_) => false,
        },
    )
    .await;
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_request_that_is_not_a_request_ends_the_stream_with_invalid_argument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "events", 1, small_topic(1 << 20)).await;
    let good = {
        use prost::Message;
        proto::ProduceRequest {
            topic: "events".into(),
            partition: Some(0),
            records: vec![record(None, "first")],
            ..Default::default()
        }
        .encode_to_vec()
    };
    let channel = Channel::from_shared(broker.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    // A good request, then bytes that are no protobuf message at all.
    let requests = tokio_stream::iter(vec![
        Bytes::from(good),
        Bytes::from_static(b"\xff\xff\xff\xff"),
    ]);
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/carteiro.v1.Broker/ProduceStream");
    let mut replies = grpc
        .streaming(tonic::Request::new(requests), path, RawCodec)
        .await
        .expect("stream opened")
        .into_inner();
    let first = replies
        .message()
        .await
        .expect("the first request is answered");
    assert!(first.is_some(), "a reply to the good request");
    let ended = replies
        .message()
        .await
        .expect_err("the stream ends with an error, not OK");
    assert_eq!(ended.code(), Code::InvalidArgument, "{ended:?}");
    assert!(ended.message().contains("request 1"), "{ended:?}");
    let mut client = broker.broker().await;
    assert_eq!(fetch_all(&mut client, "events", 0, 0).await.len(), 1);
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_setting_has_a_named_maximum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let refused = broker
        .admin()
        .await
        .create_topic(proto::CreateTopicRequest {
            name: "forever".into(),
            partitions: 1,
            config: Some(proto::TopicConfig {
                flush: proto::FlushPolicy::Interval as i32,
                flush_interval_ms: Some(u64::MAX),
                ..Default::default()
            }),
        })
        .await
        .expect_err("an interval past the maximum");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("flush interval_ms") && refused.message().contains("60000"),
        "{refused:?}"
    );
    broker.stop();
}
