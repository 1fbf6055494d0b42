//! The group coordinator: consumer group membership and generations, for
//! two kinds of group that share one state machine. Soft state, in memory:
//! after a restart, members join again; committed offsets live elsewhere.
//!
//! - **Assigned** (Carteiro's groups): members name topics; when a
//!   generation forms, the coordinator splits the partitions (range or
//!   round robin) and answers every member's join with its share.
//! - **Classic** (Kafka's classic protocol): members send a protocol type
//!   and the assignment protocols they support, with opaque metadata. When
//!   a generation forms, the coordinator picks the first of the leader's
//!   protocols that every member supports, answers the leader's join with
//!   every member's metadata, and waits for the leader's sync with every
//!   member's opaque assignment, which answers each member's sync.
//!
//! A rebalance (a new generation) starts when a member joins, leaves, or
//! misses its session timeout, or (assigned groups) a subscribed topic
//! appears or goes. The coordinator then waits until every member has joined
//! again (they learn of it from their heartbeats) or the rebalance timeout
//! passes, and drops those that did not. A group whose last member leaves
//! is forgotten.

mod checks;
mod group;
mod messages;
mod pending;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use carteiro_storage::Store;
use carteiro_storage::error::quoted;
use tokio::time::Instant;

use checks::{check_join, check_len, timeout};
use group::{Group, Member};
pub use group::{GroupKind, GroupState, Subscription};
pub use messages::{
    FenceReason, GroupSnapshot, HeartbeatStatus, JoinOutcome, JoinRequest, Joined, MemberSnapshot,
    SyncRequest,
};
pub use pending::PENDING_MEMBERS_MAX;
use pending::PendingMembers;

use crate::error::BrokerError;

/// Shortest session or rebalance timeout a member may ask for, in ms.
pub const GROUP_TIMEOUT_MS_MIN: u32 = 1_000;
/// Longest session or rebalance timeout a member may ask for, in ms.
pub const GROUP_TIMEOUT_MS_MAX: u32 = 300_000;
/// Most members in one group.
pub const GROUP_MEMBERS_MAX: usize = 1_000;
/// How often sessions are checked for expiry, in ms.
pub const SESSION_CHECK_INTERVAL_MS: u64 = 100;
/// Longest member id or client id, in bytes.
pub const MEMBER_ID_MAX_BYTES: usize = 255;
/// Most topics one member may subscribe to, or protocols it may offer.
pub const SUBSCRIBED_TOPICS_MAX: usize = 1000;
/// Largest opaque metadata or assignment of a classic member, in bytes
/// (its protocols' metadata together).
pub const CLASSIC_BYTES_MAX: usize = 1024 * 1024;
/// Longest protocol type or protocol name of a classic member, in bytes.
pub const PROTOCOL_NAME_MAX_BYTES: usize = 255;
/// Most groups the coordinator holds at once (empty ones expire).
pub const GROUPS_MAX: usize = 100_000;

/// The coordinator of every group.
pub struct Coordinator {
    store: Arc<Store>,
    groups: Mutex<HashMap<String, Group>>,
    next_member: AtomicU64,
    /// Member ids given out by [`Coordinator::reserve_member_id`].
    pending: PendingMembers,
}

pub(crate) fn fenced(reason: FenceReason, message: String) -> BrokerError {
    BrokerError::Fenced { reason, message }
}

/// A member's partitions: assigned by the broker, or, in a Kafka consumer
/// group, read from the assignment its leader sent (none if unreadable:
/// the bytes are the clients' business).
fn member_partitions(kind: &GroupKind, member: &Member) -> Vec<(String, u32)> {
    match (kind, &member.assignment) {
        (GroupKind::Classic(protocol_type), Some(assignment)) if protocol_type == "consumer" => {
            carteiro::consumer_protocol::assigned_partitions(assignment).unwrap_or_default()
        }
        _ => member.partitions.clone(),
    }
}

