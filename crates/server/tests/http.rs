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
    let http = broker
        .http_address
        .clone()
        .expect("the HTTP listener is on");
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
    let described = Command::new(logctl_binary())
        .args([
            "--broker",
            &broker.address,
            "--output",
            "json",
            "groups",
            "describe",
            "meters",
        ])
        .output()
        .expect("logctl groups describe");
    let described: serde_json::Value = serde_json::from_slice(&described.stdout).expect("JSON");
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
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
    let http = broker
        .http_address
        .clone()
        .expect("the HTTP listener is on");
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
