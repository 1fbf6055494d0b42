//! SIGKILL during a stream of `acks=all` produces from a librdkafka client
//! (confluent-kafka): after a restart, every record the client was told is
//! acknowledged is there, at the offset it was told.
//!
//! `bash scripts/test` installs confluent-kafka into target/python-venv.

mod common;
#[path = "kafka/tools.rs"]
mod tools;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Broker, fetch_all, record_values};

/// Records acknowledged before the broker is killed.
const ACKED_BEFORE_KILL: usize = 3_000;
/// Longest the client may take to get them.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(120);
const PARTITIONS: u32 = 3;

/// An acknowledgement line: `acked <partition> <offset> <value>`.
fn parse_ack(line: &str) -> Option<(u32, i64, String)> {
    let mut words = line.split(' ');
    (words.next()? == "acked").then_some(())?;
    let partition = words.next()?.parse().ok()?;
    let offset = words.next()?.parse().ok()?;
    Some((partition, offset, words.next()?.to_string()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigkill_keeps_every_record_librdkafka_was_told_is_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let partitions = PARTITIONS.to_string();
    let broker = Broker::start(dir.path(), &["--default-partitions", &partitions]);
    let kafka = broker.kafka();
    let mut producer = Command::new(tools::python())
        .arg(tools::scripts().join("acked_producer.py"))
        .args([&kafka, "ledger", "100000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the librdkafka producer");
    let stdout = producer.stdout.take().expect("piped stdout");
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked: Vec<(u32, i64, String)> = Vec::new();
    let deadline = Instant::now() + PRODUCE_TIMEOUT;
    while acked.len() < ACKED_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = received
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("only {} records acknowledged in time", acked.len()));
        acked.extend(parse_ack(&line));
    }
    // Mid-stream: the client has more in flight.
    broker.kill();
    // The client must not reach the restarted broker: what it printed so
    // far is all that the killed broker acknowledged.
    let _ = producer.kill();
    let _ = producer.wait();
    let _ = reader.join();
    acked.extend(received.try_iter().filter_map(|line| parse_ack(&line)));

    let broker = Broker::start(dir.path(), &["--kafka-listen", "127.0.0.1:0"]);
    let mut client = broker.broker().await;
    let mut stored: BTreeMap<(u32, i64), String> = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let records = fetch_all(&mut client, "ledger", partition, 0).await;
        let values = record_values(&records);
        for (record, value) in records.iter().zip(values) {
            stored.insert((partition, record.offset), value);
        }
    }
    let missing: Vec<_> = acked
        .iter()
        .filter(|(p, o, v)| stored.get(&(*p, *o)) != Some(v))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged records are missing or different after the SIGKILL, first {:?}",
        missing.len(),
        acked.len(),
        missing.first()
    );
    println!(
        "{} acknowledged records all present; {} stored in all",
        acked.len(),
        stored.len()
    );
}
