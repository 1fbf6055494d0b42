//! Fetch: the stored batches, as stored, from each partition's offset, with
//! the core's long poll on `min_bytes` and `max_wait_ms`. No fetch
//! sessions: every reply has session id 0, so clients send full requests.
//! With no transactions, read_committed sees what read_uncommitted sees:
//! everything below the high watermark.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use carteiro_core::BrokerError;
use carteiro_core::fetch::{FETCH_MAX_WAIT_MS_MAX, FetchPartition, FetchRequest as CoreFetch};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind};

use crate::error::{Family, kafka_error};
use crate::listener::Edge;
use crate::request::{Body, Reply};

/// One partition's batches as one byte string (copied only if the core
/// read them in more than one piece).
fn joined(batches: Vec<Bytes>) -> Bytes {
    match batches.len() {
        0 => Bytes::new(),
        1 => batches.into_iter().next().unwrap_or_default(),
        _ => {
            let mut out = BytesMut::with_capacity(batches.iter().map(Bytes::len).sum());
            for batch in batches {
                out.extend_from_slice(&batch);
            }
            out.freeze()
        }
    }
}

/// Answers a Fetch, waiting as the request allows.
pub(crate) async fn fetch(edge: &Arc<Edge>, request: FetchRequest, version: i16) -> Reply {
    let mut asked: Vec<FetchPartition> = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            asked.push(FetchPartition {
                topic: topic.topic.0.as_str().to_string(),
                partition: u32::try_from(partition.partition).unwrap_or(u32::MAX),
                offset: partition.fetch_offset,
                max_bytes: u32::try_from(partition.partition_max_bytes)
                    .unwrap_or(0)
                    .max(1),
            });
        }
    }
    let core = CoreFetch {
        partitions: asked,
        // The first batch is always served, even over the limit, so a
        // non-positive limit means "at least one batch".
        max_bytes: u32::try_from(request.max_bytes).unwrap_or(1).max(1),
        min_bytes: u32::try_from(request.min_bytes).unwrap_or(0),
        max_wait_ms: u32::try_from(request.max_wait_ms)
            .unwrap_or(0)
            .min(FETCH_MAX_WAIT_MS_MAX),
    };
    let answer = FetchResponse::default().with_session_id(0);
    if request.topics.is_empty() {
        return Reply::new(ResponseKind::Fetch(answer));
    }
    let fetched = match edge.broker.fetch(core).await {
        Ok(fetched) => fetched,
        Err(e) => {
            return Reply::new(ResponseKind::Fetch(every_partition_failed(
                &request, &e, version,
            )));
        }
    };
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for data in fetched.partitions {
        // OFFSET_OUT_OF_RANGE, with the log start offset, makes the client
        // reset per its auto.offset.reset.
        let error = data.error.as_ref().map(|e| kafka_error(e, Family::Data));
        let high_watermark =
            if error.is_some() && data.high_watermark == 0 && data.batches.is_empty() {
                -1
            } else {
                data.high_watermark as i64
            };
        let mut partition = PartitionData::default()
            .with_partition_index(data.partition as i32)
            .with_high_watermark(high_watermark)
            .with_last_stable_offset(high_watermark)
            .with_log_start_offset(data.log_start_offset as i64)
            .with_aborted_transactions(Some(Vec::new()))
            .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
            .with_records(Some(joined(data.batches)));
        if let Some(e) = &error {
            partition = partition.with_error_code(e.code());
        }
        match topics.last_mut() {
            Some(last) if last.topic.0.as_str() == data.topic => last.partitions.push(partition),
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(kafka_protocol::messages::TopicName(super::text(data.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    Reply {
        body: Body::Kind(ResponseKind::Fetch(answer.with_responses(topics))),
        hold: Some(fetched.reservation),
    }
}

/// A fetch refused as a whole (a limit, or the broker stopping): every
/// partition gets the error, so the client retries each.
fn every_partition_failed(request: &FetchRequest, e: &BrokerError, version: i16) -> FetchResponse {
    let error = kafka_error(e, Family::Data);
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_error_code(error.code())
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                        .with_records(Some(Bytes::new()))
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    let answer = FetchResponse::default().with_responses(topics);
    if version >= 7 {
        answer.with_error_code(0)
    } else {
        answer
    }
}
