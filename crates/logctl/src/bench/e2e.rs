//! `logctl bench e2e`.

use std::time::Duration;

use bytes::Bytes;
use carteiro::proto::{self, broker_client::BrokerClient};
use carteiro::record::RecordBatch;
use carteiro_client::connection::{REPLY_BYTES_MAX, channel};
use carteiro_client::producer::Delivery;
use carteiro_client::{Admin, ClientError, Producer, ProducerConfig, ProducerRecord};
use clap::Args;
use serde_json::json;
use tokio::time::Instant;

use crate::commands::AcksArg;
use crate::output::Printer;

use super::{LATENCY_MAX_US, RssSampler, ensure_topic, histogram, latency_json, report};

/// Most sent records whose acknowledgement is not yet timed: the pacing
/// thread waits beyond this (a quarter of a second at 20,000 records/s,
/// far more than the producer keeps in flight).
const DELIVERIES_QUEUED_MAX: usize = 4096;

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
    /// Send as a plain producer, not an idempotent one (which allows
    /// --in-flight above 5, the batches a broker remembers per producer)
    #[arg(long)]
    no_idempotence: bool,
    /// Sample this broker process's RssAnon
    #[arg(long)]
    broker_pid: Option<u32>,
}

pub(super) async fn e2e(broker: &str, out: &Printer, args: E2eBench) -> Result<(), ClientError> {
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
                    .map_err(|s| carteiro_client::connection::call_error(&broker, s))?
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
                        let records = batch
                            .records()
                            .map_err(|e| ClientError::Invalid(e.to_string()))?;
                        for record in records.iter() {
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
        acks: args.acks.into(),
        idempotent: !args.no_idempotence,
        ..ProducerConfig::new(broker)
    };
    let producer = Producer::new(config)?;
    // Acknowledgements arrive in send order (one partition, one stream):
    // awaiting each in turn times each as it lands.
    let (deliveries, mut delivered) =
        tokio::sync::mpsc::channel::<(u64, Delivery)>(DELIVERIES_QUEUED_MAX);
    let acknowledgements = tokio::spawn(async move {
        let mut latency = histogram();
        let mut failed = 0u64;
        while let Some((sent, delivery)) = delivered.recv().await {
            let acked = delivery.await;
            let now = epoch.elapsed().as_nanos() as u64;
            match acked {
                // `u64::MAX` marks the warm-up's records: delivered, not timed.
                Ok(_) if sent == u64::MAX => {}
                Ok(_) => {
                    let _ =
                        latency.record((now.saturating_sub(sent) / 1000).clamp(1, LATENCY_MAX_US));
                }
                Err(_) => failed += 1,
            }
        }
        (latency, failed)
    });
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
            // Deliveries are awaited by another task, so that the producer
            // batches what is waiting.
            let delivery = runtime.block_on(producer.send(&pacer_topic, record))?;
            let timed = if n < warmup_records { u64::MAX } else { sent };
            deliveries
                .blocking_send((timed, delivery))
                .map_err(|_| ClientError::Invalid("acknowledgement task ended".into()))?;
            pacer_bar.inc(1);
        }
        Ok::<_, ClientError>(producer)
    })
    .await
    .map_err(|e| ClientError::Invalid(format!("pacing thread: {e}")))??;
    producer.close().await?;
    let (acks, failed) = acknowledgements
        .await
        .map_err(|e| ClientError::Invalid(format!("acknowledgement task: {e}")))?;
    if failed > 0 {
        return Err(ClientError::Invalid(format!(
            "{failed} records were not acknowledged"
        )));
    }
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
            "in_flight": args.in_flight, "idempotent": !args.no_idempotence, "warmup_records": warmup_records, "acks": format!("{:?}", args.acks).to_lowercase(),
            "ack_latency": latency_json(&acks),
        }),
    );
    Ok(())
}
