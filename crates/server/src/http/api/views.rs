//! The JSON shapes of topics and groups, built from the core's
//! descriptions (docs/http.md lists every field).

use carteiro_core::FlushPolicy;
use carteiro_core::assignment::Strategy;
use carteiro_core::coordinator::GroupKind;
use carteiro_core::groups::GroupDescription;
use carteiro_core::topics::TopicDescription;
use serde::Serialize;

use crate::http::rates::RatePoint;

/// One partition of a topic.
#[derive(Debug, Serialize)]
pub struct PartitionView {
    /// The partition.
    pub partition: u32,
    /// Its first offset.
    pub start_offset: u64,
    /// The next offset to be written.
    pub end_offset: u64,
    /// Offsets below this are visible to consumers.
    pub high_watermark: u64,
    /// Bytes of its segment files.
    pub size_bytes: u64,
    /// Its segments.
    pub segments: usize,
}

/// A topic: its settings, its partitions, their sums and its newest rates.
#[derive(Debug, Serialize)]
pub struct TopicView {
    /// Its name.
    pub name: String,
    /// When it was created, ms since the Unix epoch.
    pub created_ms: i64,
    /// Its partition count.
    pub partition_count: usize,
    /// Records consumers can read: the high watermarks less the start offsets.
    pub records: u64,
    /// Bytes of segment files, all partitions.
    pub size_bytes: u64,
    /// Segments, all partitions.
    pub segments: usize,
    /// Age past which closed segments are deleted, ms; `null` keeps them.
    pub retention_ms: Option<u64>,
    /// Size past which the oldest closed segments are deleted, bytes; `null` keeps them.
    pub retention_bytes: Option<u64>,
    /// Size at which a segment rolls, bytes.
    pub segment_bytes: u64,
    /// Age at which a segment rolls, ms.
    pub segment_ms: u64,
    /// Largest batch accepted, bytes.
    pub max_batch_bytes: u32,
    /// When appends are synced: `always`, `interval` or `os`.
    pub flush: &'static str,
    /// With `interval`: at most this many ms after the append.
    pub flush_interval_ms: Option<u64>,
    /// The newest rate sample, if one was taken.
    pub rate: Option<RatePoint>,
    /// Its partitions.
    pub partitions: Vec<PartitionView>,
}

impl TopicView {
    /// A topic's view from its description and newest rate sample.
    pub fn new(topic: TopicDescription, rate: Option<RatePoint>) -> Self {
        let (flush, flush_interval_ms) = match topic.config.flush {
            FlushPolicy::Always => ("always", None),
            FlushPolicy::IntervalMs(ms) => ("interval", Some(ms)),
            FlushPolicy::Os => ("os", None),
        };
        let partitions: Vec<PartitionView> = topic
            .partitions
            .iter()
            .map(|p| PartitionView {
                partition: p.partition,
                start_offset: p.start_offset,
                end_offset: p.end_offset,
                high_watermark: p.high_watermark,
                size_bytes: p.size_bytes,
                segments: p.segment_count,
            })
            .collect();
        TopicView {
            created_ms: topic.created_ms,
            partition_count: partitions.len(),
            records: partitions
                .iter()
                .map(|p| p.high_watermark.saturating_sub(p.start_offset))
                .sum(),
            size_bytes: partitions.iter().map(|p| p.size_bytes).sum(),
            segments: partitions.iter().map(|p| p.segments).sum(),
            retention_ms: topic.config.retention_ms,
            retention_bytes: topic.config.retention_bytes,
            segment_bytes: topic.config.segment_bytes,
            segment_ms: topic.config.segment_ms,
            max_batch_bytes: topic.config.max_batch_bytes,
            flush,
            flush_interval_ms,
            rate,
            partitions,
            name: topic.name,
        }
    }
}

/// A partition a member holds.
#[derive(Debug, Serialize)]
pub struct MemberPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
}

/// A member of a group.
#[derive(Debug, Serialize)]
pub struct MemberView {
    /// Its id.
    pub member_id: String,
    /// The client's name for itself.
    pub client_id: String,
    /// Its partitions (a Kafka consumer group's, read from its leader's assignment).
    pub partitions: Vec<MemberPartition>,
}

/// A partition a group has committed.
#[derive(Debug, Serialize)]
pub struct CommittedView {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The next offset the group will consume.
    pub committed_offset: i64,
    /// The text committed with it.
    pub metadata: String,
    /// The partition's high watermark (0 if the partition is gone).
    pub high_watermark: u64,
    /// Records between the commit and the high watermark.
    pub lag: u64,
}

/// A group: its membership, its commits and their lag.
#[derive(Debug, Serialize)]
pub struct GroupView {
    /// The group.
    pub group: String,
    /// `EMPTY`, `REBALANCING`, `AWAITING_SYNC` or `STABLE`.
    pub state: &'static str,
    /// `assigned` (Carteiro's, over gRPC), `classic` (Kafka's), or `null`
    /// with no members.
    pub kind: Option<&'static str>,
    /// An assigned group's strategy: `range` or `round_robin`.
    pub strategy: Option<&'static str>,
    /// A classic group's protocol type (`consumer` for Kafka's consumers).
    pub protocol_type: Option<String>,
    /// A classic group's chosen protocol (e.g. `range`).
    pub protocol: Option<String>,
    /// Its generation (0 with no members).
    pub generation: u32,
    /// The sum of every partition's lag.
    pub lag: u64,
    /// How many members it has.
    pub member_count: usize,
    /// Its members.
    pub members: Vec<MemberView>,
    /// Its commits, with their lag.
    pub partitions: Vec<CommittedView>,
}

impl From<GroupDescription> for GroupView {
    fn from(group: GroupDescription) -> Self {
        let (kind, strategy, protocol_type) = match group.kind {
            Some(GroupKind::Assigned(strategy)) => (
                Some("assigned"),
                Some(match strategy {
                    Strategy::Range => "range",
                    Strategy::RoundRobin => "round_robin",
                }),
                None,
            ),
            Some(GroupKind::Classic(protocol_type)) => (Some("classic"), None, Some(protocol_type)),
            None => (None, None, None),
        };
        let partitions: Vec<CommittedView> = group
            .partitions
            .into_iter()
            .map(|p| CommittedView {
                topic: p.topic,
                partition: p.partition,
                committed_offset: p.committed.offset,
                metadata: p.committed.metadata,
                high_watermark: p.log_end_offset,
                lag: p.lag,
            })
            .collect();
        GroupView {
            state: group.state.name(),
            kind,
            strategy,
            protocol_type,
            protocol: group.protocol,
            generation: group.generation,
            lag: partitions.iter().map(|p| p.lag).sum(),
            member_count: group.members.len(),
            members: group
                .members
                .into_iter()
                .map(|m| MemberView {
                    member_id: m.member_id,
                    client_id: m.client_id,
                    partitions: m
                        .partitions
                        .into_iter()
                        .map(|(topic, partition)| MemberPartition { topic, partition })
                        .collect(),
                })
                .collect(),
            partitions,
            group: group.group,
        }
    }
}
