//! `logctl topics`: create, list, describe, alter (add partitions), delete.

use carteiro::proto;
use carteiro_client::{Admin, ClientError, Flush, TopicSettings};
use clap::Args;
use serde_json::{Value, json};

use crate::Output;
use crate::output::Printer;

use super::*;

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

/// `topics alter`.
#[derive(Debug, Args)]
pub struct AlterArgs {
    /// The topic
    name: String,
    /// The new number of partitions, in all: more than the topic has (its
    /// partitions keep their records; keys map over the new count)
    #[arg(long, short)]
    partitions: u32,
    /// Check the change with the broker and make none
    #[arg(long)]
    validate_only: bool,
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
            "created topic {} with {} partition{}",
            described.name,
            described.partitions,
            if described.partitions == 1 { "" } else { "s" }
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

/// `topics alter`: grows the topic, then shows it as `topics describe` does.
pub async fn topics_alter(broker: &str, out: &Printer, args: AlterArgs) -> Result<(), ClientError> {
    let described = Admin::connect(broker)?
        .create_partitions(&args.name, args.partitions, args.validate_only)
        .await?;
    if args.validate_only && out.format() != Output::Json {
        println!(
            "valid: topic {} can grow to {} partitions (nothing changed)",
            described.name, args.partitions
        );
    }
    print_description(out, &described);
    Ok(())
}

/// `topics delete`.
pub async fn topics_delete(broker: &str, out: &Printer, topic: &str) -> Result<(), ClientError> {
    Admin::connect(broker)?.delete_topic(topic).await?;
    out.message(&format!("deleted topic {topic}"), json!({"deleted": topic}));
    Ok(())
}
