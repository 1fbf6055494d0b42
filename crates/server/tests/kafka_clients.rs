//! Stock Kafka clients against a real broker's Kafka listener: confluent-kafka
//! (librdkafka), kafka-python and KafkaJS, each driven by a script in
//! `tests/kafka/` that checks what a user of that client would rely on and
//! exits non-zero on any failure.
//!
//! `bash scripts/test` installs the clients, pinned: the Python ones into
//! `target/python-venv` (scripts/requirements.txt), KafkaJS into
//! `target/kafka-node` (tests/kafka/package.json and its lock). A test whose
//! client is missing fails, naming that command; none is skipped.

mod common;
#[path = "kafka/tools.rs"]
mod tools;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Broker;
use tools::{Ran, assert_passed as passed, node_modules, python, run_bounded, scripts};

/// Longest one client script may run before it is killed and the test
/// fails. The scripts bound themselves at 60 s (CARTEIRO_SCRIPT_TIMEOUT_S)
/// and every wait inside them at 20 s.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// The seed for whatever a script randomizes: CARTEIRO_TEST_SEED if set
/// (to repeat a run), else the clock. Printed, so a failure can be repeated.
fn seed() -> String {
    let seed = std::env::var("CARTEIRO_TEST_SEED").unwrap_or_else(|_| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        nanos.to_string()
    });
    println!("seed {seed} (CARTEIRO_TEST_SEED={seed} repeats it)");
    seed
}

/// Runs a client script to its end, bounded by [`SCRIPT_TIMEOUT`], and
/// prints what it printed.
fn run(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(scripts())
        .env("CARTEIRO_SCRIPT_TIMEOUT_S", "60")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    let started = Instant::now();
    let ran = run_bounded(&mut command, b"", SCRIPT_TIMEOUT);
    println!(
        "--- {} {}: {} in {:.1} s\n{}",
        program.display(),
        args.join(" "),
        ran.status,
        started.elapsed().as_secs_f64(),
        ran.stdout
    );
    ran
}

/// A broker on ephemeral ports with a fresh data directory.
fn broker(dir: &tempfile::TempDir) -> (Broker, String) {
    let broker = Broker::start(dir.path(), &[]);
    let kafka = broker.kafka();
    (broker, kafka)
}

/// Runs one scenario of `confluent_check.py` against a fresh broker.
fn confluent(scenario: &str, env: &[(&str, &str)]) {
    let python = python();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, kafka) = broker(&dir);
    let ran = run(&python, &["confluent_check.py", &kafka, scenario], env);
    passed(&ran, &format!("confluent-kafka scenario {scenario}"));
}

/// `Producer` with acks 0, 1 and all: N records each, flushed, read back
/// (count, order, keys and values).
#[test]
fn confluent_producer_with_acks_0_1_and_all() {
    // The payloads are random bytes of random lengths.
    let seed = seed();
    confluent("producer", &[("CARTEIRO_TEST_SEED", &seed)]);
}

/// `AdminClient`: create (twice: TOPIC_ALREADY_EXISTS), list, describe
/// configs (a set value and defaults), create partitions 2 -> 4, delete.
#[test]
fn confluent_admin_creates_lists_describes_grows_and_deletes_topics() {
    confluent("admin", &[]);
}

/// Two `Consumer`s of one group split a 4-partition topic and read every
/// record exactly once; when one closes, the other resumes its partitions
/// at its last commit.
#[test]
fn confluent_group_members_split_partitions_and_take_over_at_the_commit() {
    confluent("group", &[]);
}

/// `offsets_for_times` and `get_watermark_offsets` on records produced
/// with explicit timestamps.
#[test]
fn confluent_offsets_for_times_and_watermarks() {
    confluent("offsets", &[]);
}

/// An assign or seek past the end resets per `auto.offset.reset`.
#[test]
fn confluent_offset_past_the_end_resets_to_earliest_or_latest() {
    confluent("reset", &[]);
}

/// Offsets a group committed survive a broker restart: `committed()` reads
/// them back and consumption resumes there.
#[test]
fn confluent_committed_offsets_survive_a_broker_restart() {
    let python = python();
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, kafka) = broker(&dir);
    let address = broker.address.clone();
    let ran = run(
        &python,
        &["confluent_check.py", &kafka, "restart-commit"],
        &[],
    );
    passed(&ran, "confluent-kafka phase 1 (commit)");
    broker.stop();
    let broker = Broker::start_on(&address, dir.path(), &["--kafka-listen", &kafka]);
    assert_eq!(
        broker.kafka_address.as_deref(),
        Some(kafka.as_str()),
        "the restarted broker listens for Kafka where it did"
    );
    let ran = run(
        &python,
        &["confluent_check.py", &kafka, "restart-resume"],
        &[],
    );
    passed(&ran, "confluent-kafka phase 2 (after the restart)");
    broker.stop();
}

/// kafka-python: its version probe sees a modern broker; KafkaAdminClient
/// creates, lists and deletes a topic; KafkaProducer (idempotence off)
/// sends and a KafkaConsumer in a group reads everything back.
#[test]
fn kafka_python_probe_admin_producer_and_group_consumer() {
    let python = python();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, kafka) = broker(&dir);
    let ran = run(&python, &["kafka_python_check.py", &kafka], &[]);
    passed(&ran, "kafka-python");
}

/// KafkaJS: admin createTopics and fetchTopicMetadata, a producer's batch
/// acknowledged, a consumer group reading it all with fromBeginning.
#[test]
fn kafkajs_admin_producer_and_group_consumer() {
    let modules = node_modules();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, kafka) = broker(&dir);
    let node_path = modules.to_string_lossy().into_owned();
    let ran = run(
        Path::new("node"),
        &["kafkajs_check.js", &kafka],
        &[
            ("NODE_PATH", &node_path),
            ("KAFKAJS_NO_PARTITIONER_WARNING", "1"),
        ],
    );
    passed(&ran, "KafkaJS");
}
