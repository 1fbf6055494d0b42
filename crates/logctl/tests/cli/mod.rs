//! `logctl` as the tests run it: a child process pointed at a test broker.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::*;

/// `logctl` pointed at one broker.
pub struct Cli {
    /// The broker's address.
    pub broker: String,
}

impl Cli {
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, "")
    }

    pub fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = Command::new(logctl_binary())
            .args(args)
            .env("CARTEIRO_BROKER", &self.broker)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn logctl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("logctl output")
    }

    /// Runs and expects success; returns standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "logctl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Piped output gets no progress bar, and success says nothing on stderr.
        assert!(
            output.stderr.is_empty(),
            "logctl {args:?} wrote to stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("valid JSON")
    }

    /// Runs and expects failure with `code`; returns standard error.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let output = self.run(args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.code(),
            Some(code),
            "logctl {args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "errors print nothing on stdout");
        stderr
    }
}

/// Waits for `child`, killing it (and failing) after `limit`.
pub fn wait_bounded(mut child: std::process::Child, limit: std::time::Duration) -> Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("logctl did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// A broker on a temporary data directory, and `logctl` pointed at it.
pub fn started() -> (tempfile::TempDir, Broker, Cli) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let cli = Cli {
        broker: broker.address.clone(),
    };
    (dir, broker, cli)
}

pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// `(producer id, epoch, base sequence, record count)` of each batch stored
/// in a partition.
pub fn batch_stamps(broker: &Broker, topic: &str, partition: u32) -> Vec<(i64, i16, i32, i32)> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(crate::common::stored_stamps(broker, topic, partition))
}
