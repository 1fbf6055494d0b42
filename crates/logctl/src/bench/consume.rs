//! `logctl bench consume`: replays a topic from its first offset with raw
//! batch fetches (checking each batch's CRC), `--consumers` of them sharing
//! the partitions as a group would, and verifies the record count.

use carteiro::proto::{self, broker_client::BrokerClient};
use carteiro::record::RecordBatch;
use carteiro_client::connection::{REPLY_BYTES_MAX, call_error, channel};
use carteiro_client::{Admin, ClientError};
use clap::Args;
use indicatif::ProgressBar;
use serde_json::json;
use tokio::time::Instant;

use super::{RssSampler, report};
use crate::output::Printer;

/// `bench consume`.
#[derive(Debug, Args)]
pub struct ConsumeBench {
    /// Topic to replay
    #[arg(long)]
    topic: String,
    /// Fail unless exactly this many records are read (default: the topic's count)
    #[arg(long)]
    expect: Option<u64>,
    /// Concurrent consumers, each on its own connection; the partitions are
    /// dealt out among them in turn (more consumers than partitions leave some idle)
    #[arg(long, default_value_t = 1)]
    consumers: u32,
    /// Bytes per fetch reply
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_bytes: u32,
    /// Sample this broker process's RssAnon
    #[arg(long)]
    broker_pid: Option<u32>,
}

/// A partition being replayed: its number, the next offset, and where to stop.
type Position = (u32, i64, i64);

pub(super) async fn consume(
    broker: &str,
    out: &Printer,
    args: ConsumeBench,
) -> Result<(), ClientError> {
    if args.consumers == 0 {
        return Err(ClientError::Invalid(
            "--consumers must be at least 1".into(),
        ));
    }
    let described = Admin::connect(broker)?.describe_topic(&args.topic).await?;
    let expected: u64 = described
        .partition_details
        .iter()
        .map(|p| (p.high_watermark - p.start_offset).max(0) as u64)
        .sum();
    let expected = args.expect.unwrap_or(expected);
    let mut shares: Vec<Vec<Position>> = vec![Vec::new(); args.consumers as usize];
    let consumers = shares.len();
    for (i, p) in described.partition_details.iter().enumerate() {
        shares[i % consumers].push((p.partition, p.start_offset, p.high_watermark));
    }
    let bar = out.progress(Some(expected), "consumed");
    let rss = RssSampler::start(args.broker_pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for positions in shares.into_iter().filter(|s| !s.is_empty()) {
        let client = BrokerClient::new(channel(broker)?).max_decoding_message_size(REPLY_BYTES_MAX);
        let (topic, broker, bar) = (args.topic.clone(), broker.to_string(), bar.clone());
        let max_bytes = args.max_bytes;
        tasks.push(tokio::spawn(async move {
            replay(client, &broker, &topic, positions, max_bytes, &bar).await
        }));
    }
    let (mut records, mut bytes) = (0u64, 0u64);
    for task in tasks {
        let (r, b) = task
            .await
            .map_err(|e| ClientError::Invalid(format!("consumer task: {e}")))??;
        records += r;
        bytes += b;
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
        json!({"topic": args.topic, "consumers": args.consumers, "verified": true}),
    );
    Ok(())
}

/// Reads `positions` to their ends; returns the records and bytes read.
async fn replay(
    mut client: BrokerClient<tonic::transport::Channel>,
    broker: &str,
    topic: &str,
    mut positions: Vec<Position>,
    max_bytes: u32,
    bar: &ProgressBar,
) -> Result<(u64, u64), ClientError> {
    let (mut records, mut bytes) = (0u64, 0u64);
    while positions.iter().any(|(_, at, end)| at < end) {
        let request = proto::FetchRequest {
            partitions: positions
                .iter()
                .filter(|(_, at, end)| at < end)
                .map(|(p, at, _)| proto::FetchPartition {
                    topic: topic.to_string(),
                    partition: *p,
                    offset: *at,
                    max_bytes,
                })
                .collect(),
            max_bytes,
            ..Default::default()
        };
        let reply = client
            .fetch(request)
            .await
            .map_err(|s| call_error(broker, s))?
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
    Ok((records, bytes))
}
