//! A new user's first minutes with `logctl`, as they were tried from
//! outside: keyless records spread over partitions, input larger than a
//! topic's batch limit, mistyped broker addresses, and Ctrl-C on a group
//! consumer.

mod cli;
#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli::*;
use common::*;
use serde_json::Value;

/// How long a group may take to show a change the test waits for.
const GROUP_WAIT: Duration = Duration::from_secs(30);

fn latest_offsets(cli: &Cli, topic: &str) -> Vec<i64> {
    cli.json(&["offsets", topic])
        .as_array()
        .expect("one entry per partition")
        .iter()
        .map(|p| p["latest"].as_i64().expect("latest"))
        .collect()
}

#[test]
fn keyless_records_spread_over_every_partition() {
    let (_dir, broker, cli) = started();
    cli.ok(&["topics", "create", "spread", "--partitions", "3"]);
    let line = "x".repeat(100);
    let input: String = (0..5_000).map(|_| format!("{line}\n")).collect();
    assert!(
        cli.run_with_input(&["produce", "spread"], &input)
            .status
            .success()
    );
    let latest = latest_offsets(&cli, "spread");
    assert_eq!(latest.iter().sum::<i64>(), 5_000, "{latest:?}");
    // 500 kB of keyless records move on every 16 KiB: about 30 turns over
    // three partitions, so each holds a good share.
    assert!(
        latest.iter().all(|&n| n >= 1_000),
        "keyless records spread batch by batch: {latest:?}"
    );
    broker.stop();
}

#[test]
fn input_larger_than_the_topic_batch_limit_is_split_into_batches() {
    let (_dir, broker, cli) = started();
    cli.ok(&["topics", "create", "small", "--segment-bytes", "65536"]);
    let limit = cli.json(&["topics", "describe", "small"])["config"]["max_batch_bytes"]
        .as_i64()
        .expect("max_batch_bytes");
    assert!(limit < 65_536, "the topic's batches fit its segments");
    let line = "y".repeat(100);
    let input: String = (0..3_000).map(|i| format!("{i:04}{line}\n")).collect();
    let produced: Value = serde_json::from_str(&String::from_utf8_lossy(
        &cli.run_with_input(&["produce", "small", "--output", "json"], &input)
            .stdout,
    ))
    .expect("produce reports JSON");
    assert_eq!(produced["records"], 3_000, "{produced}");
    let consumed = cli.ok(&["consume", "small"]);
    let lines: Vec<&str> = consumed.lines().collect();
    assert_eq!(lines.len(), 3_000);
    assert!(
        lines[2_999].starts_with("2999"),
        "in order: {}",
        lines[2_999]
    );
    // A single record over the limit is refused by name, with exit 2.
    let huge = "z".repeat(70_000);
    let output = cli.run_with_input(&["produce", "small"], &format!("{huge}\n"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("max_batch_bytes") && stderr.contains(&limit.to_string()),
        "{stderr}"
    );
    broker.stop();
}

#[test]
fn broker_address_mistakes_name_their_cause() {
    for (address, cause) in [
        ("127.0.0.1", "no port"),
        ("127.0.0.1:99999", "port 99999 is out of range"),
    ] {
        let cli = Cli {
            broker: address.into(),
        };
        let stderr = cli.fails(&["topics", "list"], 2);
        assert!(
            stderr.contains(cause) && stderr.contains("HOST:PORT"),
            "{address}: {stderr}"
        );
    }
    // Nothing listens on port 1: the reason is the refusal, not only "tcp connect error".
    let cli = Cli {
        broker: "127.0.0.1:1".into(),
    };
    let stderr = cli.fails(&["topics", "list"], 3);
    assert!(stderr.contains("refused"), "{stderr}");
}

#[test]
fn messages_count_partitions_in_words() {
    let (_dir, broker, cli) = started();
    let created = cli.ok(&["topics", "create", "one"]);
    assert!(
        created.contains("with 1 partition") && !created.contains("partitions"),
        "{created}"
    );
    let stderr = cli.fails(&["produce", "one", "--partition", "3"], 4);
    assert!(
        stderr.contains("it has 1 partition, numbered 0"),
        "{stderr}"
    );
    cli.ok(&["topics", "create", "three", "--partitions", "3"]);
    let stderr = cli.fails(&["consume", "three", "--partition", "7"], 4);
    assert!(
        stderr.contains("it has 3 partitions, numbered 0 to 2"),
        "{stderr}"
    );
    broker.stop();
}

/// The group's members as `groups describe` shows them.
fn members(cli: &Cli, group: &str) -> Vec<Value> {
    let output = cli.run(&["groups", "describe", group, "--output", "json"]);
    if !output.status.success() {
        return Vec::new();
    }
    let described: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    described["members"].as_array().cloned().unwrap_or_default()
}

/// The sum of the group's committed offsets.
fn committed(cli: &Cli, group: &str) -> i64 {
    let output = cli.run(&["groups", "describe", group, "--output", "json"]);
    if !output.status.success() {
        return 0;
    }
    let described: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    described["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["committed_offset"].as_i64())
        .sum()
}

/// Waits (bounded) until the group has `count` members and has committed `offsets` in all.
fn wait_for_group(cli: &Cli, group: &str, count: usize, offsets: i64) {
    let deadline = Instant::now() + GROUP_WAIT;
    while members(cli, group).len() != count || committed(cli, group) != offsets {
        assert!(
            Instant::now() < deadline,
            "group {group} did not reach {count} members and {offsets} committed within {GROUP_WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ctrl_c_and_sigterm_make_a_following_group_consumer_leave_its_group() {
    let (_dir, broker, cli) = started();
    cli.ok(&["topics", "create", "follow", "--partitions", "2"]);
    let input: String = (0..10).map(|i| format!("v{i}\n")).collect();
    assert!(
        cli.run_with_input(&["produce", "follow"], &input)
            .status
            .success()
    );
    for signal in [rustix::process::Signal::INT, rustix::process::Signal::TERM] {
        let group = format!("followers-{}", signal.as_raw());
        let child = Command::new(logctl_binary())
            .args(["consume", "follow", "--group", &group, "--follow"])
            .env("CARTEIRO_BROKER", &broker.address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn logctl consume");
        wait_for_group(&cli, &group, 1, 10);
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, signal).expect("signal");
        let output = wait_bounded(child, GROUP_WAIT);
        assert!(
            output.status.success(),
            "a stopped consumer exits cleanly: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).lines().count(),
            10,
            "it printed every record before the signal"
        );
        // It left: the group is empty at once, not after the session timeout.
        assert!(members(&cli, &group).is_empty(), "{signal:?}");
        assert_eq!(
            committed(&cli, &group),
            10,
            "what it printed stays committed"
        );
    }
    broker.stop();
}
