//! OffsetCommit and OffsetFetch on the same committed offsets that gRPC
//! consumers use. A consumer outside a group commits with generation -1
//! and no member id (allowed while the group has no members).
//!
//! Kafka answers each partition; the core commits all or none. So the
//! partitions that cannot be committed (unknown topic or partition) get
//! their error here, and the rest are committed together.

use std::sync::Arc;

use carteiro_core::groups::OffsetCommit;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::text;
use crate::error::{Family, kafka_error};
use crate::listener::Edge;

/// A partition of a commit: its index and, if refused here, its error code.
type PartitionOutcome = (i32, Option<i16>);

fn partition_exists(edge: &Edge, topic: &str, partition: i32) -> bool {
    u32::try_from(partition).is_ok_and(|p| edge.broker.store().partition(topic, p).is_ok())
}

/// Answers OffsetCommit.
pub(crate) async fn commit(edge: &Arc<Edge>, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = request.group_id.0.as_str().to_string();
    let member_id = request.member_id.as_str().to_string();
    // -1 (outside a group) is sent with no member id, which the core checks.
    let generation = u32::try_from(request.generation_id_or_member_epoch).unwrap_or(0);
    let mut commits = Vec::new();
    // (topic, partition, error code if refused here)
    let mut answers: Vec<(TopicName, Vec<PartitionOutcome>)> = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.as_str().to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len().min(1024));
        for p in topic.partitions {
            if !partition_exists(edge, &name, p.partition_index) {
                partitions.push((
                    p.partition_index,
                    Some(ResponseError::UnknownTopicOrPartition.code()),
                ));
                continue;
            }
            commits.push(OffsetCommit {
                topic: name.clone(),
                partition: p.partition_index as u32,
                offset: p.committed_offset,
                metadata: p
                    .committed_metadata
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default(),
            });
            partitions.push((p.partition_index, None));
        }
        answers.push((topic.name, partitions));
    }
    let committed = if commits.is_empty() {
        Ok(())
    } else {
        edge.broker
            .commit_offsets(&group, &member_id, generation, commits)
            .await
            .map_err(|e| kafka_error(&e, Family::Group).code())
    };
    let topics = answers
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, refused)| {
                    let code = refused.unwrap_or_else(|| committed.err().unwrap_or(0));
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Answers OffsetFetch: -1 for a partition with no commit.
pub(crate) fn fetch(edge: &Arc<Edge>, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let group = request.group_id.0.as_str();
    if let Err(e) = carteiro_core::committed::validate_group(group) {
        let code = kafka_error(&e, Family::Group).code();
        return OffsetFetchResponse::default().with_error_code(code);
    }
    let answer = |partition: i32, committed: Option<carteiro_core::committed::Committed>| {
        let (offset, metadata) = committed.map_or((-1, String::new()), |c| (c.offset, c.metadata));
        OffsetFetchResponsePartition::default()
            .with_partition_index(partition)
            .with_committed_offset(offset)
            .with_committed_leader_epoch(-1)
            .with_metadata(Some(text(metadata)))
    };
    let topics: Vec<OffsetFetchResponseTopic> = match request.topics {
        // Null (v2 and later): every partition the group has committed.
        None => {
            let mut topics: Vec<OffsetFetchResponseTopic> = Vec::new();
            for (topic, partition, committed) in edge.broker.committed_offsets(group) {
                let partition = answer(partition as i32, Some(committed));
                match topics.last_mut() {
                    Some(last) if last.name.0.as_str() == topic => last.partitions.push(partition),
                    _ => topics.push(
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(text(topic)))
                            .with_partitions(vec![partition]),
                    ),
                }
            }
            topics
        }
        Some(asked) => asked
            .into_iter()
            .map(|topic| {
                let name = topic.name.0.as_str().to_string();
                let partitions = topic
                    .partition_indexes
                    .into_iter()
                    .take(carteiro_core::fetch::PARTITIONS_PER_REQUEST_MAX)
                    .map(|p| {
                        let committed = u32::try_from(p)
                            .ok()
                            .and_then(|q| edge.broker.committed_offset(group, &name, q));
                        answer(p, committed)
                    })
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect(),
    };
    OffsetFetchResponse::default().with_topics(topics)
}
