//! `logctl bench produce`: pre-encoded batches of `--batch-size` records
//! through the broker's fast path, each producer pipelining `--in-flight`
//! requests on one `ProduceStream` (appended in order), optionally paced to
//! `--rate`; latency is per request, from sending it to its acknowledgement.
//! With `--linger-ms`, records go one by one through the client library's
//! `Producer` instead, which batches and pipelines them; latency is then per
//! record, from `send` to its delivery.
//!
//! With `--idempotent`, batches carry an idempotent producer's marks (an id
//! from `InitProducerId` per bench producer, epoch 0, sequence numbers per
//! partition), which the broker checks and remembers, so a run with and one
//! without compare the broker's cost of idempotence. The pre-encoded path
//! copies its one batch and stamps the copy (`stamp_producer`: two CRC-32C
//! passes) for each request, client work the plain path does not do (it
//! sends the batch built at the start, as is); that time is measured and
//! reported (`stamp_seconds`). The `Producer` path stamps each batch as it
//! builds it, which costs nothing more.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use carteiro::proto::{self, broker_client::BrokerClient};
use carteiro::record::{NewRecord, ProducerStamp, RecordBatchBuilder, stamp_producer};
use carteiro_client::connection::{REQUEST_BYTES_MAX, call_error, channel};
use carteiro_client::{Admin, ClientError, Delivery, Producer, ProducerConfig, ProducerRecord};
use clap::Args;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::time::Instant;

use super::{LATENCY_MAX_US, RssSampler, ensure_topic, histogram, report};
use crate::Output;
use crate::commands::AcksArg;
use crate::output::Printer;

/// Bytes a record adds to a batch beyond its value, for sizing the
/// `Producer`'s batches from `--batch-size` (varints, attributes, deltas).
const RECORD_OVERHEAD_BYTES: usize = 16;

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
    /// Produce requests in flight per producer (with --linger-ms: per partition)
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Send records one by one through the client library's Producer, which
    /// waits this long (ms) for a batch of --batch-size records to fill
    #[arg(long)]
    linger_ms: Option<u64>,
    /// Target records per second (default: as fast as possible)
    #[arg(long)]
    rate: Option<u64>,
    /// Sample this broker process's RssAnon
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Send as idempotent producers: a producer id from InitProducerId per
    /// producer, epoch 0, sequence numbers per partition (the broker checks
    /// and remembers them). Without --linger-ms each request's batch is a
    /// stamped copy of the pre-built one; the client time that takes is
    /// reported as stamp_seconds
    #[arg(long)]
    idempotent: bool,
}

/// What one bench producer measured.
struct Measured {
    latency: Histogram<u64>,
    /// Time spent copying and stamping batches (`--idempotent` without
    /// `--linger-ms`).
    stamping: Duration,
}

pub(super) async fn produce(
    broker: &str,
    out: &Printer,
    args: ProduceBench,
) -> Result<(), ClientError> {
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
    if let Some(linger_ms) = args.linger_ms {
        return produce_records(broker, out, &args, topic, partitions, linger_ms).await;
    }
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
    let batch_records = i32::try_from(args.batch_size)
        .map_err(|_| ClientError::Invalid("--batch-size is over i32::MAX".into()))?;
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
            proto::Acks::from(carteiro_client::Acks::from(args.acks)),
            args.in_flight,
            args.batch_size as u64,
            args.rate,
        );
        let broker = broker.to_string();
        let idempotent = args.idempotent;
        tasks.push(tokio::spawn(async move {
            let describe = |s| call_error(&broker, s);
            let mut latency = histogram();
            let mut stamping = Duration::ZERO;
            // An idempotent producer's id and epoch, and each partition's
            // next sequence number.
            let identity = if idempotent {
                let given = client
                    .init_producer_id(proto::InitProducerIdRequest::default())
                    .await
                    .map_err(describe)?
                    .into_inner();
                let epoch = i16::try_from(given.producer_epoch).map_err(|_| {
                    ClientError::Invalid(format!(
                        "the broker gave producer epoch {}",
                        given.producer_epoch
                    ))
                })?;
                Some((given.producer_id, epoch))
            } else {
                None
            };
            let mut sequences: HashMap<u32, i32> = HashMap::new();
            // One buffer per request that can be out, plus one: a buffer is
            // used again only after the request it carried was answered
            // (and dropped), so `reserve` takes its memory back in place.
            let mut arenas: Vec<BytesMut> = (0..=in_flight)
                .map(|_| BytesMut::with_capacity(batch.len()))
                .collect();
            let mut next_arena = 0usize;
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
                    let partition = (n % u64::from(partitions)) as u32;
                    let record_batch = match identity {
                        None => batch.clone(),
                        Some((producer_id, epoch)) => {
                            let stamp_started = Instant::now();
                            let next = sequences.entry(partition).or_insert(0);
                            // Copied into warm memory, not fresh pages.
                            let arena = &mut arenas[next_arena];
                            next_arena = (next_arena + 1) % (in_flight + 1);
                            arena.reserve(batch.len());
                            arena.extend_from_slice(&batch);
                            let mut stamped = arena.split();
                            let stamp = ProducerStamp {
                                producer_id,
                                epoch,
                                base_sequence: *next,
                            };
                            stamp_producer(&mut stamped, stamp)
                                .map_err(|e| ClientError::Invalid(e.to_string()))?;
                            *next = carteiro::record::sequence_after(*next, batch_records);
                            stamping += stamp_started.elapsed();
                            stamped.freeze()
                        }
                    };
                    let request = proto::ProduceRequest {
                        topic: topic.clone(),
                        partition: Some(partition),
                        record_batch,
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
                // Nothing is sent twice: a duplicate would be records not appended.
                if reply
                    .response
                    .as_ref()
                    .is_some_and(|r| r.partitions.iter().any(|p| p.duplicate))
                {
                    return Err(ClientError::Invalid(format!(
                        "the broker took request {} for a duplicate; none was sent twice",
                        reply.sequence
                    )));
                }
                if let Some(sent) = sent_at.remove(&reply.sequence) {
                    let took = sent.elapsed().as_micros() as u64;
                    let _ = latency.record(took.clamp(1, LATENCY_MAX_US));
                }
                bar.inc(batch_size);
            }
            Ok::<_, ClientError>(Measured { latency, stamping })
        }));
    }
    let Measured { latency, stamping } = join_measured(tasks).await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let records = batches * args.batch_size as u64;
    let bytes = batches * batch.len() as u64;
    let stamp_seconds = args.idempotent.then_some(stamping.as_secs_f64());
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
            "idempotent": args.idempotent, "stamp_seconds": stamp_seconds,
        }),
    );
    if let (Some(seconds), Output::Table) = (stamp_seconds, out.format()) {
        println!(
            "stamping (client side, a copy and stamp_producer per request): {seconds:.3} s, {:.1} µs per request",
            seconds * 1e6 / batches.max(1) as f64
        );
    }
    Ok(())
}

