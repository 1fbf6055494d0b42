//! kcat (Debian's, librdkafka 2.0.2) against a real broker: metadata at the
//! advertised address, 10,000 lines produced plain and with each codec and
//! read back identical by kcat and by `logctl` over gRPC, and records
//! produced over gRPC read back identical by kcat.
//!
//! `bash scripts/test` installs kcat.

mod common;
#[path = "kafka/tools.rs"]
mod tools;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Broker, logctl_binary};
use tools::{Ran, assert_passed, run_bounded};

/// Longest a kcat or logctl run may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines per produce.
const LINES: usize = 10_000;

/// Runs `program` with `args`, `input` on its standard input, bounded by
/// [`TOOL_TIMEOUT`]; fails the test if it overruns or fails.
fn run(program: &str, args: &[&str], input: &[u8]) -> Ran {
    let ran = run_bounded(Command::new(program).args(args), input, TOOL_TIMEOUT);
    assert_passed(&ran, &format!("{program} {args:?}"));
    ran
}

fn lines(prefix: &str) -> String {
    (0..LINES).map(|i| format!("{prefix} line {i}\n")).collect()
}

/// kcat's output of every record of `topic`, from the start to the end.
fn kcat_read(address: &str, topic: &str) -> String {
    run("kcat", &["-b", address, "-C", "-t", topic, "-e", "-q"], b"").stdout
}

fn logctl_read(broker: &Broker, topic: &str) -> String {
    run(
        logctl_binary().to_str().expect("utf-8 path"),
        &[
            "--broker",
            &broker.address,
            "consume",
            topic,
            "--from-beginning",
            "-n",
            &LINES.to_string(),
        ],
        b"",
    )
    .stdout
}

#[test]
fn kcat_lists_the_broker_at_its_advertised_address_and_the_topics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let advertised = format!("localhost:{port}");
    let broker = Broker::start(
        dir.path(),
        &["--kafka-listen", &listen, "--kafka-advertised", &advertised],
    );
    run("kcat", &["-b", &listen, "-P", "-t", "listed"], b"one\n");
    let text = run("kcat", &["-b", &listen, "-L"], b"").stdout;
    assert!(
        text.contains(&format!("broker 0 at {advertised}")),
        "{text}"
    );
    assert!(
        text.contains("topic \"listed\" with 1 partitions"),
        "{text}"
    );
    assert!(!text.contains("__consumer_offsets"), "{text}");
    drop(broker);
}

#[test]
fn kcat_lines_come_back_identical_through_kcat_and_grpc_with_every_codec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let address = broker.kafka();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("lines-{codec}");
        let sent = lines(codec);
        run(
            "kcat",
            &[
                "-b", &address, "-P", "-t", &topic, "-z", codec, "-X", "acks=all",
            ],
            sent.as_bytes(),
        );
        assert_eq!(kcat_read(&address, &topic), sent, "{codec}: through kcat");
        assert_eq!(logctl_read(&broker, &topic), sent, "{codec}: through gRPC");
    }
}

#[test]
fn records_produced_over_grpc_come_back_identical_through_kcat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let sent = lines("grpc");
    run(
        logctl_binary().to_str().expect("utf-8 path"),
        &["--broker", &broker.address, "topics", "create", "from-grpc"],
        b"",
    );
    run(
        logctl_binary().to_str().expect("utf-8 path"),
        &["--broker", &broker.address, "produce", "from-grpc"],
        sent.as_bytes(),
    );
    assert_eq!(kcat_read(&broker.kafka(), "from-grpc"), sent);
}

#[test]
fn logctl_shows_a_kafka_group_with_its_members_partitions_commits_and_lag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &["--default-partitions", "2"]);
    let address = broker.kafka();
    let sent: String = (0..10).map(|i| format!("{i}\n")).collect();
    run(
        "kcat",
        &["-b", &address, "-P", "-t", "watched"],
        sent.as_bytes(),
    );
    // A consumer that stays in the group until killed.
    let mut consumer = Command::new("kcat")
        .args(["-b", &address, "-G", "watchers", "watched", "-q"])
        .args([
            "-X",
            "auto.offset.reset=earliest",
            "-X",
            "auto.commit.interval.ms=100",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat: `bash scripts/test` installs it");
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let described = loop {
        let described = common::describe_group(&broker, "watchers");
        let settled = described.as_ref().is_some_and(|d| {
            d["members"].as_array().is_some_and(|m| m.len() == 1)
                && d["partitions"].as_array().is_some_and(|p| p.len() == 2)
                && d["total_lag"] == 0
        });
        if settled {
            break described.expect("described");
        }
        assert!(
            Instant::now() < deadline,
            "the group did not settle: {described:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = consumer.kill();
    let _ = consumer.wait();
    let mut partitions: Vec<String> = described["members"][0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p.as_str().expect("text").to_string())
        .collect();
    partitions.sort();
    assert_eq!(partitions, ["watched/0", "watched/1"], "{described}");
    let committed: i64 = described["partitions"]
        .as_array()
        .expect("commits")
        .iter()
        .map(|p| p["committed_offset"].as_i64().expect("offset"))
        .sum();
    assert_eq!(committed, 10, "{described}");
}
