//! Helpers for the end-to-end tests: a real `carteiro` process on an
//! ephemeral loopback port with a temporary data directory, and clients.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use carteiro::proto::admin_client::AdminClient;
use carteiro::proto::broker_client::BrokerClient;
use carteiro::proto::{self};
use tonic::transport::Channel;

/// How long a broker may take to start or stop before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The `carteiro` binary that cargo built for these tests.
pub fn broker_binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_carteiro") {
        Some(path) => PathBuf::from(path),
        None => built_binary("carteiro", "carteiro-server"),
    }
}

/// The `logctl` binary that cargo built for these tests.
pub fn logctl_binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_logctl") {
        Some(path) => PathBuf::from(path),
        None => built_binary("logctl", "carteiro-logctl"),
    }
}

/// A binary of another package of the workspace, in this test's target
/// directory: `cargo test --workspace` (the README's test command) builds
/// every package's binaries before it runs any test.
fn built_binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the README's test command (cargo test --workspace), or `cargo build -p {package}` first",
        path.display()
    );
    path
}

/// A loopback port free at the moment of asking, for a test that must name
/// a listener's address before the broker starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `logctl groups describe --output json` of `group`, if logctl succeeds.
pub fn describe_group(broker: &Broker, group: &str) -> Option<serde_json::Value> {
    let output = Command::new(logctl_binary())
        .args([
            "--broker",
            &broker.address,
            "--output",
            "json",
            "groups",
            "describe",
            group,
        ])
        .output()
        .expect("run logctl");
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).expect("JSON"))
}

/// A running broker process.
pub struct Broker {
    child: Child,
    /// `host:port` it listens on.
    pub address: String,
    /// `host:port` of its Kafka listener, if on.
    pub kafka_address: Option<String>,
    /// `host:port` of its HTTP listener, if on.
    pub http_address: Option<String>,
    /// Its data directory.
    pub data_dir: PathBuf,
}

impl Broker {
    /// `host:port` of its Kafka listener; panics if it is off.
    pub fn kafka(&self) -> String {
        self.kafka_address
            .clone()
            .expect("the Kafka listener is on")
    }

    /// `host:port` of its HTTP listener; panics if it is off.
    pub fn http(&self) -> String {
        self.http_address.clone().expect("the HTTP listener is on")
    }

