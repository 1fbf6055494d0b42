//! A real process crash: a child process appends with policy `always` and
//! reports each acknowledged batch; the test SIGKILLs it at random moments,
//! reopens the log, and checks that every acknowledged record is there, in
//! order, with no duplicate offsets. The child is this same test binary,
//! run again with an environment variable naming the data directory.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use carteiro_storage::{Log, LogConfig, LogOptions};
use common::*;

const CHILD_ENV: &str = "CARTEIRO_CRASH_CHILD_DIR";
const TEST_NAME: &str = "sigkill_during_appends_loses_no_acknowledged_record";
const ROUNDS_MAX: usize = 40;
const ROUNDS_MIN: usize = 8;
const TIME_BUDGET: Duration = Duration::from_secs(25);

fn config() -> LogConfig {
    LogConfig {
        checkpoint_interval_ms: 5,
        ..small_config(16 * 1024)
    }
}

/// The child: append forever, printing `ack <base> <count> <tag>` after each
/// acknowledged append, until killed.
fn child(dir: &str) {
    let log = Log::open(dir, config(), &LogOptions::default()).expect("child opens the log");
    let tag = std::process::id();
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let count = 1 + (i % 4) as usize;
        let info = log
            .append(&batch(&format!("{tag}.{i}"), count, i as i64))
            .expect("append");
        writeln!(out, "ack {} {count} {tag}.{i}", info.base_offset).expect("stdout");
        out.flush().expect("stdout");
    }
}

/// xorshift64*: enough randomness for kill timing, reproducible from the seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn sigkill_during_appends_loses_no_acknowledged_record() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let seed = std::env::var("CARTEIRO_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("seed {seed} (rerun with CARTEIRO_TEST_SEED={seed})");
    let mut rng = seed;
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let mut expected: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut rounds = 0;
    while rounds < ROUNDS_MAX && (rounds < ROUNDS_MIN || started.elapsed() < TIME_BUDGET) {
        rounds += 1;
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let kill_after = 1 + next(&mut rng) % 120;
        let stdout = child.stdout.take().expect("piped");
        let mut acks = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace();
            if parts.next() != Some("ack") {
                continue;
            }
            let base: u64 = parts
                .next()
                .and_then(|s| s.parse().ok())
                .expect("base offset");
            let count: u64 = parts.next().and_then(|s| s.parse().ok()).expect("count");
            let tag = parts.next().expect("tag");
            for j in 0..count {
                let previous = expected.insert(base + j, format!("{tag}-{j}").into_bytes());
                assert!(
                    previous.is_none(),
                    "round {rounds}: offset {} acknowledged twice",
                    base + j
                );
            }
            acks += 1;
            if acks >= kill_after {
                break;
            }
        }
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reap");
        assert!(!status.success(), "the child only stops when killed");

        let log =
            Log::open(dir.path(), config(), &LogOptions::default()).expect("reopen after SIGKILL");
        let records = all_records(&log);
        for pair in records.windows(2) {
            assert_eq!(
                pair[1].0,
                pair[0].0 + 1,
                "round {rounds}: offsets are contiguous, no duplicates"
            );
        }
        let stored: BTreeMap<u64, Vec<u8>> = records.into_iter().map(|(o, v, _)| (o, v)).collect();
        for (offset, value) in &expected {
            assert_eq!(
                stored.get(offset),
                Some(value),
                "round {rounds} (seed {seed}): acknowledged offset {offset} lost"
            );
        }
        // Records past the acknowledged ones were written but not yet
        // acknowledged; the next child appends after them.
        drop(log);
    }
    println!(
        "{rounds} rounds, {} acknowledged records checked, in {:?}",
        expected.len(),
        started.elapsed()
    );
}
