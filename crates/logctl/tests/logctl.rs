//! `logctl` run as a user would, against a real broker: every subcommand
//! but `bench` (tests/bench.rs),
//! its JSON output, and its errors with their exit codes.

mod cli;
#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};

use cli::*;
use common::*;
use serde_json::Value;

#[test]
fn topics_create_list_describe_delete() {
    let (_dir, broker, cli) = started();
    let out = cli.ok(&[
        "topics",
        "create",
        "orders",
        "--partitions",
        "3",
        "--segment-bytes",
        "65536",
        "--retention-ms",
        "-1",
    ]);
    assert_eq!(out.trim(), "created topic orders with 3 partitions");
    let created = cli.json(&[
        "topics",
        "create",
        "audit",
        "--flush",
        "interval",
        "--flush-interval-ms",
        "50",
        "--segment-bytes",
        "65536",
    ]);
    assert_eq!(created["config"]["flush"], "interval(50ms)");

    let table = cli.ok(&["topics", "list"]);
    assert_eq!(
        table.lines().collect::<Vec<_>>(),
        vec!["TOPIC   PARTITIONS", "audit   1", "orders  3"]
    );
    let listed = cli.json(&["topics", "list"]);
    assert_eq!(
        listed,
        serde_json::json!([{"name": "audit", "partitions": 1}, {"name": "orders", "partitions": 3}])
    );

    let described = cli.json(&["topics", "describe", "orders"]);
    assert_eq!(described["partitions"], 3);
    assert_eq!(described["config"]["retention_ms"], -1);
    assert_eq!(
        described["partition_details"].as_array().map(Vec::len),
        Some(3)
    );
    let table = cli.ok(&["topics", "describe", "orders"]);
    assert!(
        table.starts_with("topic orders  partitions 3  retention_ms unlimited"),
        "{table}"
    );
    assert!(
        table.contains("PARTITION  START  END  HIGH-WATERMARK  BYTES  SEGMENTS"),
        "{table}"
    );

    assert_eq!(
        cli.ok(&["topics", "delete", "audit"]).trim(),
        "deleted topic audit"
    );
    assert_eq!(
        cli.json(&["topics", "list"]).as_array().map(Vec::len),
        Some(1)
    );

    // Errors: exit 4 for unknown, 2 for bad input, 1 for a conflict.
    assert!(
        cli.fails(&["topics", "describe", "audit"], 4)
            .contains("unknown topic \"audit\"")
    );
    assert!(cli.fails(&["topics", "delete", "nope"], 4).contains("nope"));
    assert!(
        cli.fails(&["topics", "create", "bad/name"], 2)
            .contains("'/'")
    );
    assert!(
        cli.fails(&["topics", "create", "zero", "--partitions", "0"], 2)
            .contains("partitions is 0")
    );
    assert!(
        cli.fails(&["topics", "create", "orders"], 1)
            .contains("already exists")
    );
    broker.stop();
}

