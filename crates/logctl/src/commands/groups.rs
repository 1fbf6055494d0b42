//! `logctl groups`: list, describe, reset offsets.

use carteiro::proto;
use carteiro_client::{Admin, ClientError, ResetTo};
use clap::{ArgGroup, Args};
use serde_json::{Value, json};

use crate::Output;
use crate::output::Printer;

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
