//! Consumer groups as clients see them: joining and syncing (the
//! coordinator), committing and reading committed offsets (checked against
//! the group's current generation), listing groups, and describing one with
//! its lag per partition.

use std::sync::Arc;

use bytes::Bytes;

use crate::broker::Broker;
use crate::committed::{COMMIT_METADATA_MAX_BYTES, Committed, validate_group};
use crate::coordinator::{
    GroupKind, GroupState, HeartbeatStatus, JoinRequest, Joined, MemberSnapshot, SyncRequest,
};
use crate::error::{BrokerError, join_error};
use crate::fetch::{check_entries, offset_field};

/// One offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The next offset the group will consume.
    pub offset: i64,
    /// The caller's text, at most [`COMMIT_METADATA_MAX_BYTES`].
    pub metadata: String,
}

/// One partition a group has committed, with its lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The commit.
    pub committed: Committed,
    /// The partition's high watermark (0 if the partition is gone).
    pub log_end_offset: u64,
    /// Records between the commit and the high watermark.
    pub lag: u64,
}

/// A group as it is now: its membership (if any) and its commits.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// The group.
    pub group: String,
    /// Its state (`Empty` when it has no members).
    pub state: GroupState,
    /// Its kind, if it has members.
    pub kind: Option<GroupKind>,
    /// Its generation (0 when it has no members).
    pub generation: u32,
    /// A classic group's current protocol.
    pub protocol: Option<String>,
    /// Its members.
    pub members: Vec<MemberSnapshot>,
    /// Its commits.
    pub partitions: Vec<GroupPartition>,
}

impl Broker {
    /// Joins a group and waits for the generation that includes the member
    /// (or the broker's shutdown).
    pub async fn join_group(&self, request: JoinRequest) -> Result<Joined, BrokerError> {
        self.check_running()?;
        if let crate::coordinator::Subscription::Assigned { topics, .. } = &request.subscription {
            for topic in topics {
                self.check_user_topic("topics", topic)?;
            }
        }
        let mut shutdown = self.shutdown_signal();
        tokio::select! {
            joined = self.coordinator.join(request) => joined,
            _ = shutdown.changed() => Err(BrokerError::ShuttingDown),
        }
    }

    /// A classic member's sync (see [`crate::coordinator`]).
    pub async fn sync_group(&self, request: SyncRequest) -> Result<Bytes, BrokerError> {
        self.check_running()?;
        let mut shutdown = self.shutdown_signal();
        tokio::select! {
            synced = self.coordinator.sync(request) => synced,
            _ = shutdown.changed() => Err(BrokerError::ShuttingDown),
        }
    }

    /// A member's heartbeat.
    pub fn heartbeat(&self, group: &str, member_id: &str, generation: u32) -> HeartbeatStatus {
        self.coordinator.heartbeat(group, member_id, generation)
    }

    /// A member leaves its group.
    pub fn leave_group(&self, group: &str, member_id: &str) -> Result<(), BrokerError> {
        self.coordinator.leave(group, member_id)
    }

    /// Commits offsets durably (all or none), as a member of `generation`
    /// (or with an empty `member_id`, to a group with no members).
    pub async fn commit_offsets(
        self: &Arc<Self>,
        group: &str,
        member_id: &str,
        generation: u32,
        commits: Vec<OffsetCommit>,
    ) -> Result<(), BrokerError> {
        self.check_running()?;
        validate_group(group)?;
        check_entries("commits", commits.len(), false)?;
        let mut checked = Vec::with_capacity(commits.len());
        for commit in commits {
            self.check_user_topic("commits.topic", &commit.topic)?;
            self.store.partition(&commit.topic, commit.partition)?;
            offset_field("commits.offset", commit.offset)?;
            if commit.metadata.len() > COMMIT_METADATA_MAX_BYTES {
                let message = format!(
                    "{} bytes exceed the limit of {COMMIT_METADATA_MAX_BYTES}",
                    commit.metadata.len()
                );
                return Err(BrokerError::invalid("commits.metadata", message));
            }
            checked.push((
                commit.topic,
                commit.partition,
                Committed {
                    offset: commit.offset,
                    metadata: commit.metadata,
                },
            ));
        }
        let partitions = checked.iter().map(|(t, p, _)| (t.as_str(), *p));
        self.coordinator
            .check_commit(group, member_id, generation, partitions)?;
        let (broker, group, now) = (self.clone(), group.to_string(), self.now_ms());
        tokio::task::spawn_blocking(move || broker.offsets.commit(&group, checked, now))
            .await
            .map_err(join_error)?
    }

    /// One committed offset, if the group has one for the partition.
    pub fn committed_offset(&self, group: &str, topic: &str, partition: u32) -> Option<Committed> {
        self.offsets.get(group, topic, partition)
    }

    /// Every offset a group has committed: topic, partition, commit.
    pub fn committed_offsets(&self, group: &str) -> Vec<(String, u32, Committed)> {
        self.offsets.group(group)
    }

    /// Every group with members or commits, by name.
    pub fn list_groups(&self) -> Vec<String> {
        let mut groups = self.offsets.groups();
        groups.extend(self.coordinator.group_names());
        groups.sort();
        groups.dedup();
        groups
    }

    /// A group's membership and commits with their lag.
    pub fn describe_group(&self, group: &str) -> Result<GroupDescription, BrokerError> {
        validate_group(group)?;
        let partitions: Vec<GroupPartition> = self
            .offsets
            .group(group)
            .into_iter()
            .map(|(topic, partition, committed)| {
                let end = self
                    .store
                    .partition(&topic, partition)
                    .map_or(0, |log| log.high_watermark());
                let lag = end.saturating_sub(u64::try_from(committed.offset).unwrap_or(0));
                GroupPartition {
                    topic,
                    partition,
                    committed,
                    log_end_offset: end,
                    lag,
                }
            })
            .collect();
        let membership = self.coordinator.describe(group);
        if partitions.is_empty() && membership.as_ref().is_none_or(|m| m.members.is_empty()) {
            return Err(BrokerError::UnknownGroup {
                group: group.to_string(),
            });
        }
        Ok(match membership {
            Some(m) => GroupDescription {
                group: group.to_string(),
                state: m.state,
                kind: Some(m.kind),
                generation: m.generation,
                protocol: m.protocol,
                members: m.members,
                partitions,
            },
            None => GroupDescription {
                group: group.to_string(),
                state: GroupState::Empty,
                kind: None,
                generation: 0,
                protocol: None,
                members: Vec::new(),
                partitions,
            },
        })
    }
}
