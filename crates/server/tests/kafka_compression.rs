//! Compressed batches from a stock Kafka client: kcat (librdkafka, which
//! writes snappy as one raw block, not in xerial framing) produces with
//! each codec through the Kafka listener; the batches are stored
//! compressed as sent, and come back identical to kcat and to a decoded
//! gRPC fetch.
//!
//! `bash scripts/test` installs kcat (Debian's); a missing kcat fails the
//! test, naming it. Every kcat run is bounded by coreutils' `timeout`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use carteiro::record::{BatchHeader, Compression, XERIAL_SNAPPY_MAGIC};
use common::*;

/// Longest one kcat run may take, in seconds.
const KCAT_TIMEOUT_S: &str = "60";

/// Runs kcat with `args`, feeding it `input`; its standard output.
fn kcat(args: &[&str], input: &str) -> String {
    let mut child = Command::new("timeout")
        .arg(KCAT_TIMEOUT_S)
        .arg("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("coreutils timeout runs");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("input written");
    let output = child.wait_with_output().expect("kcat ran");
    assert!(
        output.status.success(),
        "kcat {args:?} failed ({:?}; 127 means it is missing: `bash scripts/test` installs it): {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_batches_of_every_codec_are_stored_as_sent_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let kafka = broker.kafka();
    let mut client = broker.broker().await;
    for codec in &Compression::ALL[1..] {
        let topic = format!("kcat-{}", codec.name());
        create_topic(&broker, &topic, 1, small_topic(1 << 20)).await;
        let lines: Vec<String> = (0..200)
            .map(|i| format!("{} message {i}, and again, and again", codec.name()))
            .collect();
        let input = lines.join("\n") + "\n";
        let settings = ["-X", "linger.ms=20", "-X", "message.timeout.ms=20000"];
        let mut args = vec!["-b", &kafka, "-P", "-t", &topic, "-z", codec.name()];
        args.extend(settings);
        kcat(&args, &input);

        // Stored compressed, with kcat's codec and framing.
        let raw = raw_bytes(&mut client, &topic, 0).await;
        let header = BatchHeader::parse(&raw).expect("a stored batch");
        assert_eq!(header.attributes.compression(), *codec);
        if *codec == Compression::Snappy {
            let section = &raw[carteiro::record::BATCH_HEADER_BYTES..];
            assert!(
                !section.starts_with(&XERIAL_SNAPPY_MAGIC),
                "librdkafka writes raw snappy"
            );
        }

        let consumed = kcat(
            &["-b", &kafka, "-C", "-t", &topic, "-e", "-q", "-f", "%s\n"],
            "",
        );
        assert_eq!(consumed.lines().collect::<Vec<_>>(), lines, "by kcat");
        let decoded = fetch_all(&mut client, &topic, 0, 0).await;
        assert_eq!(record_values(&decoded), lines, "decoded by the broker");
    }
}