impl Coordinator {
    /// A coordinator with no groups, reading partition counts from `store`.
    pub fn new(store: Arc<Store>) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Coordinator {
            store,
            groups: Mutex::new(HashMap::new()),
            next_member: AtomicU64::new(seed),
            pending: PendingMembers::default(),
        }
    }

    fn groups(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh member id for `client_id`.
    /// The id is Kafka's `client_id-UUID` form: 128 bits no client can
    /// guess, so a member cannot be taken over by naming it.
    pub fn new_member_id(&self, client_id: &str) -> String {
        let counter = self.next_member.fetch_add(1, Ordering::Relaxed);
        let (high, low) = (unguessable(counter), unguessable(!counter));
        format!(
            "{}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            client_id.chars().take(64).collect::<String>(),
            high >> 32,
            (high >> 16) & 0xffff,
            high & 0xffff,
            low >> 48,
            low & 0xffff_ffff_ffff
        )
    }

    /// Gives out a member id for a first join that must come back with it
    /// (Kafka's MEMBER_ID_REQUIRED, KIP-394): a join with it within
    /// `session_timeout_ms` is let in as a new member.
    pub fn reserve_member_id(
        &self,
        group: &str,
        client_id: &str,
        session_timeout_ms: u32,
    ) -> Result<String, BrokerError> {
        crate::committed::validate_group(group)?;
        let lasts = timeout("session_timeout_ms", session_timeout_ms)?;
        let id = self.new_member_id(client_id);
        self.pending
            .insert(id.clone(), group, Instant::now() + lasts)?;
        Ok(id)
    }

    fn complete(&self, group: &mut Group) {
        let store = &self.store;
        group.complete(|topic| store.topic(topic).ok().map(|t| t.config().partitions));
    }

    /// Joins `request.group` and waits for the generation that includes the member.
    pub async fn join(&self, request: JoinRequest) -> Result<Joined, BrokerError> {
        check_join(&request)?;
        let session_timeout = timeout("session_timeout_ms", request.session_timeout_ms)?;
        let rebalance_timeout = timeout("rebalance_timeout_ms", request.rebalance_timeout_ms)?;
        let now = Instant::now();
        let (member_id, mut changes) = {
            let mut groups = self.groups();
            let kind = request.subscription.kind();
            if !groups.contains_key(&request.group) && groups.len() >= GROUPS_MAX {
                return Err(BrokerError::ResourceExhausted {
                    what: "consumer groups",
                    limit: GROUPS_MAX as u64,
                });
            }
            let group = groups
                .entry(request.group.clone())
                .or_insert_with(|| Group::new(kind.clone()));
            if group.members.is_empty() {
                group.kind = kind;
            } else if group.kind != kind {
                return Err(BrokerError::InconsistentGroupProtocol {
                    message: format!(
                        "group {:?} is {:?}; a member cannot join it as {kind:?}",
                        request.group, group.kind
                    ),
                });
            }
            if let Subscription::Classic { .. } = request.subscription
                && !group.members.is_empty()
                && group.common_protocols(&request.subscription).is_empty()
            {
                return Err(BrokerError::InconsistentGroupProtocol {
                    message: format!(
                        "the member supports none of the protocols every member of group {:?} supports",
                        request.group
                    ),
                });
            }
            let member_id = match request.member_id.clone() {
                // Only the coordinator names members: a join with an id the
                // group does not hold (made up, or from before a restart or
                // an expiry) must join afresh.
                Some(id)
                    if !id.is_empty()
                        && !group.members.contains_key(&id)
                        && !self.pending.take(&request.group, &id) =>
                {
                    return Err(fenced(
                        FenceReason::UnknownMember,
                        format!(
                            "member {} is not in group {:?}: join with an empty member id",
                            quoted(&id),
                            request.group
                        ),
                    ));
                }
                Some(id) if !id.is_empty() => id,
                _ => self.new_member_id(&request.client_id),
            };
            if !group.members.contains_key(&member_id) && group.members.len() >= GROUP_MEMBERS_MAX {
                return Err(BrokerError::ResourceExhausted {
                    what: "members in one group",
                    limit: GROUP_MEMBERS_MAX as u64,
                });
            }
            let mut subscription = request.subscription.clone();
            if let Subscription::Assigned { topics, .. } = &mut subscription {
                topics.sort();
                topics.dedup();
            }
            group.members.insert(
                member_id.clone(),
                Member {
                    client_id: request.client_id.clone(),
                    subscription,
                    session_timeout,
                    rebalance_timeout,
                    last_seen: now,
                    joined: true,
                    generation: None,
                    partitions: Vec::new(),
                    assignment: None,
                },
            );
            group.start_rebalance(now, Some(&member_id));
            if group.all_joined() {
                self.complete(group);
            }
            (member_id, group.changes.subscribe())
        };
        loop {
            let deadline = {
                let mut groups = self.groups();
                let group = group_with_member(&mut groups, &request.group, &member_id)?;
                if let Some(generation) = group.members[&member_id].generation {
                    return Ok(joined(group, &member_id, generation));
                }
                match group.deadline {
                    Some(deadline) if deadline <= Instant::now() => {
                        self.complete(group);
                        continue;
                    }
                    deadline => deadline,
                }
            };
            let wake = deadline.unwrap_or_else(|| {
                Instant::now() + Duration::from_millis(SESSION_CHECK_INTERVAL_MS)
            });
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// A classic member's sync: the leader's stores every member's
    /// assignment; each member then gets its own (empty if the leader gave
    /// it none). Waits for the leader's sync.
    pub async fn sync(&self, request: SyncRequest) -> Result<Bytes, BrokerError> {
        let mut changes = {
            let mut groups = self.groups();
            let group = group_with_member(&mut groups, &request.group, &request.member_id)?;
            if !matches!(group.kind, GroupKind::Classic(_)) {
                return Err(BrokerError::InconsistentGroupProtocol {
                    message: format!(
                        "group {:?} is assigned by the broker: it has no sync step",
                        request.group
                    ),
                });
            }
            if let Some(member) = group.members.get_mut(&request.member_id) {
                member.last_seen = Instant::now();
            }
            check_generation(group, &request.group, request.generation)?;
            let leads = group.leader.as_deref() == Some(request.member_id.as_str());
            if leads && group.state == GroupState::AwaitingSync {
                for (id, assignment) in &request.assignments {
                    check_len("assignments", assignment.len(), CLASSIC_BYTES_MAX, "bytes")?;
                    if let Some(m) = group.members.get_mut(id) {
                        m.assignment = Some(assignment.clone());
                    }
                }
                group.state = GroupState::Stable;
                group.notify();
            }
            group.changes.subscribe()
        };
        loop {
            {
                let mut groups = self.groups();
                let group = group_with_member(&mut groups, &request.group, &request.member_id)?;
                let assignment = group.members[&request.member_id].assignment.clone();
                check_generation(group, &request.group, request.generation)?;
                if group.state == GroupState::Stable {
                    return Ok(assignment.unwrap_or_default());
                }
            }
            // The leader's session bounds the wait: if it dies, it expires
            // and the group rebalances, which ends this sync.
            let wake = Instant::now() + Duration::from_millis(SESSION_CHECK_INTERVAL_MS);
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// A member's heartbeat.
    pub fn heartbeat(&self, group: &str, member_id: &str, generation: u32) -> HeartbeatStatus {
        let mut groups = self.groups();
        let Some(g) = groups.get_mut(group) else {
            return HeartbeatStatus::UnknownMember;
        };
        let Some(member) = g.members.get_mut(member_id) else {
            return HeartbeatStatus::UnknownMember;
        };
        member.last_seen = Instant::now();
        if g.state == GroupState::Rebalancing {
            return HeartbeatStatus::Rebalance;
        }
        if generation != g.generation {
            return HeartbeatStatus::StaleGeneration;
        }
        HeartbeatStatus::Ok
    }

    /// A member leaves; the others rebalance.
    pub fn leave(&self, group: &str, member_id: &str) -> Result<(), BrokerError> {
        let mut groups = self.groups();
        let Some(g) = groups.get_mut(group) else {
            return Err(fenced(
                FenceReason::UnknownMember,
                format!("group {} has no members", quoted(group)),
            ));
        };
        if g.members.remove(member_id).is_none() {
            return Err(fenced(
                FenceReason::UnknownMember,
                format!(
                    "member {} is not in group {}",
                    quoted(member_id),
                    quoted(group)
                ),
            ));
        }
        if g.members.is_empty() {
            // An empty group holds nothing worth keeping: its commits live
            // in the offsets, and a join starts it afresh.
            g.notify();
            groups.remove(group);
            return Ok(());
        }
        g.start_rebalance(Instant::now(), None);
        if g.state == GroupState::Rebalancing && g.all_joined() {
            self.complete(g);
        }
        Ok(())
    }

    /// Drops members whose sessions expired and ends rebalances whose time is up.
    pub fn expire(&self) {
        let now = Instant::now();
        let mut groups = self.groups();
        for (name, group) in groups.iter_mut() {
            // A member waiting in a join does not heartbeat; the rebalance timeout bounds it.
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, m)| {
                    !(group.state == GroupState::Rebalancing && m.joined)
                        && m.last_seen + m.session_timeout < now
                })
                .map(|(id, _)| id.clone())
                .collect();
            if !expired.is_empty() {
                tracing::info!(group = %name, ?expired, "members' sessions expired");
                for id in &expired {
                    group.members.remove(id);
                }
                group.start_rebalance(now, None);
            }
            if group.state == GroupState::Rebalancing
                && (group.all_joined() || group.deadline.is_some_and(|d| d <= now))
            {
                self.complete(group);
            }
        }
        // Groups whose last member expired are forgotten (see `leave`).
        groups.retain(|_, group| !group.members.is_empty());
        drop(groups);
        self.pending.expire(now);
    }

    /// A topic appeared or went: assigned groups subscribed to it rebalance.
    pub fn topic_changed(&self, topic: &str) {
        let now = Instant::now();
        for group in self.groups().values_mut() {
            if group
                .members
                .values()
                .any(|m| m.subscription.topics().iter().any(|t| t == topic))
            {
                group.start_rebalance(now, None);
            }
        }
    }

    /// Checks that a commit may advance these partitions: a member of the
    /// current generation (that owns them, in an assigned group), or no
    /// member at all for a group that has none.
    pub fn check_commit<'a>(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
        partitions: impl IntoIterator<Item = (&'a str, u32)>,
    ) -> Result<(), BrokerError> {
        let groups = self.groups();
        let g = groups.get(group);
        if member_id.is_empty() {
            return match g {
                Some(g) if !g.members.is_empty() => Err(fenced(
                    FenceReason::GroupHasMembers,
                    format!(
                        "group {group:?} has {} active members: commit as a member (member_id and generation), or wait until it is empty",
                        g.members.len()
                    ),
                )),
                _ => Ok(()),
            };
        }
        let Some((g, member)) = g.and_then(|g| Some((g, g.members.get(member_id)?))) else {
            return Err(fenced(
                FenceReason::UnknownMember,
                format!(
                    "member {member_id:?} is not in group {group:?} (it left or its session expired): join again"
                ),
            ));
        };
        // A member may commit while the group rebalances (before it joins
        // again it gives up its partitions, committing first), but not
        // between a classic generation forming and its assignments arriving.
        if g.state == GroupState::AwaitingSync {
            return Err(BrokerError::RebalanceInProgress {
                group: group.to_string(),
            });
        }
        check_current(g, group, generation)?;
        if let GroupKind::Assigned(_) = g.kind {
            // A set: a commit may name thousands of partitions, checked
            // under the coordinator's lock.
            let owned: std::collections::HashSet<(&str, u32)> = member
                .partitions
                .iter()
                .map(|(topic, partition)| (topic.as_str(), *partition))
                .collect();
            if let Some((topic, partition)) = partitions.into_iter().find(|tp| !owned.contains(tp))
            {
                return Err(fenced(
                    FenceReason::NotOwner,
                    format!(
                        "partition {partition} of {topic:?} is not assigned to member {member_id:?} in generation {}",
                        g.generation
                    ),
                ));
            }
        }
        Ok(())
    }

    /// One group as it is now.
    pub fn describe(&self, group: &str) -> Option<GroupSnapshot> {
        let groups = self.groups();
        let g = groups.get(group)?;
        Some(GroupSnapshot {
            state: g.state,
            kind: g.kind.clone(),
            generation: g.generation,
            leader: g.leader.clone(),
            protocol: g.protocol.clone(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberSnapshot {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    partitions: member_partitions(&g.kind, m),
                    metadata: metadata_for(m, g.protocol.as_deref()),
                    assignment: m.assignment.clone().unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// Groups held in memory (every one has members: an empty group is forgotten).
    pub fn group_count(&self) -> usize {
        self.groups().len()
    }

    /// Groups with members.
    pub fn group_names(&self) -> Vec<String> {
        self.groups()
            .iter()
            .filter(|(_, g)| !g.members.is_empty())
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// 64 bits no one can predict: SipHash under the process's random keys
/// (std seeds them from the operating system), of a counter.
fn unguessable(counter: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(counter);
    hasher.finish()
}

/// The group, if `member_id` is in it; else why not.
fn group_with_member<'a>(
    groups: &'a mut HashMap<String, Group>,
    group: &str,
    member_id: &str,
) -> Result<&'a mut Group, BrokerError> {
    match groups.get_mut(group) {
        Some(g) if g.members.contains_key(member_id) => Ok(g),
        Some(_) => Err(fenced(
            FenceReason::UnknownMember,
            format!("member {member_id} was removed from group {group:?} (it left or expired)"),
        )),
        None => Err(fenced(
            FenceReason::UnknownMember,
            format!("member {member_id} is not in group {group:?}: the group has no members"),
        )),
    }
}

/// Checks that `generation` is the group's current one and not being replaced.
fn check_generation(group: &Group, name: &str, generation: u32) -> Result<(), BrokerError> {
    if group.state == GroupState::Rebalancing {
        return Err(BrokerError::RebalanceInProgress {
            group: name.to_string(),
        });
    }
    check_current(group, name, generation)
}

/// Refuses a `generation` that is not the group's current one.
fn check_current(group: &Group, name: &str, generation: u32) -> Result<(), BrokerError> {
    if generation != group.generation {
        return Err(fenced(
            FenceReason::StaleGeneration,
            format!(
                "generation {generation} is stale: group {name:?} is at generation {}",
                group.generation
            ),
        ));
    }
    Ok(())
}

/// A member's metadata for `protocol`, in a classic group.
fn metadata_for(member: &Member, protocol: Option<&str>) -> Bytes {
    match (&member.subscription, protocol) {
        (Subscription::Classic { protocols, .. }, Some(protocol)) => protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default(),
        _ => Bytes::new(),
    }
}

/// The answer to `member_id`'s join into `group`'s formed `generation`.
fn joined(group: &Group, member_id: &str, generation: u32) -> Joined {
    let leader = group.leader.clone().unwrap_or_default();
    let outcome = match &group.kind {
        GroupKind::Assigned(_) => JoinOutcome::Assigned(
            group
                .members
                .get(member_id)
                .map(|m| m.partitions.clone())
                .unwrap_or_default(),
        ),
        GroupKind::Classic(_) => JoinOutcome::Classic {
            protocol: group.protocol.clone().unwrap_or_default(),
            members: if leader == member_id {
                group
                    .members
                    .iter()
                    .map(|(id, m)| (id.clone(), metadata_for(m, group.protocol.as_deref())))
                    .collect()
            } else {
                Vec::new()
            },
        },
    };
    Joined {
        member_id: member_id.to_string(),
        generation,
        leader,
        member_count: group.members.len() as u32,
        outcome,
    }
}

#[cfg(test)]
mod tests;
