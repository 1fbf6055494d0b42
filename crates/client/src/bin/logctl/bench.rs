//! `logctl bench`: produce throughput, replay throughput and end-to-end
//! latency against a running broker, in the spirit of
//! kafka-producer-perf-test, `rpk` and `nats bench`.
//!
//! - `produce`: pre-encoded batches of `--batch-size` records through the
//!   broker's fast path, each producer pipelining `--in-flight` requests on
//!   one `ProduceStream` (appended in order), optionally paced to `--rate`;
//!   latency is per produce request, from sending it to its acknowledgement.
//! - `consume`: replays a topic from its first offset with raw batch fetches
//!   (checking each batch's CRC) and verifies the record count.
//! - `e2e`: a producer at a fixed rate and a tailing consumer in the same
//!   process; latency is from `send` to the consumer seeing the record,
//!   after `--warmup-secs` at the same rate that are not counted.
//!
//! With `--broker-pid`, the broker's anonymous resident memory (RssAnon in
//! /proc/PID/status) is sampled while the bench runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use carteiro::proto::{self, broker_client::BrokerClient};
use carteiro::record::{NewRecord, RecordBatch, RecordBatchBuilder};
use carteiro_client::connection::{REPLY_BYTES_MAX, REQUEST_BYTES_MAX, channel};
use carteiro_client::{
    Acks, Admin, ClientError, Producer, ProducerConfig, ProducerRecord, TopicSettings,
};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::Output;
use crate::commands::AcksArg;
use crate::output::Printer;

/// Most latency a histogram records, in µs (one minute).
const LATENCY_MAX_US: u64 = 60_000_000;

/// `logctl bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Produce as fast as possible (or at --rate) and report throughput and latency
    Produce(ProduceBench),
    /// Replay a topic from offset zero and report throughput
    Consume(ConsumeBench),
    /// Produce at a fixed rate to a tailing consumer and report end-to-end latency
    E2e(E2eBench),
}

/// `bench produce`.
#[derive(Debug, Args)]
pub struct ProduceBench {
    /// Topic to write (created if missing); default: a new topic named bench-TIME
    #[arg(long)]
    topic: Option<String>,
    /// Records to produce
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Bytes of each record's value
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per batch (one produce request each)
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// When the broker acknowledges
    #[arg(long, value_enum, default_value_t = AcksArg::Durable)]
    acks: AcksArg,
    /// Partitions of a created topic; batches go round them
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Concurrent producers
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Produce requests in flight per producer
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Target records per second (default: as fast as possible)
    #[arg(long)]
    rate: Option<u64>,
    /// Sample this broker process's RssAnon
    #[arg(long)]
    broker_pid: Option<u32>,
}

/// `bench consume`.
#[derive(Debug, Args)]
pub struct ConsumeBench {
    /// Topic to replay
    #[arg(long)]
    topic: String,
    /// Fail unless exactly this many records are read (default: the topic's count)
    #[arg(long)]
    expect: Option<u64>,
    /// Bytes per fetch reply
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_bytes: u32,
    /// Sample this broker process's RssAnon
    #[arg(long)]
    broker_pid: Option<u32>,
}

/// `bench e2e`.
#[derive(Debug, Args)]
pub struct E2eBench {
    /// Topic (created if missing); default: a new topic named bench-TIME
    #[arg(long)]
    topic: Option<String>,
    /// Records per second
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Records to send
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Bytes of each record's value (at least 8)
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// The producer's linger, ms
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
    /// Seconds sent at the same rate before timing starts, not counted
    /// (connections, threads and caches warm up; as OpenMessaging Benchmark's warm-up)
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// The producer's most requests in flight to the partition (pipelined on one stream)
    #[arg(long, default_value_t = carteiro_client::producer::MAX_IN_FLIGHT_PER_PARTITION_DEFAULT)]
    in_flight: usize,
    /// When the broker acknowledges
    #[arg(long, value_enum, default_value_t = AcksArg::Durable)]
    acks: AcksArg,
    /// Sample this broker process's RssAnon
    #[arg(long)]
    broker_pid: Option<u32>,
}

