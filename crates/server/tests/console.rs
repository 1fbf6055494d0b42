//! The web console in a real browser: headless Chromium (Debian's
//! `chromium`) driven by playwright-core (`tests/console/console_check.js`)
//! against a real broker. The script sees the topic `logctl topics create`
//! made, watches the offsets and the produce chart move after `logctl
//! produce`, opens a message and reads its key, value and header, watches
//! a group's lag fall to zero after `logctl consume -g`, and creates and
//! deletes a topic from the page, confirming each. Screenshots go to
//! `target/console-screenshots/` (CI keeps them as artifacts).
//!
//! `bash scripts/test` installs chromium (apt) and playwright-core (npm ci
//! of `tests/console/package-lock.json` into `target/console-node`). A
//! missing one fails the test, naming that command; it is never skipped.

mod common;
#[path = "kafka/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Broker, logctl_binary};
use tools::{assert_passed, run_bounded, workspace};

/// The browser: Debian's package.
const CHROMIUM: &str = "/usr/bin/chromium";
/// Longest the script may run before it is killed and the test fails; it
/// bounds itself at 150 s (CARTEIRO_SCRIPT_TIMEOUT_S) and each wait at 20 s.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// The folder holding playwright-core, for NODE_PATH.
fn node_modules() -> PathBuf {
    let modules = workspace().join("target/console-node/node_modules");
    assert!(
        modules.join("playwright-core/package.json").exists(),
        "playwright-core is missing from {}: run `bash scripts/test`, which installs crates/server/tests/console/package.json there with npm ci",
        modules.display()
    );
    modules
}

#[test]
fn the_console_shows_topics_messages_groups_and_rates_and_creates_and_deletes_topics() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `bash scripts/test`, which installs Debian's chromium with apt"
    );
    let modules = node_modules();
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let http = broker.http();
    let created = Command::new(logctl_binary())
        .args(["--broker", &broker.address])
        .args(["topics", "create", "console-orders", "--partitions", "2"])
        .output()
        .expect("logctl topics create");
    assert!(created.status.success(), "{created:?}");

    let screenshots = workspace().join("target/console-screenshots");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/console_check.js");
    let mut node = Command::new("node");
    node.arg(&script)
        .arg(format!("http://{http}/"))
        .arg(logctl_binary())
        .arg(&broker.address)
        .arg(&screenshots)
        .env("NODE_PATH", &modules)
        .env("CARTEIRO_SCRIPT_TIMEOUT_S", "150");
    let started = Instant::now();
    let ran = run_bounded(&mut node, b"", SCRIPT_TIMEOUT);
    println!(
        "--- console_check.js: {} in {:.1} s, screenshots in {}\n{}",
        ran.status,
        started.elapsed().as_secs_f64(),
        screenshots.display(),
        ran.stdout
    );
    assert_passed(&ran, "the console check in headless Chromium");
    assert!(
        ran.stdout.contains("console check passed"),
        "{}",
        ran.stdout
    );
    for shot in [
        "01-topics",
        "03-message",
        "05-group-caught-up",
        "08-deleted",
    ] {
        assert!(
            screenshots.join(format!("{shot}.png")).exists(),
            "screenshot {shot}.png"
        );
    }
}
