//! The console's JSON under `/api/` against a real broker: topics and
//! messages agree with what `logctl` and the gRPC edge produced (JSON,
//! text and binary values, headers, a compressed batch), groups show
//! their members, commits and lag (a gRPC group and a Kafka group through
//! kcat), rates follow what was produced, topics are created and deleted,
//! and every bad input gets a JSON 4xx naming the field and changes nothing.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Broker, logctl_binary, produce_values};
use serde_json::Value;

/// How long a condition the broker reaches on its own (a rate sample, a
/// group settling) may take before the test fails.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One HTTP/1.1 answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// Asserts a JSON error of `status` naming `field`; returns the error.
    fn refused(&self, status: u16, field: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.head
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{self:?}"
        );
        let error = self.json()["error"].clone();
        assert_eq!(error["status"], status, "{error}");
        assert_eq!(error["field"], field, "{error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        error
    }
}

/// Sends one request to `address` and reads the whole answer.
fn request(
    address: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut stream = TcpStream::connect(address).expect("connect to the HTTP listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("request sent");
    stream.write_all(body).expect("body sent");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("answer read");
    let text = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn get(address: &str, target: &str) -> Answer {
    request(address, "GET", target, &[], b"")
}

fn get_json(address: &str, target: &str) -> Value {
    let answer = get(address, target);
    assert_eq!(answer.status, 200, "GET {target}: {answer:?}");
    answer.json()
}

fn post_json(address: &str, target: &str, body: &str) -> Answer {
    request(
        address,
        "POST",
        target,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// Runs `logctl` against `broker` with `input`, expecting success.
fn logctl(broker: &Broker, args: &[&str], input: &str) -> String {
    let mut child = Command::new(logctl_binary())
        .args(["--broker", &broker.address])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run logctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("input written");
    let output = child.wait_with_output().expect("logctl ran");
    assert!(output.status.success(), "logctl {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn offsets(messages: &Value) -> Vec<i64> {
    messages["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["offset"].as_i64().expect("an offset"))
        .collect()
}

/// Every file and directory under `dir`, sorted (but a checkpoint's
/// `.tmp` file, there for an instant while the broker rewrites it): a
/// request that changes nothing leaves this as it was.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let name = path
                .strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string();
            if path.is_dir() {
                out.push(format!("{name}/"));
                stack.push(path);
            } else if !name.ends_with(".tmp") {
                out.push(name);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_and_messages_agree_with_what_was_produced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let http = broker.http();
    logctl(
        &broker,
        &["topics", "create", "shop", "--partitions", "2"],
        "",
    );
    let lines = "alice:{\"item\": \"book\", \"qty\": 2}\nbob:plain text\ncarol:ol\u{e1}\n";
    logctl(
        &broker,
        &[
            "produce",
            "shop",
            "--key-separator",
            ":",
            "--partition",
            "0",
            "-H",
            "source=test",
        ],
        lines,
    );
    // Binary values through gRPC, then a zstd batch through logctl.
    let mut client = broker.broker().await;
    produce_values(&mut client, "shop", &[vec![0u8, 1, 0xfe, 0xff]])
        .await
        .expect("produced");
    logctl(
        &broker,
        &[
            "produce",
            "shop",
            "--partition",
            "0",
            "--compression",
            "zstd",
        ],
        "z1\nz2\nz3\n",
    );

    let topics = get_json(&http, "/api/topics");
    let shop = topics["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|t| t["name"] == "shop")
        .expect("shop listed")
        .clone();
    assert_eq!(shop["partition_count"], 2, "{shop}");
    assert_eq!(shop["records"], 7, "{shop}");
    assert_eq!(shop["flush"], "always", "{shop}");
    assert!(shop["size_bytes"].as_u64().is_some_and(|n| n > 0));
    let one = get_json(&http, "/api/topics/shop");
    assert_eq!(one["partitions"][0]["high_watermark"], 7, "{one}");
    assert_eq!(one["partitions"][0]["end_offset"], 7, "{one}");
    assert_eq!(one["partitions"][1]["high_watermark"], 0, "{one}");
    assert!(
        one["partitions"][0]["segments"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );

    let base = "/api/topics/shop/partitions/0/messages";
    let all = get_json(&http, &format!("{base}?offset=0"));
    assert_eq!(offsets(&all), (0..7).collect::<Vec<_>>(), "{all}");
    assert_eq!(
        (all["start_offset"].clone(), all["high_watermark"].clone()),
        (0.into(), 7.into())
    );
    let first = &all["messages"][0];
    assert_eq!(first["key"]["encoding"], "utf8");
    assert_eq!(first["key"]["text"], "alice");
    assert_eq!(first["value"]["encoding"], "json", "{first}");
    assert_eq!(first["value"]["text"], "{\"item\": \"book\", \"qty\": 2}");
    assert_eq!(first["headers"][0]["key"], "source");
    assert_eq!(first["headers"][0]["value"]["text"], "test");
    assert_eq!(all["messages"][1]["value"]["text"], "plain text");
    assert_eq!(all["messages"][2]["value"]["text"], "ol\u{e1}");
    assert_eq!(all["messages"][3]["key"]["encoding"], "null");
    assert_eq!(all["messages"][3]["value"]["encoding"], "hex");
    assert_eq!(all["messages"][3]["value"]["text"], "0001feff");
    assert_eq!(
        all["messages"][6]["value"]["text"], "z3",
        "a zstd batch decoded"
    );
    // The latest N, and from the middle of the compressed batch.
    let latest = get_json(&http, &format!("{base}?limit=2"));
    assert_eq!(offsets(&latest), [5, 6]);
    assert_eq!(latest["start"], "latest");
    let middle = get_json(&http, &format!("{base}?offset=5&limit=1"));
    assert_eq!(offsets(&middle), [5]);
    assert_eq!(middle["next_offset"], 6);
    // By time: from 0 everything, from the far future nothing.
    let from_time = get_json(&http, &format!("{base}?time=0&limit=3"));
    assert_eq!(offsets(&from_time), [0, 1, 2]);
    let future = get_json(&http, &format!("{base}?time=99999999999999"));
    assert_eq!(offsets(&future), Vec::<i64>::new());
    assert_eq!(future["from_offset"], 7);
    // An empty partition, and the end of a full one.
    assert_eq!(
        offsets(&get_json(&http, "/api/topics/shop/partitions/1/messages")),
        Vec::<i64>::new()
    );
    assert_eq!(
        offsets(&get_json(&http, &format!("{base}?offset=7"))),
        Vec::<i64>::new()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_show_members_commits_and_lag_of_grpc_and_kafka_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let http = broker.http();
    logctl(
        &broker,
        &["topics", "create", "work", "--partitions", "2"],
        "",
    );
    let lines: String = (0..10).map(|i| format!("job {i}\n")).collect();
    logctl(&broker, &["produce", "work", "--partition", "0"], &lines);
    logctl(
        &broker,
        &[
            "consume",
            "work",
            "-g",
            "workers",
            "--from-beginning",
            "-n",
            "4",
        ],
        "",
    );
    let listed = get_json(&http, "/api/groups");
    let workers = listed["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["group"] == "workers")
        .expect("listed")
        .clone();
    assert_eq!(workers["state"], "EMPTY", "{workers}");
    let described = get_json(&http, "/api/groups/workers");
    let p0 = described["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .find(|p| p["partition"] == 0)
        .expect("partition 0 committed")
        .clone();
    assert_eq!(p0["committed_offset"], 4, "{described}");
    assert_eq!(p0["high_watermark"], 10);
    assert_eq!(p0["lag"], 6);
    assert_eq!(described["lag"], 6, "{described}");
    logctl(&broker, &["consume", "work", "-g", "workers"], "");
    assert_eq!(get_json(&http, "/api/groups/workers")["lag"], 0);

    // A Kafka consumer group (kcat's librdkafka), while its member is in it.
    let kafka = broker.kafka();
    let mut consumer = Command::new("kcat")
        .args(["-b", &kafka, "-G", "kafka-workers", "work", "-q"])
        .args(["-X", "auto.offset.reset=earliest"])
        .args(["-X", "auto.commit.interval.ms=100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat: `bash scripts/test` installs it");
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let group = loop {
        let answer = get(&http, "/api/groups/kafka-workers");
        let group = (answer.status == 200).then(|| answer.json());
        let settled = group.as_ref().is_some_and(|g| {
            g["state"] == "STABLE"
                && g["members"].as_array().is_some_and(|m| m.len() == 1)
                && g["members"][0]["partitions"]
                    .as_array()
                    .is_some_and(|p| p.len() == 2)
                // Partition 0's 10 records read and committed (partition 1
                // is empty: nothing to commit there).
                && g["partitions"][0]["committed_offset"] == 10
                && g["lag"] == 0
        });
        if settled {
            break group.expect("settled");
        }
        assert!(
            Instant::now() < deadline,
            "the Kafka group did not settle: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = consumer.kill();
    let _ = consumer.wait();
    assert_eq!(group["kind"], "classic", "{group}");
    assert_eq!(group["protocol_type"], "consumer", "{group}");
    let mut held: Vec<String> = group["members"][0]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| format!("{}/{}", p["topic"].as_str().expect("topic"), p["partition"]))
        .collect();
    held.sort();
    assert_eq!(held, ["work/0", "work/1"], "{group}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rates_follow_what_is_produced_and_fetched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let http = broker.http();
    logctl(&broker, &["topics", "create", "busy"], "");
    let lines: String = (0..50).map(|i| format!("r{i}\n")).collect();
    logctl(&broker, &["produce", "busy"], &lines);
    logctl(
        &broker,
        &["consume", "busy", "--from-beginning", "-n", "50"],
        "",
    );
    // The sampler reads the counters once a second: wait for a sample
    // taken after both.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let (produced, fetched) = loop {
        let rates = get_json(&http, "/api/rates?topic=busy&seconds=60");
        let samples = rates["topics"][0]["samples"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let sum = |key: &str| samples.iter().filter_map(|s| s[key].as_f64()).sum::<f64>();
        let (produced, fetched) = (sum("produced_per_s"), sum("fetched_per_s"));
        if produced > 0.0 && fetched > 0.0 {
            assert_eq!(rates["interval_ms"], 1000);
            assert_eq!(rates["samples_max"], 300);
            break (produced, fetched);
        }
        assert!(Instant::now() < deadline, "no rate sample: {rates}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Each sample is records over the seconds between two samples: the
    // samples' rates times about a second add up to the records.
    assert!((20.0..=100.0).contains(&produced), "{produced}");
    assert!((20.0..=100.0).contains(&fetched), "{fetched}");
    let all = get_json(&http, "/api/rates");
    assert!(
        all["topics"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["topic"] == "busy"))
    );
    let listed = get_json(&http, "/api/topics");
    assert!(
        listed["topics"][0]["rate"]["t_ms"].as_i64().is_some(),
        "{listed}"
    );
}

#[test]
fn topics_are_created_and_deleted_through_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let http = broker.http();
    let created = post_json(&http, "/api/topics", r#"{"name": "made", "partitions": 3}"#);
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.json()["partition_count"], 3);
    let listed = logctl(&broker, &["topics", "list"], "");
    assert!(listed.contains("made"), "{listed}");
    // Again: the name is taken.
    let again = post_json(&http, "/api/topics", r#"{"name": "made", "partitions": 1}"#);
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(again.json()["error"]["code"], "already_exists");
    let deleted = request(&http, "DELETE", "/api/topics/made", &[], b"");
    assert_eq!(deleted.status, 200, "{deleted:?}");
    assert_eq!(deleted.json()["deleted"], "made");
    let gone = get(&http, "/api/topics/made");
    assert_eq!(gone.status, 404, "{gone:?}");
    assert_eq!(gone.json()["error"]["code"], "not_found");
    let listed = logctl(&broker, &["topics", "list"], "");
    assert!(!listed.contains("made"), "{listed}");
    // From the console's own origin, as a browser sends it.
    let origin = format!("http://{http}");
    let same = request(
        &http,
        "POST",
        "/api/topics",
        &[("Content-Type", "application/json"), ("Origin", &origin)],
        br#"{"name": "from-page", "partitions": 1}"#,
    );
    assert_eq!(same.status, 201, "{same:?}");
}

#[test]
fn bad_inputs_get_a_json_4xx_naming_the_field_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let http = broker.http();
    logctl(
        &broker,
        &["topics", "create", "kept", "--partitions", "2"],
        "",
    );
    logctl(&broker, &["produce", "kept", "--partition", "0"], "a\nb\n");
    let before = tree(dir.path());
    let messages = "/api/topics/kept/partitions/0/messages";

    // Names with path tricks, in the path and in a body.
    get(&http, "/api/topics/..%2F..%2Fetc").refused(400, "name");
    get(&http, "/api/topics/%2E%2E").refused(400, "name");
    get(&http, "/api/topics/a%00b").refused(400, "name");
    get(&http, &format!("/api/topics/{}", "x".repeat(300))).refused(400, "name");
    request(&http, "DELETE", "/api/topics/..", &[], b"").refused(400, "name");
    request(&http, "DELETE", "/api/topics/%2E%2E%2Fkept", &[], b"").refused(400, "name");
    assert_eq!(get(&http, "/api/topics/../../etc/passwd").status, 404);
    post_json(
        &http,
        "/api/topics",
        r#"{"name": "../evil", "partitions": 1}"#,
    )
    .refused(400, "name");
    post_json(&http, "/api/topics", r#"{"name": "a/b", "partitions": 1}"#).refused(400, "name");
    // The broker's internal topics are not the console's.
    request(&http, "DELETE", "/api/topics/__consumer_offsets", &[], b"").refused(400, "name");
    get(&http, "/api/topics/__consumer_offsets").refused(400, "name");

    // Huge or malformed query parameters.
    let error = get(&http, &format!("{messages}?limit=100000")).refused(400, "limit");
    assert_eq!(error["value"], "100000");
    assert!(
        error["limit"].as_str().is_some_and(|l| l.contains("500")),
        "{error}"
    );
    get(&http, &format!("{messages}?limit=0")).refused(400, "limit");
    get(&http, &format!("{messages}?limit=ten")).refused(400, "limit");
    get(&http, &format!("{messages}?limit=1e3")).refused(400, "limit");
    get(
        &http,
        &format!("{messages}?limit=99999999999999999999999999"),
    )
    .refused(400, "limit");
    get(&http, &format!("{messages}?offset=-1")).refused(400, "offset");
    get(&http, &format!("{messages}?offset=3")).refused(400, "offset");
    get(&http, &format!("{messages}?time=-5")).refused(400, "time");
    get(&http, &format!("{messages}?offset=0&time=0")).refused(400, "time");
    get(&http, &format!("{messages}?limit=1&limit=2")).refused(400, "limit");
    get(&http, &format!("{messages}?lmit=5")).refused(400, "query");
    get(&http, "/api/topics?x=1").refused(400, "query");
    get(&http, &format!("{messages}?limit=%FF")).refused(400, "limit");
    let huge = get(&http, &format!("{messages}?limit={}", "9".repeat(200_000)));
    assert!((400..500).contains(&huge.status), "{huge:?}");
    get(&http, &format!("{messages}?limit={}", "9".repeat(2000))).refused(400, "query");
    get(&http, "/api/rates?seconds=100000").refused(400, "seconds");
    get(&http, "/api/rates?topic=../x").refused(400, "name");
    get(&http, "/api/topics/kept/partitions/x/messages").refused(400, "partition");
    get(&http, "/api/topics/kept/partitions/-1/messages").refused(400, "partition");
    get(&http, "/api/topics/kept/partitions/99999/messages").refused(400, "partition");
    let missing = get(&http, "/api/topics/kept/partitions/5/messages");
    assert_eq!(missing.status, 404, "{missing:?}");
    get(&http, &format!("/api/groups/{}", "g".repeat(300))).refused(400, "group");
    assert_eq!(get(&http, "/api/groups/nobody").status, 404);

    // Bad bodies.
    for (body, field) in [
        (r#"{"name": "n"}"#, "partitions"),
        (r#"{"name": "n", "partitions": 0}"#, "partitions"),
        (r#"{"name": "n", "partitions": 5000}"#, "partitions"),
        (r#"{"name": "n", "partitions": -1}"#, "partitions"),
        (r#"{"name": "n", "partitions": "2"}"#, "partitions"),
        (r#"{"partitions": 2}"#, "name"),
        (r#"{"name": "n", "partitions": 2, "retention": 1}"#, "body"),
        ("[]", "body"),
        ("not json", "body"),
        ("", "body"),
    ] {
        post_json(&http, "/api/topics", body).refused(400, field);
    }
    let big = format!(r#"{{"name": "{}", "partitions": 1}}"#, "b".repeat(10_000));
    let too_big = post_json(&http, "/api/topics", &big);
    assert_eq!(too_big.status, 413, "{too_big:?}");
    let form = request(
        &http,
        "POST",
        "/api/topics",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"name=n&partitions=1",
    );
    assert_eq!(form.status, 415, "{form:?}");
    // A page of another origin cannot write.
    let foreign = request(
        &http,
        "POST",
        "/api/topics",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "http://evil.example"),
        ],
        br#"{"name": "n", "partitions": 1}"#,
    );
    assert_eq!(foreign.status, 403, "{foreign:?}");
    let foreign = request(
        &http,
        "DELETE",
        "/api/topics/kept",
        &[("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(foreign.status, 403, "{foreign:?}");
    // Unknown paths and methods.
    assert_eq!(
        get(&http, "/api/nope").json()["error"]["code"],
        "no_such_path"
    );
    let put = request(&http, "PUT", "/api/topics", &[], b"");
    assert_eq!(put.status, 405, "{put:?}");
    assert_eq!(put.json()["error"]["code"], "method_not_allowed");

    // Nothing changed.
    assert_eq!(tree(dir.path()), before);
    let topics = get_json(&http, "/api/topics");
    let names: Vec<&str> = topics["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["kept"]);
    assert_eq!(topics["topics"][0]["records"], 2);
}

#[test]
fn the_console_page_is_served_with_its_script_and_style() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let http = broker.http();
    let page = get(&http, "/");
    assert_eq!(page.status, 200);
    assert!(
        page.head
            .to_ascii_lowercase()
            .contains("content-type: text/html")
    );
    assert!(
        page.head
            .to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'")
    );
    for id in [
        "topics-table",
        "groups-table",
        "rate-chart",
        "create-topic-form",
        "confirm",
    ] {
        assert!(page.body.contains(&format!("id=\"{id}\"")), "{id}");
    }
    let script = get(&http, "/console/console.js");
    assert_eq!(script.status, 200);
    assert!(script.head.to_ascii_lowercase().contains("text/javascript"));
    assert_eq!(get(&http, "/console/console.css").status, 200);
    assert_eq!(get(&http, "/console/../Cargo.toml").status, 404);
    assert_eq!(get(&http, "/console/nope.js").status, 404);
}
