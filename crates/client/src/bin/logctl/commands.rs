//! One function per `logctl` subcommand.

use std::io::BufRead;
use std::time::Duration;

use bytes::Bytes;
use carteiro::proto;
use carteiro_client::{
    Acks, Admin, ClientError, CommitMode, Consumer, ConsumerConfig, ConsumerRecord, Flush,
    OffsetReset, Producer, ProducerConfig, ProducerRecord, ResetTo, Seek, TopicPartition,
    TopicSettings,
};
use clap::{ArgGroup, Args, ValueEnum};
use serde_json::{Value, json};

use crate::Output;
use crate::output::Printer;

/// Flush policy names on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlushArg {
    /// Sync before acknowledging each produce
    Always,
    /// Sync every --flush-interval-ms
    Interval,
    /// Leave syncing to the operating system
    Os,
}

/// Acknowledgement names on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    /// Once durable under the topic's flush policy
    Durable,
    /// Once appended
    Appended,
}

impl From<AcksArg> for Acks {
    fn from(arg: AcksArg) -> Acks {
        match arg {
            AcksArg::Durable => Acks::Durable,
            AcksArg::Appended => Acks::Appended,
        }
    }
}

/// `topics create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The topic: 1 to 249 characters of a-z, A-Z, 0-9, '.', '_', '-'
    name: String,
    /// Number of partitions
    #[arg(long, short, default_value_t = 1)]
    partitions: u32,
    /// Keep records this long, ms (-1: forever)
    #[arg(long, allow_hyphen_values = true)]
    retention_ms: Option<i64>,
    /// Keep at most this many bytes per partition (-1: no limit)
    #[arg(long, allow_hyphen_values = true)]
    retention_bytes: Option<i64>,
    /// Segment size, bytes (the file grows to it 16 MiB at a time)
    #[arg(long)]
    segment_bytes: Option<u64>,
    /// Roll segments at this age, ms
    #[arg(long)]
    segment_ms: Option<u64>,
    /// Largest batch accepted, bytes
    #[arg(long)]
    max_batch_bytes: Option<u32>,
    /// When appends are synced
    #[arg(long, value_enum, default_value_t = FlushArg::Always)]
    flush: FlushArg,
    /// For --flush interval, ms
    #[arg(long, default_value_t = 1000)]
    flush_interval_ms: u64,
}

/// `produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The topic
    topic: String,
    /// Read records from this file instead of standard input
    #[arg(long, short)]
    file: Option<std::path::PathBuf>,
    /// The key of every record
    #[arg(long, short)]
    key: Option<String>,
    /// Split each line at the first SEP into key and value
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Write to this partition instead of the key's
    #[arg(long, short)]
    partition: Option<u32>,
    /// A header KEY=VALUE for every record (repeatable)
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// When the broker acknowledges
    #[arg(long, value_enum, default_value_t = AcksArg::Durable)]
    acks: AcksArg,
}

/// `consume`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("start").args(["from_beginning", "offset", "from_time"])))]
pub struct ConsumeArgs {
    /// The topic
    topic: String,
    /// Consume as this group: start from its committed offsets and commit what is printed
    #[arg(long, short)]
    group: Option<String>,
    /// Start at the first offset (even if the group committed one)
    #[arg(long)]
    from_beginning: bool,
    /// Start at this offset, or at `start` or `end` of each partition
    #[arg(long, short, value_parser = parse_start, allow_hyphen_values = true)]
    offset: Option<Seek>,
    /// Start at the first record at or after this time, ms since the Unix epoch
    #[arg(long, value_name = "MS")]
    from_time: Option<i64>,
    /// Only this partition
    #[arg(long, short)]
    partition: Option<u32>,
    /// Stop after this many records
    #[arg(long, short = 'n')]
    max_messages: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end
    #[arg(long, short = 'f')]
    follow: bool,
}

fn parse_start(text: &str) -> Result<Seek, String> {
    match text {
        "start" | "beginning" | "earliest" => Ok(Seek::Beginning),
        "end" | "latest" => Ok(Seek::End),
        n => n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Seek::Offset)
            .ok_or_else(|| {
                format!("{n:?} is not an offset: use a number of 0 or more, `start` or `end`")
            }),
    }
}

