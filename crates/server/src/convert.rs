//! Conversions at the edge between the gRPC contract's types and the core's.

use bytes::Bytes;
use carteiro::proto;
use carteiro::record::RecordBatch;
use carteiro_core::assignment::Strategy;
use carteiro_core::coordinator::{HeartbeatStatus, JoinOutcome, JoinRequest, Joined, Subscription};
use carteiro_core::groups::GroupDescription;
use carteiro_core::produce::{Payload, ProduceRequest, ProducedRecord};
use carteiro_core::producers::ProducerIdentity;
use carteiro_core::topics::{Retention, TopicDescription, TopicSettings};
use carteiro_core::{Acks, BrokerError, FlushPolicy};
use carteiro_storage::LogConfig;

/// An enum field's value, or an error naming the field, the value and the
/// values allowed (prost keeps unknown values as plain numbers).
pub fn known<E: TryFrom<i32>>(
    field: &'static str,
    value: i32,
    allowed: &str,
) -> Result<E, BrokerError> {
    E::try_from(value)
        .map_err(|_| BrokerError::invalid(field, format!("{value} is not one of {allowed}")))
}

/// A produce request of the contract as the core's.
pub fn produce_request(request: proto::ProduceRequest) -> Result<ProduceRequest, BrokerError> {
    let acks = match known("acks", request.acks, "ACKS_DURABLE (0), ACKS_APPENDED (1)")? {
        proto::Acks::Durable => Acks::Durable,
        proto::Acks::Appended => Acks::Appended,
    };
    let payload = match (request.records.is_empty(), request.record_batch.is_empty()) {
        (true, true) => {
            return Err(BrokerError::invalid(
                "records",
                "empty produce: set records or record_batch",
            ));
        }
        (false, false) => {
            return Err(BrokerError::invalid(
                "record_batch",
                "set either records or record_batch, not both",
            ));
        }
        (true, false) => Payload::Batch(request.record_batch),
        (false, true) => Payload::Records(
            request
                .records
                .into_iter()
                .map(|r| ProducedRecord {
                    key: r.key,
                    value: r.value,
                    headers: r.headers.into_iter().map(|h| (h.key, h.value)).collect(),
                    timestamp_ms: r.timestamp_ms,
                })
                .collect(),
        ),
    };
    Ok(ProduceRequest {
        topic: request.topic,
        partition: request.partition,
        payload,
        acks,
    })
}

/// What a decoded fetch reply may still decode, in bytes of records
/// sections: an uncompressed batch counts its size, a compressed one what
/// it decompresses to. It starts at the fetched bytes (the reply budget
/// already holds them), so compressed batches cannot make a reply hold
/// many times what was reserved; the first batch with records is always
/// decoded, so a reply is never empty for want of budget.
#[derive(Debug)]
pub struct DecodeBudget {
    left: usize,
    decoded_any: bool,
}

impl DecodeBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        DecodeBudget {
            left: bytes,
            decoded_any: false,
        }
    }
}

/// Decodes stored batches into records at or after `from_offset`, while
/// `budget` lasts. Returns the offset to fetch next when the budget ran out
/// before the last batch, `None` when every batch was decoded.
pub fn decode_records(
    chunks: &[Bytes],
    from_offset: u64,
    budget: &mut DecodeBudget,
    out: &mut Vec<proto::Record>,
) -> Result<Option<i64>, BrokerError> {
    for chunk in chunks {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let damaged = |offset: i64, e: &dyn std::fmt::Display| {
                BrokerError::DataLoss(format!("stored batch at offset {offset}: {e}"))
            };
            let (batch, tail) = RecordBatch::parse(rest).map_err(|e| damaged(-1, &e))?;
            rest = tail;
            let base = batch.base_offset();
            if (batch.last_offset() as u64) < from_offset {
                // Wholly before the position: not even decompressed.
                continue;
            }
            let records = batch.records().map_err(|e| damaged(base, &e))?;
            let decoded_bytes = records
                .decompressed()
                .map_or(batch.as_bytes().len(), Bytes::len);
            if budget.decoded_any && decoded_bytes > budget.left {
                return Ok(Some(base.max(from_offset as i64)));
            }
            budget.left = budget.left.saturating_sub(decoded_bytes);
            budget.decoded_any = true;
            // Keys and values lie in the decompressed records of a
            // compressed batch, in the fetched bytes otherwise.
            let source = records.decompressed().unwrap_or(chunk);
            for record in records.iter() {
                let record = record.map_err(|e| damaged(base, &e))?;
                if (record.offset as u64) < from_offset {
                    continue;
                }
                out.push(proto::Record {
                    key: record.key.map(|k| source.slice_ref(k)),
                    value: record.value.map(|v| source.slice_ref(v)),
                    headers: record
                        .headers
                        .iter()
                        .map(|h| proto::Header {
                            key: String::from_utf8_lossy(h.key).into_owned(),
                            value: h.value.map(|v| source.slice_ref(v)),
                        })
                        .collect(),
                    timestamp_ms: record.timestamp,
                    offset: record.offset,
                });
            }
        }
    }
    Ok(None)
}

