//! `logctl bench` run as a user would, against a real broker: every figure
//! of its produce, consume and e2e reports, and the idempotent producer
//! stamps its produce bench sends.

mod cli;
#[path = "../../server/tests/common/mod.rs"]
mod common;

use cli::*;

#[test]
fn bench_produce_consume_and_e2e_report_every_figure() {
    let (_dir, broker, cli) = started();
    let pid = broker.pid().to_string();
    let produced = cli.json(&[
        "bench",
        "produce",
        "--topic",
        "bench",
        "--records",
        "20000",
        "--record-size",
        "100",
        "--batch-size",
        "1000",
        "--partitions",
        "2",
        "--producers",
        "2",
        "--broker-pid",
        &pid,
    ]);
    assert_eq!(produced["records"], 20000);
    assert_eq!(
        produced["bytes"].as_u64().map(|b| b > 2_000_000),
        Some(true)
    );
    for field in ["p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms"] {
        assert!(
            produced["latency"][field].as_f64().is_some_and(|v| v > 0.0),
            "{field}: {produced}"
        );
    }
    assert_eq!(
        produced["latency"]["count"], 20,
        "one latency per produce request"
    );
    assert!(
        produced["records_per_sec"]
            .as_f64()
            .is_some_and(|v| v > 0.0)
    );
    assert!(produced["mb_per_sec"].as_f64().is_some_and(|v| v > 0.0));
    assert!(
        produced["broker_rss_anon_max_kib"]
            .as_u64()
            .is_some_and(|v| v > 0),
        "{produced}"
    );

    let consumed = cli.json(&["bench", "consume", "--topic", "bench"]);
    assert_eq!(
        (consumed["records"].as_u64(), consumed["verified"].as_bool()),
        (Some(20000), Some(true))
    );
    let wrong = cli.fails(
        &["bench", "consume", "--topic", "bench", "--expect", "5"],
        2,
    );
    assert!(wrong.contains("read 20000 records, expected 5"), "{wrong}");

    // Records one by one through the library's Producer, then two
    // consumers sharing the three partitions.
    let linger = cli.json(&[
        "bench",
        "produce",
        "--topic",
        "lingered",
        "--records",
        "3000",
        "--batch-size",
        "100",
        "--partitions",
        "3",
        "--linger-ms",
        "1",
    ]);
    assert_eq!(linger["records"], 3000);
    assert_eq!(linger["client"], "producer");
    assert_eq!(
        linger["latency"]["count"], 3000,
        "one latency per record: {linger}"
    );
    let shared = cli.json(&[
        "bench",
        "consume",
        "--topic",
        "lingered",
        "--consumers",
        "2",
    ]);
    assert_eq!(
        (
            shared["records"].as_u64(),
            shared["consumers"].as_u64(),
            shared["verified"].as_bool()
        ),
        (Some(3000), Some(2), Some(true))
    );
    let described = cli.json(&["topics", "describe", "lingered"]);
    for partition in 0..3 {
        let end = &described["partition_details"][partition]["end_offset"];
        assert_eq!(end, 1000, "records spread over the partitions: {described}");
    }

    let e2e = cli.json(&[
        "bench",
        "e2e",
        "--rate",
        "2000",
        "--records",
        "1000",
        "--warmup-secs",
        "0.25",
    ]);
    assert_eq!(e2e["records"], 1000);
    assert_eq!(e2e["warmup_records"], 500);
    assert_eq!(
        e2e["latency"]["count"], 1000,
        "every record after the warm-up timed by the tailing consumer, none before"
    );
    assert_eq!(e2e["idempotent"], true);
    // More than 5 in flight needs a plain producer.
    let plain = cli.json(&[
        "bench",
        "e2e",
        "--rate",
        "2000",
        "--records",
        "200",
        "--warmup-secs",
        "0",
        "--in-flight",
        "8",
        "--no-idempotence",
    ]);
    assert_eq!(plain["idempotent"], false);
    assert_eq!(plain["latency"]["count"], 200);
    broker.stop();
}

#[test]
fn bench_produce_idempotent_stamps_each_batch_in_sequence() {
    let (_dir, broker, cli) = started();
    // Pre-encoded batches, stamped copies: two producers over two partitions.
    let produced = cli.json(&[
        "bench",
        "produce",
        "--topic",
        "stamped",
        "--records",
        "6000",
        "--batch-size",
        "500",
        "--partitions",
        "2",
        "--producers",
        "2",
        "--idempotent",
    ]);
    assert_eq!(produced["records"], 6000);
    assert_eq!(produced["idempotent"], true);
    assert!(
        produced["stamp_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{produced}"
    );
    let mut ids = std::collections::BTreeSet::new();
    let mut records = 0;
    for partition in 0..2 {
        // Each producer's batches to the partition, epoch 0, sequences unbroken from 0.
        let mut next = std::collections::BTreeMap::new();
        for (id, epoch, base_sequence, count) in batch_stamps(&broker, "stamped", partition) {
            assert!(id >= 0 && epoch == 0, "{id} {epoch}");
            let expected = next.entry(id).or_insert(0);
            assert_eq!(
                base_sequence, *expected,
                "producer {id}, partition {partition}"
            );
            *expected += count;
            records += count;
            ids.insert(id);
        }
    }
    assert_eq!(records, 6000, "every batch appended once");
    assert_eq!(ids.len(), 2, "a producer id each: {ids:?}");

    // Through the library's Producer.
    let lingered = cli.json(&[
        "bench",
        "produce",
        "--topic",
        "lingered",
        "--records",
        "2000",
        "--batch-size",
        "100",
        "--linger-ms",
        "1",
        "--idempotent",
    ]);
    assert_eq!(
        (
            lingered["records"].as_u64(),
            lingered["idempotent"].as_bool()
        ),
        (Some(2000), Some(true))
    );
    let stamps = batch_stamps(&broker, "lingered", 0);
    assert!(stamps.iter().all(|s| s.0 >= 0), "{stamps:?}");

    // Without it, both paths send unstamped batches, as they did.
    let plain = cli.json(&[
        "bench",
        "produce",
        "--topic",
        "plain",
        "--records",
        "1000",
        "--batch-size",
        "500",
    ]);
    assert_eq!(
        (
            plain["idempotent"].as_bool(),
            plain["stamp_seconds"].is_null()
        ),
        (Some(false), true)
    );
    let stamps = batch_stamps(&broker, "plain", 0);
    assert!(stamps.iter().all(|s| s.0 == -1), "{stamps:?}");
    broker.stop();
}