#[test]
fn topics_alter_adds_partitions_and_refuses_bad_counts() {
    let (_dir, broker, cli) = started();
    cli.ok(&["topics", "create", "grow", "--partitions", "2"]);
    cli.run_with_input(&["produce", "grow", "--partition", "1"], "kept\n");
    let table = cli.ok(&["topics", "alter", "grow", "--partitions", "3"]);
    assert!(table.starts_with("topic grow  partitions 3  "), "{table}");
    assert!(
        table.contains("PARTITION  START  END  HIGH-WATERMARK  BYTES  SEGMENTS"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 2 + 3, "{table}");
    let grown = cli.json(&["topics", "alter", "grow", "-p", "5"]);
    assert_eq!(grown["name"], "grow");
    assert_eq!(grown["partitions"], 5);
    let ends: Vec<&Value> = grown["partition_details"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| &p["end_offset"])
        .collect();
    assert_eq!(
        ends,
        vec![0, 1, 0, 0, 0],
        "the records stay where they were"
    );
    assert_eq!(
        cli.json(&["topics", "list"]),
        serde_json::json!([{"name": "grow", "partitions": 5}])
    );

    let checked = cli.ok(&["topics", "alter", "grow", "-p", "6", "--validate-only"]);
    assert!(
        checked.starts_with("valid: topic grow can grow to 6 partitions (nothing changed)"),
        "{checked}"
    );
    assert_eq!(cli.json(&["topics", "describe", "grow"])["partitions"], 5);

    // Errors: exit 2 for a count that is not more, or over the limit, or
    // missing; 4 for an unknown topic.
    let fewer = cli.fails(&["topics", "alter", "grow", "--partitions", "5"], 2);
    assert!(
        fewer.contains("has 5 partitions and 5 were asked")
            && fewer.contains("partitions can only be added"),
        "{fewer}"
    );
    let over = cli.fails(&["topics", "alter", "grow", "--partitions", "2000"], 2);
    assert!(over.contains("1024"), "{over}");
    assert!(
        cli.fails(&["topics", "alter", "nope", "--partitions", "2"], 4)
            .contains("unknown topic \"nope\"")
    );
    assert!(
        cli.fails(&["topics", "alter", "grow"], 2)
            .contains("--partitions")
    );
    assert!(
        cli.fails(&["topics", "alter", "grow", "--partitions", "many"], 2)
            .contains("many")
    );
    broker.stop();
}

#[test]
fn produce_and_consume_every_way() {
    let (dir, broker, cli) = started();
    cli.ok(&[
        "topics",
        "create",
        "events",
        "--partitions",
        "2",
        "--segment-bytes",
        "65536",
    ]);

    // Keys from a separator pick partitions; headers apply to every record.
    let lines = "alice:one\nbob:two\nalice:three\n";
    let output = cli.run_with_input(
        &[
            "produce",
            "events",
            "--key-separator",
            ":",
            "--header",
            "source=cli",
            "--output",
            "json",
        ],
        lines,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(summary["records"], 3);
    // One key for every record, into a fixed partition; and from a file.
    let file = dir.path().join("input.txt");
    std::fs::write(&file, "four\nfive\n").expect("write");
    cli.ok(&[
        "produce",
        "events",
        "--file",
        file.to_str().expect("utf-8"),
        "--key",
        "carol",
        "--partition",
        "1",
    ]);

    let all = json_lines(&cli.ok(&["consume", "events", "--output", "json"]));
    assert_eq!(all.len(), 5);
    let alice = carteiro::partitioner::partition_for_key(b"alice", 2);
    let alice_values: Vec<&Value> = all
        .iter()
        .filter(|r| r["key"] == "alice")
        .map(|r| &r["value"])
        .collect();
    assert_eq!(
        alice_values,
        vec!["one", "three"],
        "one key, one partition, in order"
    );
    assert!(
        all.iter()
            .filter(|r| r["key"] == "alice")
            .all(|r| r["partition"] == alice)
    );
    assert!(
        all.iter()
            .filter(|r| r["key"] == "carol")
            .all(|r| r["partition"] == 1)
    );
    assert_eq!(
        all.iter()
            .find(|r| r["value"] == "two")
            .map(|r| r["headers"][0].clone()),
        Some(serde_json::json!({"key": "source", "value": "cli"}))
    );

    // Text output is one value per line; --partition, --offset, --max-messages narrow it.
    let p1 = cli.ok(&["consume", "events", "--partition", "1"]);
    assert!(p1.lines().any(|l| l == "four") && p1.lines().any(|l| l == "five"));
    let from_offset = json_lines(&cli.ok(&[
        "consume",
        "events",
        "--partition",
        "1",
        "--offset",
        "1",
        "--output",
        "json",
    ]));
    assert!(from_offset.iter().all(|r| r["offset"].as_i64() >= Some(1)));
    assert_eq!(cli.ok(&["consume", "events", "-n", "2"]).lines().count(), 2);

    // --from-time: records produced with the broker's clock; a time after all of them gives nothing.
    let future = (std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        .to_string();
    assert_eq!(cli.ok(&["consume", "events", "--from-time", &future]), "");
    assert_eq!(
        cli.ok(&["consume", "events", "--from-time", "0"])
            .lines()
            .count(),
        5
    );

    // A group consumes, commits, and the next run with the group sees only new records.
    assert_eq!(
        cli.ok(&["consume", "events", "--group", "readers"])
            .lines()
            .count(),
        5
    );
    assert_eq!(cli.ok(&["consume", "events", "--group", "readers"]), "");
    let output = cli.run_with_input(&["produce", "events", "--key", "dave"], "six\n");
    assert!(output.status.success());
    assert_eq!(
        cli.ok(&["consume", "events", "--group", "readers"]).trim(),
        "six"
    );
    // --from-beginning replays even for a group with commits.
    assert_eq!(
        cli.ok(&[
            "consume",
            "events",
            "--group",
            "readers",
            "--from-beginning"
        ])
        .lines()
        .count(),
        6
    );

    // --follow waits for new records (here: until --max-messages arrive),
    // starting from partition 0's end as it is now.
    let end = cli.json(&["offsets", "events"])[0]["latest"]
        .as_i64()
        .expect("latest offset")
        .to_string();
    let follower = Command::new(logctl_binary())
        .args([
            "consume",
            "events",
            "--follow",
            "--offset",
            &end,
            "--partition",
            "0",
            "-n",
            "1",
        ])
        .env("CARTEIRO_BROKER", &broker.address)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn follower");
    let key_for_p0 = (0..100)
        .map(|i| format!("k{i}"))
        .find(|k| carteiro::partitioner::partition_for_key(k.as_bytes(), 2) == 0)
        .expect("a key");
    let output = cli.run_with_input(&["produce", "events", "--key", &key_for_p0], "followed\n");
    assert!(output.status.success());
    let followed = wait_bounded(follower, std::time::Duration::from_secs(60));
    assert!(followed.status.success());
    assert_eq!(String::from_utf8_lossy(&followed.stdout).trim(), "followed");

    // Errors.
    assert!(cli.fails(&["consume", "nope"], 4).contains("unknown topic"));
    assert!(
        cli.fails(&["consume", "events", "--partition", "7"], 4)
            .contains("partition 7")
    );
    let output = cli.run_with_input(&["produce", "nope"], "x\n");
    assert_eq!(output.status.code(), Some(4));
    let output = cli.run_with_input(&["produce", "events", "--header", "no-equals"], "x\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("KEY=VALUE"));
    cli.fails(
        &["consume", "events", "--offset", "1", "--from-beginning"],
        2,
    );
    assert!(
        cli.fails(&["consume", "events", "--offset", "-4"], 2)
            .contains("not an offset")
    );
    broker.stop();
}

#[test]
fn offsets_and_groups_list_describe_reset() {
    let (_dir, broker, cli) = started();
    cli.ok(&[
        "topics",
        "create",
        "ledger",
        "--partitions",
        "2",
        "--segment-bytes",
        "65536",
    ]);
    let input: String = (0..10).map(|i| format!("entry {i}\n")).collect();
    assert!(
        cli.run_with_input(&["produce", "ledger", "--partition", "0"], &input)
            .status
            .success()
    );
    assert!(
        cli.run_with_input(&["produce", "ledger", "--partition", "1"], "a\nb\n")
            .status
            .success()
    );

    assert_eq!(
        cli.json(&["offsets", "ledger"]),
        serde_json::json!([
            {"partition": 0, "earliest": 0, "latest": 10},
            {"partition": 1, "earliest": 0, "latest": 2},
        ])
    );
    assert_eq!(
        cli.ok(&["offsets", "ledger"]).lines().next(),
        Some("PARTITION  EARLIEST  LATEST")
    );

    assert_eq!(
        cli.ok(&[
            "consume",
            "ledger",
            "--group",
            "g",
            "--partition",
            "0",
            "-n",
            "4"
        ])
        .lines()
        .count(),
        4
    );
    assert_eq!(
        cli.json(&["groups", "list"]),
        serde_json::json!([{"group": "g"}])
    );
    let described = cli.json(&["groups", "describe", "g"]);
    assert_eq!(described["partitions"][0]["committed_offset"], 4);
    assert_eq!(described["partitions"][0]["lag"], 6);
    assert_eq!(described["total_lag"], 6);
    let table = cli.ok(&["groups", "describe", "g"]);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["ledger", "0", "4", "10", "6"]),
        "{table}"
    );

    let reset = |to: &[&str]| {
        let mut args = vec!["groups", "reset-offsets", "g", "--topic", "ledger"];
        args.extend_from_slice(to);
        cli.json(&args)["partitions"].clone()
    };
    assert_eq!(
        reset(&["--to-latest"]),
        serde_json::json!([{"partition": 0, "offset": 10}, {"partition": 1, "offset": 2}])
    );
    assert_eq!(
        reset(&["--to-earliest"]),
        serde_json::json!([{"partition": 0, "offset": 0}, {"partition": 1, "offset": 0}])
    );
    assert_eq!(
        reset(&["--to-offset", "1"]),
        serde_json::json!([{"partition": 0, "offset": 1}, {"partition": 1, "offset": 1}])
    );
    assert_eq!(
        reset(&["--to-time", "0"]),
        serde_json::json!([{"partition": 0, "offset": 0}, {"partition": 1, "offset": 0}])
    );
    assert_eq!(cli.json(&["groups", "describe", "g"])["total_lag"], 12);

    assert!(
        cli.fails(&["groups", "describe", "nobody"], 4)
            .contains("nobody")
    );
    cli.fails(&["groups", "reset-offsets", "g", "--topic", "ledger"], 2);
    assert!(
        cli.fails(
            &[
                "groups",
                "reset-offsets",
                "g",
                "--topic",
                "nope",
                "--to-latest"
            ],
            4
        )
        .contains("nope")
    );
    assert!(cli.fails(&["offsets", "nope"], 4).contains("nope"));
    broker.stop();
}

#[test]
fn an_unreachable_broker_and_bad_arguments_exit_non_zero() {
    let cli = Cli {
        broker: "127.0.0.1:1".into(),
    };
    let stderr = cli.fails(&["topics", "list"], 3);
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("unreachable"),
        "{stderr}"
    );
    let stderr = cli.fails(&["topics", "frobnicate"], 2);
    assert!(stderr.contains("frobnicate"), "{stderr}");
    cli.fails(&["consume"], 2);
    let output = Command::new(logctl_binary())
        .arg("--help")
        .output()
        .expect("help");
    assert!(output.status.success());
    for subcommand in ["topics", "produce", "consume", "offsets", "groups"] {
        assert!(String::from_utf8_lossy(&output.stdout).contains(subcommand));
    }
}

#[test]
fn a_group_consume_that_stops_early_commits_only_what_it_printed() {
    let (_dir, broker, cli) = started();
    cli.ok(&[
        "topics",
        "create",
        "split",
        "--partitions",
        "2",
        "--segment-bytes",
        "65536",
    ]);
    let input: String = (0..10).map(|i| format!("v{i}\n")).collect();
    for partition in ["0", "1"] {
        assert!(
            cli.run_with_input(&["produce", "split", "--partition", partition], &input)
                .status
                .success()
        );
    }
    assert_eq!(
        cli.ok(&["consume", "split", "--group", "early", "-n", "5"])
            .lines()
            .count(),
        5
    );
    let described = cli.json(&["groups", "describe", "early"]);
    let committed: i64 = described["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["committed_offset"].as_i64())
        .sum();
    assert_eq!(
        committed, 5,
        "records fetched but not printed are not committed: {described}"
    );
    // The next run prints exactly the other 15.
    assert_eq!(
        cli.ok(&["consume", "split", "--group", "early"])
            .lines()
            .count(),
        15
    );
    broker.stop();
}

#[test]
fn a_terminal_gets_a_progress_bar() {
    let (dir, broker, cli) = started();
    cli.ok(&["topics", "create", "tty"]);
    let input: String = (0..2000).map(|i| format!("{i}\n")).collect();
    assert!(
        cli.run_with_input(&["produce", "tty"], &input)
            .status
            .success()
    );
    // `script` runs logctl with a pseudo-terminal as its standard output.
    let typescript = dir.path().join("typescript");
    let command = format!(
        "{} --broker {} consume tty",
        logctl_binary().display(),
        broker.address
    );
    let status = Command::new("script")
        .args(["-qec", &command])
        .arg(&typescript)
        .stdout(Stdio::null())
        .status()
        .expect("script (util-linux) runs logctl on a pseudo-terminal");
    assert!(status.success());
    let screen =
        String::from_utf8_lossy(&std::fs::read(&typescript).expect("typescript")).into_owned();
    assert!(screen.contains("consumed"), "the bar draws on a terminal");
    assert!(screen.contains("1999"), "and the records are printed too");
    broker.stop();
}

#[test]
fn produce_with_each_compression_and_consume_it_back() {
    let (_dir, _broker, cli) = started();
    cli.ok(&["topics", "create", "squeezed", "--partitions", "1"]);
    let mut expected = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let lines: Vec<String> = (0..50)
            .map(|i| format!("{codec} line {i} that repeats, repeats, repeats"))
            .collect();
        let output = cli.run_with_input(
            &["produce", "squeezed", "--compression", codec],
            &(lines.join("\n") + "\n"),
        );
        assert!(
            output.status.success(),
            "{codec}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        expected.extend(lines);
    }
    let consumed = cli.ok(&["consume", "squeezed"]);
    assert_eq!(consumed.lines().collect::<Vec<_>>(), expected);
    let refused = cli.run_with_input(&["produce", "squeezed", "--compression", "brotli"], "x\n");
    assert_eq!(refused.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("gzip") && stderr.contains("zstd"),
        "{stderr}"
    );
}

#[test]
fn produce_sends_as_an_idempotent_producer() {
    let (_dir, broker, cli) = started();
    cli.ok(&["topics", "create", "stamped", "--segment-bytes", "65536"]);
    let output = cli.run_with_input(&["produce", "stamped"], "a\nb\nc\n");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stamps = batch_stamps(&broker, "stamped", 0);
    assert!(!stamps.is_empty());
    assert!(
        stamps.iter().all(|s| s.0 >= 0 && s.1 == 0),
        "a producer id, epoch 0: {stamps:?}"
    );
    assert_eq!(stamps[0].2, 0, "sequences from 0: {stamps:?}");
    broker.stop();
}
