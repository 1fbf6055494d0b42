//! `logctl consume` and `logctl offsets`.

use std::time::Duration;

use bytes::Bytes;
use carteiro_client::{
    Admin, ClientError, CommitMode, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, Seek,
    TopicPartition,
};
use clap::{ArgGroup, Args};
use serde_json::{Value, json};

use crate::Output;
use crate::output::Printer;

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
    super::check_partition(&args.topic, args.partition, described.partitions)?;
    let partitions: Vec<TopicPartition> = match args.partition {
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
    // Ctrl-C or SIGTERM ends the loop as a clean stop: the member leaves its
    // group at once (so the group rebalances now, not after the session
    // timeout) and what was printed stays committed.
    let stop = stop_signal()?;
    tokio::pin!(stop);
    while !done(&consumer, printed) {
        // A cancelled poll moves no position, so close() commits only what was printed.
        let records = tokio::select! {
            records = consumer.poll(Duration::from_millis(500)) => records?,
            () = &mut stop => break,
        };
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

/// Resolves on SIGINT (Ctrl-C) or SIGTERM; the handlers are installed when
/// this is called.
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, ClientError> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind| {
        signal(kind).map_err(|e| ClientError::Invalid(format!("cannot listen for signals: {e}")))
    };
    let mut interrupt = listen(SignalKind::interrupt())?;
    let mut terminate = listen(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
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