/// `bench produce --linger-ms`: records one by one through `Producer`.
async fn produce_records(
    broker: &str,
    out: &Printer,
    args: &ProduceBench,
    topic: String,
    partitions: u32,
    linger_ms: u64,
) -> Result<(), ClientError> {
    let next = Arc::new(AtomicU64::new(0));
    let value = Bytes::from(vec![0x61u8; args.record_size]);
    let bar = out.progress(Some(args.records), "produced");
    let rss = RssSampler::start(args.broker_pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.producers {
        let config = ProducerConfig {
            linger: Duration::from_millis(linger_ms),
            batch_bytes: args.batch_size * (args.record_size + RECORD_OVERHEAD_BYTES),
            max_in_flight_per_partition: args.in_flight,
            acks: args.acks.into(),
            idempotent: args.idempotent,
            ..ProducerConfig::new(broker)
        };
        let producer = Producer::new(config)?;
        let (next, topic, value, bar) = (next.clone(), topic.clone(), value.clone(), bar.clone());
        let (records, rate) = (args.records, args.rate);
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram();
            let mut pending = FuturesUnordered::new();
            let mut n = next.fetch_add(1, Ordering::Relaxed);
            while n < records || !pending.is_empty() {
                tokio::select! {
                    // Deliveries first, so each is timed when it lands.
                    biased;
                    Some((took, delivered)) = pending.next(), if !pending.is_empty() => {
                        let _: carteiro_client::RecordMetadata = delivered?;
                        let took: Duration = took;
                        let _ = latency.record((took.as_micros() as u64).clamp(1, LATENCY_MAX_US));
                        bar.inc(1);
                    }
                    accepted = send_one(&producer, &topic, n, partitions, &value, rate, started), if n < records => {
                        let (sent, delivery) = accepted?;
                        pending.push(async move { let delivered = delivery.await; (sent.elapsed(), delivered) });
                        n = next.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            producer.close().await?;
            Ok::<_, ClientError>(Measured { latency, stamping: Duration::ZERO })
        }));
    }
    let Measured { latency, .. } = join_measured(tasks).await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    report(
        out,
        "produce",
        args.records,
        args.records * args.record_size as u64,
        elapsed,
        Some(&latency),
        rss.map(RssSampler::finish),
        json!({
            "topic": topic, "record_size": args.record_size, "batch_size": args.batch_size, "linger_ms": linger_ms,
            "acks": format!("{:?}", args.acks).to_lowercase(), "partitions": partitions, "producers": args.producers,
            "in_flight": args.in_flight, "rate": args.rate, "client": "producer", "idempotent": args.idempotent,
        }),
    );
    Ok(())
}

/// Sends record `n` once its time under `rate` has come; returns when it
/// was handed over (the latency's start) and its delivery.
async fn send_one(
    producer: &Producer,
    topic: &str,
    n: u64,
    partitions: u32,
    value: &Bytes,
    rate: Option<u64>,
    started: Instant,
) -> Result<(Instant, Delivery), ClientError> {
    if let Some(rate) = rate {
        tokio::time::sleep_until(started + Duration::from_secs_f64(n as f64 / rate as f64)).await;
    }
    let sent = Instant::now();
    let record = ProducerRecord {
        partition: Some((n % u64::from(partitions.max(1))) as u32),
        ..ProducerRecord::value(value.clone())
    };
    Ok((sent, producer.send(topic, record).await?))
}

/// Waits for every producer task and adds up what they measured.
async fn join_measured(
    tasks: Vec<tokio::task::JoinHandle<Result<Measured, ClientError>>>,
) -> Result<Measured, ClientError> {
    let mut total = Measured {
        latency: histogram(),
        stamping: Duration::ZERO,
    };
    for task in tasks {
        let measured = task
            .await
            .map_err(|e| ClientError::Invalid(format!("producer task: {e}")))??;
        let _ = total.latency.add(&measured.latency);
        total.stamping += measured.stamping;
    }
    Ok(total)
}
