//! The HTTP listener: `/metrics` agrees with what was produced and with
//! `logctl groups describe`'s lag; `/readyz` says not ready until recovery
//! ends while `/livez` answers; bad requests get a 4xx and change nothing.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Broker, START_TIMEOUT, broker_binary, logctl_binary, produce_values};

/// `(status, body)` of one HTTP/1.1 request for `target`, or `None` if
/// nothing listens yet.
fn http_get(address: &str, target: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let request = format!("GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).ok()?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

/// The value of the sample `name{labels}` in a scrape.
fn sample(scrape: &str, name_and_labels: &str) -> Option<u64> {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_was_produced_and_the_group_lag_that_logctl_shows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let http = broker.http();
    common::create_topic(&broker, "metered", 1, common::small_topic(1 << 20)).await;
    let mut client = broker.broker().await;
    let values: Vec<String> = (0..10).map(|i| format!("record {i}")).collect();
    produce_values(&mut client, "metered", &values)
        .await
        .expect("produced");
    // A group consumes 4 of the 10 and commits them.
    let consumed = Command::new(logctl_binary())
        .args([
            "--broker",
            &broker.address,
            "consume",
            "metered",
            "-g",
            "meters",
        ])
        .args(["--from-beginning", "-n", "4"])
        .output()
        .expect("logctl consume");
    assert!(consumed.status.success(), "{consumed:?}");
    let described = common::describe_group(&broker, "meters").expect("logctl groups describe");
    let lag = described["partitions"][0]["lag"].as_u64().expect("a lag");
    assert_eq!(lag, 6);

    let (status, scrape) = http_get(&http, "/metrics").expect("scraped");
    assert_eq!(status, 200, "{scrape}");
    let partition = "{topic=\"metered\",partition=\"0\"}";
    assert_eq!(
        sample(
            &scrape,
            &format!("carteiro_produced_records_total{partition}")
        ),
        Some(10),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, &format!("carteiro_log_end_offset{partition}")),
        Some(10)
    );
    assert!(
        sample(
            &scrape,
            &format!("carteiro_fetched_records_total{partition}")
        )
        .is_some_and(|n| n >= 4)
    );
    assert!(
        sample(
            &scrape,
            &format!("carteiro_produced_bytes_total{partition}")
        )
        .is_some_and(|n| n > 0)
    );
    assert_eq!(
        sample(
            &scrape,
            "carteiro_group_lag_records{group=\"meters\",topic=\"metered\",partition=\"0\"}"
        ),
        Some(lag),
        "the lag logctl shows"
    );
    assert_eq!(
        sample(
            &scrape,
            "carteiro_group_committed_offset{group=\"meters\",topic=\"metered\",partition=\"0\"}"
        ),
        Some(4)
    );
    assert_eq!(sample(&scrape, "carteiro_ready"), Some(1));
    assert!(sample(&scrape, "carteiro_process_open_fds").is_some_and(|n| n > 0));
    assert!(scrape.ends_with("# EOF\n"), "{scrape}");
}

#[test]
fn readyz_waits_for_recovery_while_livez_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port();
    let http = format!("127.0.0.1:{port}");
    // An injected slow start: recovery begins 3 s after the HTTP port opens.
    let mut child = Command::new(broker_binary())
        .args(["--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"])
        .args(["--http-listen", &http, "--debug-startup-delay-ms", "3000"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn carteiro");
    let deadline = Instant::now() + START_TIMEOUT;
    // The first answer: alive, not ready.
    let first = loop {
        if let Some(answer) = http_get(&http, "/readyz") {
            break answer;
        }
        assert!(Instant::now() < deadline, "the HTTP listener never opened");
    };
    assert_eq!(first.0, 503, "{first:?}");
    assert!(first.1.contains("recovering"), "{first:?}");
    assert_eq!(http_get(&http, "/livez").map(|a| a.0), Some(200));
    let ready = loop {
        let answer = http_get(&http, "/readyz").expect("answers");
        if answer.0 == 200 {
            break answer;
        }
        assert!(Instant::now() < deadline, "never ready: {answer:?}");
    };
    assert!(ready.1.contains("ready"));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn bad_requests_get_a_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let http = broker.http();
    let unknown = http_get(&http, "/nope").expect("answered");
    assert_eq!(unknown.0, 404);
    assert!(unknown.1.contains("/metrics"), "{unknown:?}");
    let tricks = http_get(&http, "/metrics/../../etc/passwd").expect("answered");
    assert_eq!(tricks.0, 404, "{tricks:?}");
    let huge = format!("/metrics?{}", "x".repeat(200_000));
    let answer = http_get(&http, &huge);
    assert!(
        answer
            .as_ref()
            .is_none_or(|(status, _)| (400..500).contains(status)),
        "{answer:?}"
    );
    // The listener still serves.
    assert_eq!(http_get(&http, "/livez").map(|a| a.0), Some(200));
    let before = std::fs::read_dir(dir.path()).expect("data dir").count();
    assert_eq!(http_get(&http, "/readyz").map(|a| a.0), Some(200));
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("data dir").count(),
        before
    );
}

/// Kafka's wire, by hand, for the request metrics test.
#[path = "kafka/raw.rs"]
mod raw;

/// `sample`, for a line that must be there.
fn must(scrape: &str, name_and_labels: &str) -> u64 {
    sample(scrape, &format!("{name_and_labels} "))
        .unwrap_or_else(|| panic!("no {name_and_labels} in\n{scrape}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn request_metrics_count_both_edges_their_errors_limits_and_syncs() {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiVersionsRequest, ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let dir = tempfile::tempdir().expect("tempdir");
    // Two connections per edge: a third Kafka one is refused at accept.
    let broker = Broker::start(dir.path(), &["--max-connections", "2"]);
    let http = broker.http();
    let kafka = broker.kafka();
    // One gRPC connection for every call.
    let channel = tonic::transport::Channel::from_shared(broker.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut admin = carteiro::proto::admin_client::AdminClient::new(channel.clone());
    let mut client = carteiro::proto::broker_client::BrokerClient::new(channel);
    admin
        .create_topic(carteiro::proto::CreateTopicRequest {
            name: "timed".into(),
            partitions: 1,
            config: Some(common::small_topic(1 << 20)),
        })
        .await
        .expect("create topic");
    // Three durable produces over gRPC (the topic syncs every append).
    for i in 0..3 {
        produce_values(&mut client, "timed", &[format!("grpc {i}")])
            .await
            .expect("produced");
    }
    // A gRPC error: NOT_FOUND.
    let missing = admin
        .describe_topic(carteiro::proto::DescribeTopicRequest {
            name: "no-such-topic".into(),
        })
        .await
        .expect_err("no such topic");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // Kafka: ApiVersions, a durable produce, and one to a partition that
    // does not exist (UNKNOWN_TOPIC_OR_PARTITION, 3).
    let mut first = raw::KafkaConnection::open(&kafka);
    let versions = first.call(&ApiVersionsRequest::default(), 3);
    assert_eq!(versions.error_code, 0);
    let produce = |partition: i32| {
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("timed")))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(common::batch_of(&["kafka"]).into())),
                    ]),
            ])
    };
    let stored = first.call(&produce(0), 7);
    assert_eq!(raw::first_produce_error(&stored), 0);
    let refused = first.call(&produce(99), 7);
    assert_eq!(raw::first_produce_error(&refused), 3);
    // A second connection is served; a third is over the limit.
    let mut second = raw::KafkaConnection::open(&kafka);
    assert_eq!(second.call(&ApiVersionsRequest::default(), 3).error_code, 0);
    let mut third = raw::KafkaConnection::open(&kafka);
    assert!(third.is_closed_by_broker(), "a third connection is refused");

    let grpc = |api: &str| format!("edge=\"grpc\",api=\"{api}\"");
    let kafka_api = |api: &str| format!("edge=\"kafka\",api=\"{api}\"");
    // A Kafka request is counted once its reply is written, which the
    // client may read first: scrape until the Kafka requests show (bounded).
    let deadline = Instant::now() + START_TIMEOUT;
    let scrape = loop {
        let (status, scrape) = http_get(&http, "/metrics").expect("scraped");
        assert_eq!(status, 200, "{scrape}");
        let counted = |api: &str| {
            sample(
                &scrape,
                &format!("carteiro_requests_total{{{}}}", kafka_api(api)),
            )
        };
        if counted("ApiVersions") == Some(2) && counted("Produce") == Some(2) {
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "the requests were never counted: {scrape}"
        );
    };
    // Requests by edge and API, and their durations.
    assert_eq!(
        must(
            &scrape,
            &format!("carteiro_requests_total{{{}}}", grpc("Produce"))
        ),
        3
    );
    assert_eq!(
        must(
            &scrape,
            &format!("carteiro_requests_total{{{}}}", grpc("CreateTopic"))
        ),
        1
    );
    assert_eq!(
        must(
            &scrape,
            &format!("carteiro_requests_total{{{}}}", kafka_api("ApiVersions"))
        ),
        2
    );
    assert_eq!(
        must(
            &scrape,
            &format!("carteiro_requests_total{{{}}}", kafka_api("Produce"))
        ),
        2
    );
    for labels in [grpc("Produce"), kafka_api("Produce")] {
        let count = must(
            &scrape,
            &format!("carteiro_request_duration_seconds_count{{{labels}}}"),
        );
        let inf = must(
            &scrape,
            &format!("carteiro_request_duration_seconds_bucket{{le=\"+Inf\",{labels}}}"),
        );
        assert!(count > 0 && inf == count, "{labels}: {count} vs {inf}");
    }
    // Errors by code, in each edge's own names.
    assert_eq!(
        must(
            &scrape,
            &format!(
                "carteiro_request_errors_total{{{},code=\"NOT_FOUND\"}}",
                grpc("DescribeTopic")
            )
        ),
        1
    );
    assert_eq!(
        must(
            &scrape,
            &format!(
                "carteiro_request_errors_total{{{},code=\"UNKNOWN_TOPIC_OR_PARTITION\"}}",
                kafka_api("Produce")
            )
        ),
        1
    );
    assert!(
        sample(
            &scrape,
            &format!("carteiro_request_errors_total{{{}", grpc("Produce"))
        )
        .is_none(),
        "no gRPC produce failed"
    );
    // The refused connection, and the two open.
    assert_eq!(
        must(
            &scrape,
            "carteiro_limit_refusals_total{edge=\"kafka\",limit=\"max_connections\"}"
        ),
        1
    );
    assert_eq!(
        must(
            &scrape,
            "carteiro_limit_refusals_total{edge=\"grpc\",limit=\"max_requests_in_flight\"}"
        ),
        0
    );
    assert_eq!(
        must(&scrape, "carteiro_open_connections{edge=\"kafka\"}"),
        2
    );
    assert!(must(&scrape, "carteiro_open_connections{edge=\"grpc\"}") >= 1);
    assert_eq!(
        must(&scrape, "carteiro_requests_in_flight{edge=\"kafka\"}"),
        0
    );
    must(&scrape, "carteiro_requests_in_flight{edge=\"grpc\"}");
    // Storage: 4 durable appends, each synced by a sync that covered it.
    assert_eq!(
        must(&scrape, "carteiro_storage_append_duration_seconds_count"),
        4
    );
    let syncs = must(&scrape, "carteiro_storage_sync_duration_seconds_count");
    assert!((1..=4).contains(&syncs), "{syncs} syncs");
    assert_eq!(must(&scrape, "carteiro_storage_sync_batches_count"), syncs);
    assert!(
        scrape.contains("carteiro_storage_sync_batches_sum 4"),
        "{scrape}"
    );
    // Each of the 4 acknowledgements waited once for its sync.
    assert_eq!(
        must(&scrape, "carteiro_storage_durable_wait_seconds_count"),
        4
    );
    assert!(scrape.contains("# TYPE carteiro_request_duration_seconds histogram"));
    drop((first, second, third));
}

#[test]
fn http_connections_past_the_limit_are_closed_and_the_others_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &["--max-connections", "2"]);
    let http = broker.http();
    // Two idle connections take both places.
    let first = TcpStream::connect(&http).expect("connect");
    let second = TcpStream::connect(&http).expect("connect");
    let refused = http_get(&http, "/livez");
    assert!(
        refused.is_none(),
        "a third connection is refused: {refused:?}"
    );
    drop(first);
    // The place is given back once the broker sees the connection go.
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some((status, _)) = http_get(&http, "/livez") {
            assert_eq!(status, 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never given back"
        );
    }
    drop(second);
}
