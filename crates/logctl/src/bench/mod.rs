//! `logctl bench`: produce throughput, replay throughput and end-to-end
//! latency against a running broker, in the spirit of
//! kafka-producer-perf-test, `rpk` and `nats bench`.
//!
//! - [`produce`]: pre-encoded batches pipelined on `ProduceStream`s, or with
//!   `--linger-ms` records one by one through the library's `Producer`;
//!   with `--idempotent`, as idempotent producers.
//! - [`consume`]: replays a topic from its first offset, `--consumers` of
//!   them sharing the partitions, and verifies the record count.
//! - [`e2e`]: a producer at a fixed rate and a tailing consumer in the same
//!   process; latency is from `send` to the consumer seeing the record,
//!   after `--warmup-secs` at the same rate that are not counted.
//!
//! With `--broker-pid`, the broker's anonymous resident memory (RssAnon in
//! /proc/PID/status) is sampled while the bench runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use carteiro_client::{Admin, ClientError, TopicSettings};
use clap::Subcommand;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::Output;
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

/// Runs a bench subcommand.
pub async fn run(broker: &str, out: &Printer, command: BenchCommand) -> Result<(), ClientError> {
    match command {
        BenchCommand::Produce(args) => produce::produce(broker, out, args).await,
        BenchCommand::Consume(args) => consume::consume(broker, out, args).await,
        BenchCommand::E2e(args) => e2e::e2e(broker, out, args).await,
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
            if let Some(acks) = extra["ack_latency"].as_object() {
                let ms = |key: &str| acks.get(key).and_then(Value::as_f64).unwrap_or_default();
                println!(
                    "acknowledgement latency: p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
                    ms("p50_ms"),
                    ms("p95_ms"),
                    ms("p99_ms"),
                    ms("p999_ms"),
                    ms("max_ms")
                );
            }
            if let Some(kib) = rss_kib {
                println!("broker RssAnon max: {:.1} MiB", kib as f64 / 1024.0);
            }
        }
    }
}

mod consume;
mod e2e;
mod produce;

pub use consume::ConsumeBench;
pub use e2e::E2eBench;
pub use produce::ProduceBench;