/// `groups reset-offsets`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset", "to_time"])))]
pub struct ResetArgs {
    /// The consumer group
    group: String,
    /// The topic whose partitions are reset
    #[arg(long, short)]
    topic: String,
    /// To each partition's first offset
    #[arg(long)]
    to_earliest: bool,
    /// To each partition's end
    #[arg(long)]
    to_latest: bool,
    /// To this offset in every partition
    #[arg(long)]
    to_offset: Option<i64>,
    /// To the first offset at or after this time, ms since the Unix epoch
    #[arg(long, value_name = "MS")]
    to_time: Option<i64>,
}

fn flush_name(flush: i32, interval: Option<u64>) -> String {
    match proto::FlushPolicy::try_from(flush) {
        Ok(proto::FlushPolicy::Interval) => format!("interval({}ms)", interval.unwrap_or_default()),
        Ok(proto::FlushPolicy::Os) => "os".into(),
        _ => "always".into(),
    }
}

fn describe_json(d: &proto::TopicDescription) -> Value {
    let c = d.config.unwrap_or_default();
    json!({
        "name": d.name,
        "partitions": d.partitions,
        "created_ms": d.created_ms,
        "config": {
            "retention_ms": c.retention_ms,
            "retention_bytes": c.retention_bytes,
            "segment_bytes": c.segment_bytes,
            "segment_ms": c.segment_ms,
            "max_batch_bytes": c.max_batch_bytes,
            "flush": flush_name(c.flush, c.flush_interval_ms),
        },
        "partition_details": d.partition_details.iter().map(|p| json!({
            "partition": p.partition,
            "start_offset": p.start_offset,
            "end_offset": p.end_offset,
            "high_watermark": p.high_watermark,
            "size_bytes": p.size_bytes,
            "segment_count": p.segment_count,
        })).collect::<Vec<_>>(),
    })
}

fn print_description(out: &Printer, d: &proto::TopicDescription) {
    if out.format() == Output::Json {
        out.json(&describe_json(d));
        return;
    }
    let c = d.config.unwrap_or_default();
    let limit = |v: Option<i64>| match v {
        Some(-1) | None => "unlimited".to_string(),
        Some(v) => v.to_string(),
    };
    println!(
        "topic {}  partitions {}  retention_ms {}  retention_bytes {}  segment_bytes {}  flush {}",
        d.name,
        d.partitions,
        limit(c.retention_ms),
        limit(c.retention_bytes),
        c.segment_bytes.unwrap_or_default(),
        flush_name(c.flush, c.flush_interval_ms)
    );
    let rows = d
        .partition_details
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.start_offset.to_string(),
                p.end_offset.to_string(),
                p.high_watermark.to_string(),
                p.size_bytes.to_string(),
                p.segment_count.to_string(),
            ]
        })
        .collect();
    out.table(
        &[
            "PARTITION",
            "START",
            "END",
            "HIGH-WATERMARK",
            "BYTES",
            "SEGMENTS",
        ],
        rows,
        Value::Null,
    );
}

/// `topics create`.
pub async fn topics_create(
    broker: &str,
    out: &Printer,
    args: CreateArgs,
) -> Result<(), ClientError> {
    let settings = TopicSettings {
        retention_ms: args.retention_ms,
        retention_bytes: args.retention_bytes,
        segment_bytes: args.segment_bytes,
        segment_ms: args.segment_ms,
        max_batch_bytes: args.max_batch_bytes,
        flush: match args.flush {
            FlushArg::Always => Flush::Always,
            FlushArg::Interval => Flush::IntervalMs(args.flush_interval_ms),
            FlushArg::Os => Flush::Os,
        },
    };
    let described = Admin::connect(broker)?
        .create_topic(&args.name, args.partitions, &settings)
        .await?;
    out.message(
        &format!(
            "created topic {} with {} partitions",
            described.name, described.partitions
        ),
        describe_json(&described),
    );
    Ok(())
}

/// `topics list`.
pub async fn topics_list(broker: &str, out: &Printer) -> Result<(), ClientError> {
    let topics = Admin::connect(broker)?.list_topics().await?;
    let json = Value::Array(
        topics
            .iter()
            .map(|t| json!({"name": t.name, "partitions": t.partitions}))
            .collect(),
    );
    let rows = topics
        .iter()
        .map(|t| vec![t.name.clone(), t.partitions.to_string()])
        .collect();
    out.table(&["TOPIC", "PARTITIONS"], rows, json);
    Ok(())
}