fn retention(field: &'static str, value: Option<i64>) -> Result<Option<Retention>, BrokerError> {
    match value {
        None => Ok(None),
        Some(-1) => Ok(Some(Retention::Unlimited)),
        Some(v) if v > 0 => Ok(Some(Retention::Limit(v as u64))),
        Some(v) => Err(BrokerError::invalid(
            field,
            format!("{v} is not allowed: use a positive value, or -1 for no limit"),
        )),
    }
}

/// A new topic's settings from the wire.
pub fn topic_settings(config: Option<&proto::TopicConfig>) -> Result<TopicSettings, BrokerError> {
    let Some(c) = config else {
        return Ok(TopicSettings::default());
    };
    let allowed = "FLUSH_POLICY_ALWAYS (0), FLUSH_POLICY_INTERVAL (1), FLUSH_POLICY_OS (2)";
    let flush = match known("config.flush", c.flush, allowed)? {
        proto::FlushPolicy::Always => FlushPolicy::Always,
        proto::FlushPolicy::Os => FlushPolicy::Os,
        proto::FlushPolicy::Interval => match c.flush_interval_ms {
            Some(ms) => FlushPolicy::IntervalMs(ms),
            None => {
                return Err(BrokerError::invalid(
                    "config.flush_interval_ms",
                    "required with FLUSH_POLICY_INTERVAL",
                ));
            }
        },
    };
    Ok(TopicSettings {
        retention_ms: retention("config.retention_ms", c.retention_ms)?,
        retention_bytes: retention("config.retention_bytes", c.retention_bytes)?,
        segment_bytes: c.segment_bytes,
        segment_ms: c.segment_ms,
        max_batch_bytes: c.max_batch_bytes,
        flush: Some(flush),
    })
}

/// The effective config of a topic, every field set.
pub fn topic_config(config: &LogConfig) -> proto::TopicConfig {
    let (flush, interval) = match config.flush {
        FlushPolicy::Always => (proto::FlushPolicy::Always, None),
        FlushPolicy::IntervalMs(ms) => (proto::FlushPolicy::Interval, Some(ms)),
        FlushPolicy::Os => (proto::FlushPolicy::Os, None),
    };
    let limit = |v: Option<u64>| Some(v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)));
    proto::TopicConfig {
        retention_ms: limit(config.retention_ms),
        retention_bytes: limit(config.retention_bytes),
        segment_bytes: Some(config.segment_bytes),
        segment_ms: Some(config.segment_ms),
        max_batch_bytes: Some(config.max_batch_bytes),
        flush: flush as i32,
        flush_interval_ms: interval,
    }
}

/// A topic as `DescribeTopic` shows it.
pub fn topic_description(topic: TopicDescription) -> proto::TopicDescription {
    proto::TopicDescription {
        partitions: topic.partitions.len() as u32,
        config: Some(topic_config(&topic.config)),
        created_ms: topic.created_ms,
        partition_details: topic
            .partitions
            .into_iter()
            .map(|p| proto::PartitionDescription {
                partition: p.partition,
                start_offset: p.start_offset as i64,
                end_offset: p.end_offset as i64,
                high_watermark: p.high_watermark as i64,
                size_bytes: p.size_bytes,
                segment_count: p.segment_count as u32,
            })
            .collect(),
        name: topic.name,
    }
}

/// A group as `DescribeGroup` shows it.
pub fn group_description(group: GroupDescription) -> proto::GroupDescription {
    proto::GroupDescription {
        partitions: group
            .partitions
            .into_iter()
            .map(|p| proto::GroupPartition {
                topic: p.topic,
                partition: p.partition,
                committed_offset: p.committed.offset,
                metadata: p.committed.metadata,
                log_end_offset: p.log_end_offset as i64,
                lag: p.lag as i64,
            })
            .collect(),
        state: group.state.name().to_string(),
        generation: group.generation,
        members: group
            .members
            .into_iter()
            .map(|m| proto::GroupMember {
                member_id: m.member_id,
                client_id: m.client_id,
                partitions: m
                    .partitions
                    .into_iter()
                    .map(|(topic, partition)| proto::GroupMemberPartition { topic, partition })
                    .collect(),
            })
            .collect(),
        group: group.group,
    }
}

/// A join of the contract (an assigned group) as the core's.
pub fn join_request(request: proto::JoinGroupRequest) -> Result<JoinRequest, BrokerError> {
    let allowed = "ASSIGNMENT_STRATEGY_RANGE (0), ASSIGNMENT_STRATEGY_ROUND_ROBIN (1)";
    let strategy = match known("strategy", request.strategy, allowed)? {
        proto::AssignmentStrategy::Range => Strategy::Range,
        proto::AssignmentStrategy::RoundRobin => Strategy::RoundRobin,
    };
    Ok(JoinRequest {
        group: request.group,
        member_id: Some(request.member_id).filter(|id| !id.is_empty()),
        client_id: request.client_id,
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscription: Subscription::Assigned {
            topics: request.topics,
            strategy,
        },
    })
}

