//! Running the stock Kafka clients from tests: where `bash scripts/test`
//! installed them, and running one to its end within a bound.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The workspace root, where `bash scripts/test` puts `target/`.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// The client scripts (`crates/server/tests/kafka/`).
pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka")
}

/// The venv's Python, with confluent-kafka and kafka-python.
pub fn python() -> PathBuf {
    let python = workspace().join("target/python-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/test`, which installs the pinned Kafka clients of scripts/requirements.txt into it",
        python.display()
    );
    python
}

/// The folder holding KafkaJS, for NODE_PATH.
pub fn node_modules() -> PathBuf {
    let modules = workspace().join("target/kafka-node/node_modules");
    assert!(
        modules.join("kafkajs/package.json").exists(),
        "KafkaJS is missing from {}: run `bash scripts/test`, which installs crates/server/tests/kafka/package.json there with npm ci",
        modules.display()
    );
    modules
}

/// What a finished program printed.
pub struct Ran {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `command` with `input` on its standard input until it closes both
/// output pipes (it exits), or kills it after `timeout` and fails the test
/// with what it printed. The pipes are drained while it runs, so a chatty
/// program never stalls on a full pipe.
pub fn run_bounded(command: &mut Command, input: &[u8], timeout: Duration) -> Ran {
    let label = format!("{command:?}");
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {label}: {e}; `bash scripts/test` installs it"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (tx, rx) = mpsc::channel();
    let drain = |mut pipe: Box<dyn Read + Send>, is_stdout: bool, tx: mpsc::Sender<_>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send((is_stdout, String::from_utf8_lossy(&bytes).into_owned()));
        });
    };
    drain(
        Box::new(child.stdout.take().expect("piped stdout")),
        true,
        tx.clone(),
    );
    drain(
        Box::new(child.stderr.take().expect("piped stderr")),
        false,
        tx,
    );
    let (mut stdout, mut stderr) = (None, None);
    while stdout.is_none() || stderr.is_none() {
        let left = timeout.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok((true, text)) => stdout = Some(text),
            Ok((false, text)) => stderr = Some(text),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // The pipes close with the process: what it printed.
                for (is_stdout, text) in rx.iter() {
                    if is_stdout {
                        stdout.get_or_insert(text);
                    } else {
                        stderr.get_or_insert(text);
                    }
                }
                panic!(
                    "{label} ran past {timeout:?} and was killed\n--- stdout\n{}\n--- stderr\n{}",
                    stdout.unwrap_or_default(),
                    stderr.unwrap_or_default()
                );
            }
        }
    }
    let status = child.wait().expect("reap");
    Ran {
        status,
        stdout: stdout.unwrap_or_default(),
        stderr: stderr.unwrap_or_default(),
    }
}

/// Asserts `ran` succeeded, showing everything it printed if not.
pub fn assert_passed(ran: &Ran, what: &str) {
    assert!(
        ran.status.success(),
        "{what} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
}