/// `topics describe`.
pub async fn topics_describe(broker: &str, out: &Printer, topic: &str) -> Result<(), ClientError> {
    let described = Admin::connect(broker)?.describe_topic(topic).await?;
    print_description(out, &described);
    Ok(())
}

/// `topics delete`.
pub async fn topics_delete(broker: &str, out: &Printer, topic: &str) -> Result<(), ClientError> {
    Admin::connect(broker)?.delete_topic(topic).await?;
    out.message(&format!("deleted topic {topic}"), json!({"deleted": topic}));
    Ok(())
}

fn parse_headers(headers: &[String]) -> Result<Vec<(String, Option<Bytes>)>, ClientError> {
    headers
        .iter()
        .map(|h| match h.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                Ok((k.to_string(), Some(Bytes::copy_from_slice(v.as_bytes()))))
            }
            _ => Err(ClientError::Invalid(format!(
                "--header {h:?}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

/// `produce`.
pub async fn produce(broker: &str, out: &Printer, args: ProduceArgs) -> Result<(), ClientError> {
    if args.key.is_some() && args.key_separator.is_some() {
        return Err(ClientError::Invalid(
            "--key and --key-separator cannot be used together".into(),
        ));
    }
    if args.key_separator.as_deref() == Some("") {
        return Err(ClientError::Invalid(
            "--key-separator must not be empty".into(),
        ));
    }
    let headers = parse_headers(&args.headers)?;
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(std::fs::File::open(path).map_err(
            |e| ClientError::Invalid(format!("--file {}: {e}", path.display())),
        )?)),
        None => Box::new(std::io::stdin().lock()),
    };
    // Fail fast, before reading input, if the topic does not exist.
    let partitions = Admin::connect(broker)?
        .describe_topic(&args.topic)
        .await?
        .partitions;
    if let Some(p) = args.partition
        && p >= partitions
    {
        return Err(ClientError::Broker {
            code: tonic::Code::NotFound,
            message: format!(
                "unknown partition {p} of topic {:?}: it has partitions 0..{partitions}",
                args.topic
            ),
        });
    }
    let config = ProducerConfig {
        acks: args.acks.into(),
        ..ProducerConfig::new(broker)
    };
    let producer = Producer::new(config)?;
    let bar = out.progress(None, "produced");
    let mut deliveries = Vec::new();
    for line in input.lines() {
        let line = line.map_err(|e| ClientError::Invalid(format!("reading input: {e}")))?;
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => (None, line),
            },
            None => (args.key.clone(), line),
        };
        let record = ProducerRecord {
            key: key.map(Bytes::from),
            value: Some(Bytes::from(value)),
            headers: headers.clone(),
            timestamp_ms: None,
            partition: args.partition,
        };
        deliveries.push(producer.send(&args.topic, record).await?);
        bar.inc(1);
    }
    producer.flush().await?;
    let mut per_partition = std::collections::BTreeMap::<u32, (i64, i64, u64)>::new();
    let mut first_error = None;
    let mut produced = 0u64;
    for delivery in deliveries {
        match delivery.await {
            Ok(meta) => {
                produced += 1;
                let entry =
                    per_partition
                        .entry(meta.partition)
                        .or_insert((meta.offset, meta.offset, 0));
                entry.0 = entry.0.min(meta.offset);
                entry.1 = entry.1.max(meta.offset);
                entry.2 += 1;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    producer.close().await?;
    bar.finish_and_clear();
    if let Some(e) = first_error {
        return Err(e);
    }
    let json = json!({
        "topic": args.topic,
        "records": produced,
        "partitions": per_partition.iter().map(|(p, (first, last, n))| json!({"partition": p, "first_offset": first, "last_offset": last, "records": n})).collect::<Vec<_>>(),
    });
    let noun = if produced == 1 { "record" } else { "records" };
    out.message(
        &format!("produced {produced} {noun} to {}", args.topic),
        json,
    );
    Ok(())
}

fn record_json(r: &ConsumerRecord) -> Value {
    let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    json!({
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp_ms": r.timestamp_ms,
        "key": text(&r.key),
        "value": text(&r.value),
        "headers": r.headers.iter().map(|(k, v)| json!({"key": k, "value": text(v)})).collect::<Vec<_>>(),
    })
}

/// `consume`.
pub async fn consume(broker: &str, out: &Printer, args: ConsumeArgs) -> Result<(), ClientError> {
    let mut admin = Admin::connect(broker)?;
    let described = admin.describe_topic(&args.topic).await?;
    let partitions: Vec<TopicPartition> = match args.partition {
        Some(p) if p >= described.partitions => {
            return Err(ClientError::Broker {
                code: tonic::Code::NotFound,
                message: format!(
                    "unknown partition {p} of topic {:?}: it has partitions 0..{}",
                    args.topic, described.partitions
                ),
            });
        }
        Some(p) => vec![TopicPartition::new(&args.topic, p)],
        None => (0..described.partitions)
            .map(|p| TopicPartition::new(&args.topic, p))
            .collect(),
    };
    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        commit: CommitMode::Manual,
        ..ConsumerConfig::new(broker, args.group.as_deref())
    };
    let mut consumer = Consumer::new(config)?;
    // With a group and no --partition, join the group: the coordinator
    // shares the partitions with the group's other members.
    let member = args.group.is_some() && args.partition.is_none();
    if member {
        consumer.subscribe(&[args.topic.as_str()]).await?;
    } else {
        consumer.assign(partitions.clone()).await?;
    }
    if args.from_beginning {
        consumer.seek_all(Seek::Beginning).await?;
    } else if let Some(seek) = args.offset {
        consumer.seek_all(seek).await?;
    } else if let Some(ms) = args.from_time {
        consumer.seek_all(Seek::Time(ms)).await?;
    }
    // Without --follow, stop at the end as it is now.
    let ends: Vec<(TopicPartition, i64)> = partitions
        .iter()
        .map(|tp| {
            (
                tp.clone(),
                described
                    .partition_details
                    .get(tp.partition as usize)
                    .map_or(0, |d| d.high_watermark),
            )
        })
        .collect();
    let remaining: i64 = ends
        .iter()
        .filter_map(|(tp, end)| {
            consumer
                .position(&tp.topic, tp.partition)
                .map(|p| (end - p).max(0))
        })
        .sum();
    let total = match (args.follow, args.max_messages) {
        (false, Some(max)) => Some(max.min(remaining as u64)),
        (false, None) => Some(remaining as u64),
        (true, max) => max,
    };
    let bar = out.progress(total, "consumed");
    let mut printed = 0u64;
    // Done at --max-messages, or (without --follow) once every partition this
    // consumer owns has reached the end it had at the start.
    let done = |consumer: &Consumer, printed: u64| {
        args.max_messages.is_some_and(|max| printed >= max)
            || (!args.follow
                && ends.iter().all(|(tp, end)| {
                    consumer
                        .position(&tp.topic, tp.partition)
                        .is_none_or(|p| p >= *end)
                }))
    };
    while !done(&consumer, printed) {
        let records = consumer.poll(Duration::from_millis(500)).await?;
        // Records fetched but not printed (past --max-messages, or past the
        // end without --follow) are not consumed: rewind to the first of them
        // per partition, so a group commit never skips them.
        let mut rewind: std::collections::BTreeMap<(String, u32), i64> = Default::default();
        let mut text = String::new();
        let mut batch_printed = 0u64;
        for record in records {
            let past_max = args
                .max_messages
                .is_some_and(|max| printed + batch_printed >= max);
            let past_end = !args.follow
                && ends
                    .iter()
                    .any(|(tp, end)| tp.partition == record.partition && record.offset >= *end);
            if past_max || past_end {
                rewind
                    .entry((record.topic.clone(), record.partition))
                    .or_insert(record.offset);
                continue;
            }
            let line = match out.format() {
                Output::Json => record_json(&record).to_string(),
                Output::Table => record
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default(),
            };
            text.push_str(&line);
            text.push('\n');
            batch_printed += 1;
        }
        for ((topic, partition), offset) in rewind {
            consumer
                .seek(&topic, partition, Seek::Offset(offset))
                .await?;
        }
        // One redraw of the progress bar per poll, not per record.
        bar.suspend(|| {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        });
        printed += batch_printed;
        bar.inc(batch_printed);
        if args.group.is_some() {
            consumer.commit().await?;
        }
    }
    if member {
        consumer.close().await?;
    } else if args.group.is_some() {
        consumer.commit().await?;
    }
    bar.finish_and_clear();
    Ok(())
}

/// `offsets`.
pub async fn offsets(broker: &str, out: &Printer, topic: &str) -> Result<(), ClientError> {
    let offsets = Admin::connect(broker)?.offsets(topic).await?;
    let json = Value::Array(
        offsets
            .iter()
            .map(|(p, e, l)| json!({"partition": p, "earliest": e, "latest": l}))
            .collect(),
    );
    let rows = offsets
        .iter()
        .map(|(p, e, l)| vec![p.to_string(), e.to_string(), l.to_string()])
        .collect();
    out.table(&["PARTITION", "EARLIEST", "LATEST"], rows, json);
    Ok(())
}

/// `groups list`.
pub async fn groups_list(broker: &str, out: &Printer) -> Result<(), ClientError> {
    let groups = Admin::connect(broker)?.list_groups().await?;
    let json = Value::Array(groups.iter().map(|g| json!({"group": g})).collect());
    out.table(
        &["GROUP"],
        groups.iter().map(|g| vec![g.clone()]).collect(),
        json,
    );
    Ok(())
}

/// `groups describe`.
pub async fn groups_describe(broker: &str, out: &Printer, group: &str) -> Result<(), ClientError> {
    let described = Admin::connect(broker)?.describe_group(group).await?;
    let partitions_of = |m: &proto::GroupMember| {
        m.partitions
            .iter()
            .map(|p| format!("{}/{}", p.topic, p.partition))
            .collect::<Vec<_>>()
    };
    let json = json!({
        "group": described.group,
        "state": described.state,
        "generation": described.generation,
        "members": described.members.iter().map(|m| json!({
            "member_id": m.member_id, "client_id": m.client_id, "partitions": partitions_of(m),
        })).collect::<Vec<_>>(),
        "partitions": described.partitions.iter().map(|p| json!({
            "topic": p.topic, "partition": p.partition, "committed_offset": p.committed_offset,
            "log_end_offset": p.log_end_offset, "lag": p.lag, "metadata": p.metadata,
        })).collect::<Vec<_>>(),
        "total_lag": described.partitions.iter().map(|p| p.lag).sum::<i64>(),
    });
    if out.format() == Output::Json {
        out.json(&json);
        return Ok(());
    }
    println!(
        "group {}  state {}  generation {}  members {}",
        described.group,
        described.state,
        described.generation,
        described.members.len()
    );
    if !described.members.is_empty() {
        let rows = described
            .members
            .iter()
            .map(|m| {
                vec![
                    m.member_id.clone(),
                    m.client_id.clone(),
                    partitions_of(m).join(","),
                ]
            })
            .collect();
        out.table(&["MEMBER", "CLIENT", "PARTITIONS"], rows, Value::Null);
    }
    let rows = described
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                p.committed_offset.to_string(),
                p.log_end_offset.to_string(),
                p.lag.to_string(),
            ]
        })
        .collect();
    out.table(
        &["TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG"],
        rows,
        Value::Null,
    );
    Ok(())
}

/// `groups reset-offsets`.
pub async fn groups_reset(broker: &str, out: &Printer, args: ResetArgs) -> Result<(), ClientError> {
    let to = match (
        args.to_earliest,
        args.to_latest,
        args.to_offset,
        args.to_time,
    ) {
        (true, _, _, _) => ResetTo::Earliest,
        (_, true, _, _) => ResetTo::Latest,
        (_, _, Some(offset), _) => ResetTo::Offset(offset),
        (_, _, _, Some(ms)) => ResetTo::Time(ms),
        _ => {
            return Err(ClientError::Invalid(
                "choose one of --to-earliest, --to-latest, --to-offset, --to-time".into(),
            ));
        }
    };
    let reset = Admin::connect(broker)?
        .reset_offsets(&args.group, &args.topic, to)
        .await?;
    let json = json!({
        "group": args.group,
        "topic": args.topic,
        "partitions": reset.iter().map(|(p, o)| json!({"partition": p, "offset": o})).collect::<Vec<_>>(),
    });
    let rows = reset
        .iter()
        .map(|(p, o)| vec![args.topic.clone(), p.to_string(), o.to_string()])
        .collect();
    out.table(&["TOPIC", "PARTITION", "NEW-OFFSET"], rows, json);
    Ok(())
}