    /// Starts a broker on 127.0.0.1:0 with `data_dir` and any `extra` flags,
    /// and waits (bounded) for the line that says where it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Broker {
        Self::start_on("127.0.0.1:0", data_dir, extra)
    }

    /// As [`start`](Self::start), on a given address (to restart in place).
    pub fn start_on(listen: &str, data_dir: &Path, extra: &[&str]) -> Broker {
        Self::spawn(Command::new(broker_binary()), listen, data_dir, extra)
    }

    /// As [`start`](Self::start), allowed at most `open_files` descriptors
    /// (soft and hard `RLIMIT_NOFILE`, set by util-linux's `prlimit`, which
    /// then becomes the broker).
    pub fn start_with_open_files(data_dir: &Path, extra: &[&str], open_files: u64) -> Broker {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={open_files}:{open_files}"))
            .arg("--")
            .arg(broker_binary());
        Self::spawn(command, "127.0.0.1:0", data_dir, extra)
    }

    fn spawn(mut command: Command, listen: &str, data_dir: &Path, extra: &[&str]) -> Broker {
        command
            .args(["--listen", listen, "--data-dir"])
            .arg(data_dir);
        // Tests run side by side: each broker's Kafka listener takes a
        // free port unless the test chooses.
        if !extra.contains(&"--kafka-listen") {
            command.args(["--kafka-listen", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--http-listen") {
            command.args(["--http-listen", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn carteiro");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the broker never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(START_TIMEOUT)
            .expect("broker printed its address in time");
        let address = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        assert!(
            line.contains(&format!("data in {}", data_dir.display())) || line.contains("data in "),
            "{line}"
        );
        let kafka_address = line
            .split("kafka on ")
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).next())
            .map(str::to_string);
        let http_address = line
            .split("http on ")
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).next())
            .map(str::to_string);
        Broker {
            child,
            address,
            kafka_address,
            http_address,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The gRPC endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A `Broker` service client.
    pub async fn broker(&self) -> BrokerClient<Channel> {
        BrokerClient::connect(self.url())
            .await
            .expect("connect")
            .max_decoding_message_size(128 << 20)
    }

    /// An `Admin` service client.
    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::connect(self.url()).await.expect("connect")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub fn stop(mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "broker exited with {status} after SIGTERM"
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "broker did not stop within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: no clean shutdown.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A topic config with small segments, so tests roll and use little disk.
pub fn small_topic(segment_bytes: u64) -> proto::TopicConfig {
    proto::TopicConfig {
        segment_bytes: Some(segment_bytes),
        ..Default::default()
    }
}

/// Creates `name` with `partitions` and `config`.
pub async fn create_topic(
    broker: &Broker,
    name: &str,
    partitions: u32,
    config: proto::TopicConfig,
) -> proto::TopicDescription {
    broker
        .admin()
        .await
        .create_topic(proto::CreateTopicRequest {
            name: name.into(),
            partitions,
            config: Some(config),
        })
        .await
        .expect("create topic")
        .into_inner()
}

/// A record with a value and optional key.
pub fn record(key: Option<&str>, value: &str) -> proto::Record {
    proto::Record {
        key: key.map(|k| bytes::Bytes::copy_from_slice(k.as_bytes())),
        value: Some(bytes::Bytes::copy_from_slice(value.as_bytes())),
        ..Default::default()
    }
}

/// A fetch of one partition from `offset`, raw batches, the broker's default limits.
pub fn fetch_one(topic: &str, partition: u32, offset: i64) -> proto::FetchRequest {
    proto::FetchRequest {
        partitions: vec![proto::FetchPartition {
            topic: topic.into(),
            partition,
            offset,
            max_bytes: 0,
        }],
        ..Default::default()
    }
}

/// Every record of a partition from `from`, decoded by the broker.
pub async fn fetch_all(
    client: &mut BrokerClient<Channel>,
    topic: &str,
    partition: u32,
    from: i64,
) -> Vec<proto::Record> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let reply = client
            .fetch(proto::FetchRequest {
                format: proto::FetchFormat::Decoded as i32,
                ..fetch_one(topic, partition, offset)
            })
            .await
            .expect("fetch")
            .into_inner();
        let p = &reply.partitions[0];
        assert!(p.error.is_none(), "fetch error: {:?}", p.error);
        if p.records.is_empty() {
            return out;
        }
        offset = p.next_offset;
        out.extend(p.records.iter().cloned());
    }
}

/// Raw stored bytes of a partition, batch chunks concatenated.
pub async fn raw_bytes(client: &mut BrokerClient<Channel>, topic: &str, partition: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let reply = client
            .fetch(proto::FetchRequest {
                ..fetch_one(topic, partition, offset)
            })
            .await
            .expect("fetch")
            .into_inner();
        let p = &reply.partitions[0];
        if p.record_batches.is_empty() {
            return out;
        }
        for chunk in &p.record_batches {
            out.extend_from_slice(chunk);
        }
        offset = p.next_offset;
    }
}

/// `(producer id, epoch, base sequence, record count)` of each batch
/// stored in `partition` of `topic`, in log order.
pub async fn stored_stamps(
    broker: &Broker,
    topic: &str,
    partition: u32,
) -> Vec<(i64, i16, i32, i32)> {
    let mut client = broker.broker().await;
    let raw = raw_bytes(&mut client, topic, partition).await;
    batch_positions(&raw)
        .windows(2)
        .filter(|w| w[1] <= raw.len())
        .map(|w| {
            let h = carteiro::record::BatchHeader::parse(&raw[w[0]..w[1]]).expect("a header");
            (
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.record_count,
            )
        })
        .collect()
}

/// A record batch of keyless records with these values, encoded as a producer would.
pub fn batch_of<V: AsRef<[u8]>>(values: &[V]) -> Vec<u8> {
    let mut builder = carteiro::record::RecordBatchBuilder::new();
    for value in values {
        builder
            .append(&carteiro::record::NewRecord {
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(value.as_ref()),
                headers: &[],
            })
            .expect("fits");
    }
    builder.build().expect("non-empty")
}

/// Runs the broker on `data_dir` with `extra` flags expecting it to refuse
/// to start: waits (bounded) for it to exit, asserts it failed, and
/// returns what it printed on standard error.
pub fn start_fails(data_dir: &Path, extra: &[&str]) -> String {
    let mut child = Command::new(broker_binary())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn carteiro");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = tx.send(text);
    });
    let text = rx
        .recv_timeout(START_TIMEOUT)
        .expect("the broker exited in time");
    let status = child.wait().expect("reap");
    assert!(!status.success(), "the broker started: {text}");
    text
}

/// Flips one bit of the byte at `position` of the file at `path`.
pub fn flip_bit(path: &Path, position: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open for damage");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, position).expect("read byte");
    byte[0] ^= 0x10;
    file.write_all_at(&byte, position).expect("write byte");
}

/// Start positions of the batches in raw stored bytes, and the end.
pub fn batch_positions(raw: &[u8]) -> Vec<usize> {
    let mut positions = vec![0];
    let mut at = 0;
    while at + 12 <= raw.len() {
        let length = i32::from_be_bytes(raw[at + 8..at + 12].try_into().expect("4 bytes"));
        at += length as usize + 12;
        positions.push(at);
    }
    positions
}

/// The path of the segment file of base offset `base` of a partition.
pub fn segment_file(data_dir: &Path, topic: &str, partition: u32, base: u64) -> PathBuf {
    data_dir
        .join(format!("{topic}-{partition}"))
        .join(format!("{base:020}.log"))
}

/// Produces `values` as one batch to partition 0 of `topic`, durably.
pub async fn produce_values<V: AsRef<[u8]>>(
    client: &mut BrokerClient<Channel>,
    topic: &str,
    values: &[V],
) -> Result<(), tonic::Status> {
    client
        .produce(proto::ProduceRequest {
            topic: topic.into(),
            partition: Some(0),
            record_batch: batch_of(values).into(),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

/// The values of `records`, as text.
pub fn record_values(records: &[proto::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// Sends raw bytes as gRPC messages and reads raw replies, to send what no
/// well-behaved client would.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, Self::Error> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Calls the unary method at `path` (`/carteiro.v1.Broker/Produce`) with
/// `body` as the request message, bytes as they are.
pub async fn call_raw(
    broker: &Broker,
    path: &'static str,
    body: bytes::Bytes,
) -> Result<bytes::Bytes, tonic::Status> {
    let channel = Channel::from_shared(broker.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(usize::MAX);
    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// A line of the process's `/proc/<pid>/status`, in kB (`VmHWM`, `RssAnon`).
pub fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Descriptors the process has open.
pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .count()
}