/// A join's answer as the contract's.
pub fn joined(joined: Joined) -> proto::JoinGroupResponse {
    let assignment = match joined.outcome {
        JoinOutcome::Assigned(partitions) => partitions
            .into_iter()
            .map(|(topic, partition)| proto::TopicPartition { topic, partition })
            .collect(),
        // The contract's groups are assigned; a classic outcome has no partitions here.
        JoinOutcome::Classic { .. } => Vec::new(),
    };
    proto::JoinGroupResponse {
        member_id: joined.member_id,
        generation: joined.generation,
        assignment,
        member_count: joined.member_count,
    }
}

/// A heartbeat's answer as the contract's.
pub fn heartbeat_status(status: HeartbeatStatus) -> proto::HeartbeatStatus {
    match status {
        HeartbeatStatus::Ok => proto::HeartbeatStatus::Ok,
        HeartbeatStatus::Rebalance => proto::HeartbeatStatus::Rebalance,
        HeartbeatStatus::UnknownMember => proto::HeartbeatStatus::UnknownMember,
        HeartbeatStatus::StaleGeneration => proto::HeartbeatStatus::StaleGeneration,
    }
}

/// An InitProducerId request's current identity, if it names one.
pub fn producer_identity(
    request: proto::InitProducerIdRequest,
) -> Result<Option<ProducerIdentity>, BrokerError> {
    match (request.producer_id, request.producer_epoch) {
        (None, None) => Ok(None),
        (Some(producer_id), Some(epoch)) => {
            let epoch = i16::try_from(epoch).map_err(|_| {
                BrokerError::invalid(
                    "producer_epoch",
                    format!(
                        "{epoch} is outside 0..={}",
                        carteiro_core::producers::PRODUCER_EPOCH_MAX
                    ),
                )
            })?;
            Ok(Some(ProducerIdentity { producer_id, epoch }))
        }
        _ => Err(BrokerError::invalid(
            "producer_id",
            "set producer_id and producer_epoch together, or neither for a new id",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use carteiro::record::{Compression, NewRecord, RecordBatchBuilder, set_base_offset};

    /// Stored batches of `per_batch` records each, compressed with `codec`,
    /// offsets following on; one chunk, as a read hands them out.
    fn stored(codec: Compression, batches: usize, per_batch: usize) -> Bytes {
        let value = vec![b'z'; 1000];
        let mut out = Vec::new();
        for b in 0..batches {
            let mut builder = RecordBatchBuilder::new().with_compression(codec);
            for _ in 0..per_batch {
                builder
                    .append(&NewRecord {
                        timestamp: 1,
                        value: Some(&value),
                        ..NewRecord::default()
                    })
                    .expect("fits");
            }
            let mut batch = builder.build().expect("built");
            set_base_offset(&mut batch, (b * per_batch) as i64);
            out.extend_from_slice(&batch);
        }
        Bytes::from(out)
    }

    fn offsets(records: &[proto::Record]) -> Vec<i64> {
        records.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn a_decoded_reply_holds_no_more_than_it_fetched_and_says_where_to_go_on() {
        // Three zstd batches of 100 records of 1000 bytes: a few hundred
        // bytes each on disk, 100 KB each decoded.
        let chunk = stored(Compression::Zstd, 3, 100);
        assert!(chunk.len() < 3 * 1024, "{} bytes", chunk.len());
        let mut budget = DecodeBudget::new(chunk.len());
        let mut out = Vec::new();
        let next = decode_records(std::slice::from_ref(&chunk), 0, &mut budget, &mut out)
            .expect("decodes");
        // The first batch always; then the budget is spent.
        assert_eq!(next, Some(100));
        assert_eq!(offsets(&out), (0..100).collect::<Vec<_>>());
        // From the middle of a batch: the records from there, and the
        // next fetch starts at the batch left out.
        let mut budget = DecodeBudget::new(chunk.len());
        let mut out = Vec::new();
        let next = decode_records(std::slice::from_ref(&chunk), 150, &mut budget, &mut out)
            .expect("decodes");
        assert_eq!(next, Some(200));
        assert_eq!(offsets(&out), (150..200).collect::<Vec<_>>());
        // A budget of the decoded size takes all.
        let mut budget = DecodeBudget::new(300 * 1100);
        let mut out = Vec::new();
        let next = decode_records(std::slice::from_ref(&chunk), 0, &mut budget, &mut out)
            .expect("decodes");
        assert_eq!(next, None);
        assert_eq!(out.len(), 300);
        assert!(
            out.iter()
                .all(|r| r.value.as_deref() == Some(&[b'z'; 1000][..]))
        );
    }

    #[test]
    fn uncompressed_batches_always_fit_the_bytes_fetched() {
        let chunk = stored(Compression::None, 3, 10);
        let mut budget = DecodeBudget::new(chunk.len());
        let mut out = Vec::new();
        let next = decode_records(std::slice::from_ref(&chunk), 0, &mut budget, &mut out)
            .expect("decodes");
        assert_eq!(next, None);
        assert_eq!(offsets(&out), (0..30).collect::<Vec<_>>());
    }
}