/// Runs a bench subcommand.
pub async fn run(broker: &str, out: &Printer, command: BenchCommand) -> Result<(), ClientError> {
    match command {
        BenchCommand::Produce(args) => produce(broker, out, args).await,
        BenchCommand::Consume(args) => consume(broker, out, args).await,
        BenchCommand::E2e(args) => e2e(broker, out, args).await,
    }
}

fn histogram() -> Histogram<u64> {
    // Three significant digits from 1 µs to a minute: about 200 KiB.
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("constant bounds are valid")
}

fn latency_json(h: &Histogram<u64>) -> Value {
    let ms = |v: u64| v as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p95_ms": ms(h.value_at_quantile(0.95)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

fn latency_text(h: &Histogram<u64>) -> String {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        ms(0.5),
        ms(0.95),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    )
}

/// Samples RssAnon of `pid` every 100 ms until dropped; reports the largest, in KiB.
struct RssSampler {
    max_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    fn start(pid: Option<u32>) -> Option<RssSampler> {
        let pid = pid?;
        let max_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (max, stopped) = (max_kib.clone(), stop.clone());
        tokio::spawn(async move {
            let path = format!("/proc/{pid}/status");
            while !stopped.load(Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(&path)
                    && let Some(kib) = status
                        .lines()
                        .find_map(|l| l.strip_prefix("RssAnon:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    max.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Some(RssSampler { max_kib, stop })
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.max_kib.load(Ordering::Relaxed)
    }
}

async fn ensure_topic(
    broker: &str,
    topic: Option<String>,
    partitions: u32,
) -> Result<String, ClientError> {
    let name = topic.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("bench-{now}")
    });
    let mut admin = Admin::connect(broker)?;
    match admin.describe_topic(&name).await {
        Ok(_) => Ok(name),
        Err(e) if e.is_not_found() => {
            let settings = TopicSettings {
                retention_ms: Some(-1),
                ..TopicSettings::default()
            };
            admin.create_topic(&name, partitions, &settings).await?;
            Ok(name)
        }
        Err(e) => Err(e),
    }
}

fn acks(arg: AcksArg) -> proto::Acks {
    match arg {
        AcksArg::Durable => proto::Acks::Durable,
        AcksArg::Appended => proto::Acks::Appended,
    }
}

async fn produce(broker: &str, out: &Printer, args: ProduceBench) -> Result<(), ClientError> {
    if args.batch_size == 0 || args.producers == 0 || args.in_flight == 0 || args.partitions == 0 {
        return Err(ClientError::Invalid(
            "--batch-size, --producers, --in-flight and --partitions must be at least 1".into(),
        ));
    }
    let topic = ensure_topic(broker, args.topic.clone(), args.partitions).await?;
    let partitions = Admin::connect(broker)?
        .describe_topic(&topic)
        .await?
        .partitions;
    let value = vec![0x61u8; args.record_size];
    let mut builder = RecordBatchBuilder::with_capacity(args.batch_size * (args.record_size + 16));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for _ in 0..args.batch_size {
        builder
            .append(&NewRecord {
                timestamp: now_ms,
                key: None,
                value: Some(&value),
                headers: &[],
            })
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
    }
    let batch = Bytes::from(
        builder
            .build()
            .map_err(|e| ClientError::Invalid(e.to_string()))?,
    );
    let batches = args.records.div_ceil(args.batch_size as u64);
    let next = Arc::new(AtomicU64::new(0));
    let bar = out.progress(Some(batches * args.batch_size as u64), "produced");
    let rss = RssSampler::start(args.broker_pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.producers {
        let mut client =
            BrokerClient::new(channel(broker)?).max_encoding_message_size(REQUEST_BYTES_MAX);
        let (next, batch, topic, bar) = (next.clone(), batch.clone(), topic.clone(), bar.clone());
        let (acks, in_flight, batch_size, rate) = (
            acks(args.acks),
            args.in_flight,
            args.batch_size as u64,
            args.rate,
        );
        let broker = broker.to_string();
        tasks.push(tokio::spawn(async move {
            let describe = |s| carteiro_client::connection::describe_status(&broker, s);
            let mut latency = histogram();
            // One stream per producer: its requests are appended in order,
            // `in_flight` of them pipelined.
            let (requests, outgoing) = tokio::sync::mpsc::channel(in_flight);
            let mut replies = client
                .produce_stream(tokio_stream::wrappers::ReceiverStream::new(outgoing))
                .await
                .map_err(describe)?
                .into_inner();
            let mut sent_at = HashMap::new();
            let mut sequence = 0u64;
            loop {
                while sent_at.len() < in_flight {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= batches {
                        break;
                    }
                    if let Some(rate) = rate {
                        let due = started
                            + Duration::from_secs_f64((n * batch_size) as f64 / rate as f64);
                        tokio::time::sleep_until(due).await;
                    }
                    let request = proto::ProduceRequest {
                        topic: topic.clone(),
                        partition: Some((n % u64::from(partitions)) as u32),
                        record_batch: batch.clone(),
                        acks: acks as i32,
                        ..Default::default()
                    };
                    if requests.send(request).await.is_err() {
                        break;
                    }
                    sent_at.insert(sequence, Instant::now());
                    sequence += 1;
                }
                if sent_at.is_empty() {
                    break;
                }
                let reply = replies.message().await.map_err(describe)?.ok_or_else(|| {
                    ClientError::Invalid("the broker ended the produce stream early".into())
                })?;
                if reply.error_code != 0 {
                    let code = tonic::Code::from_i32(reply.error_code);
                    return Err(describe(tonic::Status::new(code, reply.error_message)));
                }
                if let Some(sent) = sent_at.remove(&reply.sequence) {
                    let took = sent.elapsed().as_micros() as u64;
                    let _ = latency.record(took.clamp(1, LATENCY_MAX_US));
                }
                bar.inc(batch_size);
            }
            Ok::<_, ClientError>(latency)
        }));
    }
    let mut latency = histogram();
    for task in tasks {
        let h = task
            .await
            .map_err(|e| ClientError::Invalid(format!("producer task: {e}")))??;
        let _ = latency.add(&h);
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let records = batches * args.batch_size as u64;
    let bytes = batches * batch.len() as u64;
    report(
        out,
        "produce",
        records,
        bytes,
        elapsed,
        Some(&latency),
        rss.map(RssSampler::finish),
        json!({
            "topic": topic, "record_size": args.record_size, "batch_size": args.batch_size, "acks": format!("{:?}", args.acks).to_lowercase(),
            "partitions": partitions, "producers": args.producers, "in_flight": args.in_flight, "rate": args.rate,
        }),
    );
    Ok(())
}

async fn consume(broker: &str, out: &Printer, args: ConsumeBench) -> Result<(), ClientError> {
    let described = Admin::connect(broker)?.describe_topic(&args.topic).await?;
    let expected: u64 = described
        .partition_details
        .iter()
        .map(|p| (p.high_watermark - p.start_offset).max(0) as u64)
        .sum();
    let expected = args.expect.unwrap_or(expected);
    let mut client = BrokerClient::new(channel(broker)?).max_decoding_message_size(REPLY_BYTES_MAX);
    let mut positions: Vec<(u32, i64, i64)> = described
        .partition_details
        .iter()
        .map(|p| (p.partition, p.start_offset, p.high_watermark))
        .collect();
    let bar = out.progress(Some(expected), "consumed");
    let rss = RssSampler::start(args.broker_pid);
    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    while positions.iter().any(|(_, at, end)| at < end) {
        let request = proto::FetchRequest {
            partitions: positions
                .iter()
                .filter(|(_, at, end)| at < end)
                .map(|(p, at, _)| proto::FetchPartition {
                    topic: args.topic.clone(),
                    partition: *p,
                    offset: *at,
                    max_bytes: args.max_bytes,
                })
                .collect(),
            max_bytes: args.max_bytes,
            ..Default::default()
        };
        let reply = client
            .fetch(request)
            .await
            .map_err(|s| carteiro_client::connection::describe_status(broker, s))?
            .into_inner();
        for partition in reply.partitions {
            if let Some(e) = partition.error {
                return Err(ClientError::Invalid(format!(
                    "partition {}: {}",
                    partition.partition, e.message
                )));
            }
            let Some(entry) = positions
                .iter_mut()
                .find(|(p, _, _)| *p == partition.partition)
            else {
                continue;
            };
            for chunk in &partition.record_batches {
                bytes += chunk.len() as u64;
                let mut rest = &chunk[..];
                while !rest.is_empty() {
                    let (batch, tail) = RecordBatch::parse(rest)
                        .map_err(|e| ClientError::Invalid(format!("fetched batch: {e}")))?;
                    let from = batch.base_offset().max(entry.1);
                    let counted = (batch.last_offset() + 1 - from).max(0) as u64;
                    records += counted;
                    bar.inc(counted);
                    rest = tail;
                }
            }
            entry.1 = partition.next_offset.max(entry.1);
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    if records != expected {
        return Err(ClientError::Invalid(format!(
            "read {records} records, expected {expected}"
        )));
    }
    report(
        out,
        "consume",
        records,
        bytes,
        elapsed,
        None,
        rss.map(RssSampler::finish),
        json!({"topic": args.topic, "verified": true}),
    );
    Ok(())
}

async fn e2e(broker: &str, out: &Printer, args: E2eBench) -> Result<(), ClientError> {
    if args.record_size < 8 || args.rate == 0 {
        return Err(ClientError::Invalid(
            "--record-size must be at least 8 and --rate at least 1".into(),
        ));
    }
    if !(0.0..=3600.0).contains(&args.warmup_secs) {
        return Err(ClientError::Invalid(format!(
            "--warmup-secs {} is outside 0 to 3600",
            args.warmup_secs
        )));
    }
    let warmup_records = (args.warmup_secs * args.rate as f64).round() as u64;
    let topic = ensure_topic(broker, args.topic.clone(), 1).await?;
    let start_offset = Admin::connect(broker)?
        .offsets(&topic)
        .await?
        .first()
        .map_or(0, |p| p.2);
    let epoch = Instant::now();
    // The consumer tails the topic from its end and times each record.
    let consumer = {
        let mut client =
            BrokerClient::new(channel(broker)?).max_decoding_message_size(REPLY_BYTES_MAX);
        let (topic, want, broker) = (topic.clone(), args.records, broker.to_string());
        let timed_from =
            start_offset.saturating_add(i64::try_from(warmup_records).unwrap_or(i64::MAX));
        tokio::spawn(async move {
            let mut latency = histogram();
            let mut offset = start_offset;
            while latency.len() < want {
                let request = proto::FetchRequest {
                    partitions: vec![proto::FetchPartition {
                        topic: topic.clone(),
                        partition: 0,
                        offset,
                        max_bytes: 0,
                    }],
                    min_bytes: 1,
                    max_wait_ms: 1000,
                    ..Default::default()
                };
                let reply = client
                    .fetch(request)
                    .await
                    .map_err(|s| carteiro_client::connection::describe_status(&broker, s))?
                    .into_inner();
                let now = epoch.elapsed().as_nanos() as u64;
                let Some(partition) = reply.partitions.into_iter().next() else {
                    continue;
                };
                for chunk in &partition.record_batches {
                    let mut rest = &chunk[..];
                    while !rest.is_empty() {
                        let (batch, tail) = RecordBatch::parse(rest)
                            .map_err(|e| ClientError::Invalid(e.to_string()))?;
                        for record in batch
                            .records()
                            .map_err(|e| ClientError::Invalid(e.to_string()))?
                        {
                            let record = record.map_err(|e| ClientError::Invalid(e.to_string()))?;
                            if record.offset < offset.max(timed_from) {
                                continue;
                            }
                            let sent = record
                                .value
                                .and_then(|v| v.first_chunk::<8>())
                                .map_or(now, |b| u64::from_be_bytes(*b));
                            let _ = latency
                                .record((now.saturating_sub(sent) / 1000).clamp(1, LATENCY_MAX_US));
                        }
                        rest = tail;
                    }
                }
                offset = partition.next_offset.max(offset);
            }
            Ok::<_, ClientError>(latency)
        })
    };
    let config = ProducerConfig {
        linger: Duration::from_millis(args.linger_ms),
        max_in_flight_per_partition: args.in_flight,
        acks: match args.acks {
            AcksArg::Durable => Acks::Durable,
            AcksArg::Appended => Acks::Appended,
        },
        ..ProducerConfig::new(broker)
    };
    let producer = Producer::new(config)?;
    let bar = out.progress(Some(warmup_records + args.records), "sent");
    let rss = RssSampler::start(args.broker_pid);
    let started = Instant::now();
    // Paced on a thread of its own: a thread's sleep wakes within tens of µs,
    // where tokio's timer wheel ticks in whole milliseconds and would send
    // the records in bursts of `rate / 1000`.
    let runtime = tokio::runtime::Handle::current();
    let (records, rate, record_size) = (warmup_records + args.records, args.rate, args.record_size);
    let (pacer_topic, pacer_bar) = (topic.clone(), bar.clone());
    let producer = tokio::task::spawn_blocking(move || {
        let started = started.into_std();
        let mut padding = vec![0u8; record_size];
        for n in 0..records {
            let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
            let sent = epoch.elapsed().as_nanos() as u64;
            padding[..8].copy_from_slice(&sent.to_be_bytes());
            let record = ProducerRecord::value(Bytes::copy_from_slice(&padding));
            // Deliveries are not awaited one by one: the producer batches what is waiting.
            drop(runtime.block_on(producer.send(&pacer_topic, record))?);
            pacer_bar.inc(1);
        }
        Ok::<_, ClientError>(producer)
    })
    .await
    .map_err(|e| ClientError::Invalid(format!("pacing thread: {e}")))??;
    producer.close().await?;
    let latency = consumer
        .await
        .map_err(|e| ClientError::Invalid(format!("consumer task: {e}")))??;
    let elapsed = started
        .elapsed()
        .saturating_sub(Duration::from_secs_f64(args.warmup_secs));
    bar.finish_and_clear();
    report(
        out,
        "e2e",
        args.records,
        args.records * args.record_size as u64,
        elapsed,
        Some(&latency),
        rss.map(RssSampler::finish),
        json!({
            "topic": topic, "rate": args.rate, "record_size": args.record_size, "linger_ms": args.linger_ms,
            "in_flight": args.in_flight, "warmup_records": warmup_records, "acks": format!("{:?}", args.acks).to_lowercase(),
        }),
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn report(
    out: &Printer,
    what: &str,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    latency: Option<&Histogram<u64>>,
    rss_kib: Option<u64>,
    extra: Value,
) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rps = records as f64 / secs;
    let mbps = bytes as f64 / secs / 1e6;
    match out.format() {
        Output::Json => {
            let mut report = json!({
                "bench": what,
                "records": records,
                "bytes": bytes,
                "seconds": secs,
                "records_per_sec": rps,
                "mb_per_sec": mbps,
                "latency": latency.map(latency_json),
                "broker_rss_anon_max_kib": rss_kib,
            });
            if let (Some(report), Value::Object(extra)) = (report.as_object_mut(), extra) {
                report.extend(extra);
            }
            out.json(&report);
        }
        Output::Table => {
            let topic = extra["topic"].as_str().unwrap_or_default();
            println!(
                "{what} ({topic}): {records} records, {bytes} bytes in {secs:.3} s: {rps:.0} records/s, {mbps:.1} MB/s"
            );
            if let Some(h) = latency {
                println!("latency: {}", latency_text(h));
            }
            if let Some(kib) = rss_kib {
                println!("broker RssAnon max: {:.1} MiB", kib as f64 / 1024.0);
            }
        }
    }
}
