//! `logctl produce`: records from standard input or a file.

use std::io::BufRead;

use bytes::Bytes;
use carteiro_client::{Admin, ClientError, Producer, ProducerConfig, ProducerRecord};
use clap::Args;
use serde_json::json;

use crate::output::Printer;

use super::*;

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
    /// Compress each batch with this codec (a batch that would not shrink
    /// goes uncompressed)
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
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
    check_partition(&args.topic, args.partition, partitions)?;
    let config = ProducerConfig {
        acks: args.acks.into(),
        compression: args.compression.into(),
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
