//! The group coordinator: consumer group membership, generations and
//! partition assignment. Soft state, in memory: after a restart, members
//! join again; their committed offsets live in `offsets`.
//!
//! A rebalance (a new generation) starts when a member joins, leaves, or
//! misses its session timeout, or a subscribed topic appears or goes. The
//! coordinator then waits until every member has joined again (they learn
//! of it from their heartbeats) or the rebalance timeout passes, drops those
//! that did not, assigns the subscribed partitions among the rest, and
//! answers every waiting join with that member's share.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use carteiro::proto;
use carteiro_storage::Store;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::assignment::{Strategy, assign};
use crate::error::BrokerError;

/// Shortest session or rebalance timeout a member may ask for, in ms.
pub const GROUP_TIMEOUT_MS_MIN: u32 = 1_000;
/// Longest session or rebalance timeout a member may ask for, in ms.
pub const GROUP_TIMEOUT_MS_MAX: u32 = 300_000;
/// Most members in one group.
pub const GROUP_MEMBERS_MAX: usize = 1_000;
/// How often sessions are checked for expiry, in ms.
pub const SESSION_CHECK_INTERVAL_MS: u64 = 100;

/// A group's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// A new generation is forming.
    Rebalancing,
    /// Every member has its assignment.
    Stable,
}

impl GroupState {
    /// The name DescribeGroup shows.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "EMPTY",
            GroupState::Rebalancing => "REBALANCING",
            GroupState::Stable => "STABLE",
        }
    }
}

#[derive(Debug)]
struct Member {
    client_id: String,
    topics: Vec<String>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    last_seen: Instant,
    /// Joined the generation now forming.
    joined: bool,
    /// The generation `assignment` belongs to, once assigned.
    assigned_generation: Option<u32>,
    assignment: Vec<(String, u32)>,
}

#[derive(Debug)]
struct Group {
    generation: u32,
    state: GroupState,
    strategy: Strategy,
    members: BTreeMap<String, Member>,
    deadline: Option<Instant>,
    generations: watch::Sender<u32>,
}

impl Group {
    fn new(strategy: Strategy) -> Self {
        Group {
            generation: 0,
            state: GroupState::Empty,
            strategy,
            members: BTreeMap::new(),
            deadline: None,
            generations: watch::channel(0).0,
        }
    }

    /// Starts forming a new generation: every member but `joiner` (which
    /// is joining now) must join again.
    fn start_rebalance(&mut self, now: Instant, joiner: Option<&str>) {
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.deadline = None;
            return;
        }
        if self.state != GroupState::Rebalancing {
            for (id, member) in self.members.iter_mut() {
                member.joined = joiner == Some(id.as_str());
            }
        }
        self.state = GroupState::Rebalancing;
        let wait = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.deadline = Some(now + wait);
    }

    fn all_joined(&self) -> bool {
        self.members.values().all(|m| m.joined)
    }
}

/// Where a join landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The member's id.
    pub member_id: String,
    /// The new generation.
    pub generation: u32,
    /// The member's partitions.
    pub assignment: Vec<(String, u32)>,
    /// Members in the generation.
    pub member_count: u32,
}

/// A snapshot of one group for DescribeGroup.
#[derive(Debug, Clone)]
pub struct GroupSnapshot {
    /// Its state.
    pub state: GroupState,
    /// Its generation.
    pub generation: u32,
    /// The members, by member id.
    pub members: Vec<MemberSnapshot>,
}

/// One member for DescribeGroup.
#[derive(Debug, Clone)]
pub struct MemberSnapshot {
    /// Its id.
    pub member_id: String,
    /// The client's own name for itself.
    pub client_id: String,
    /// Its partitions.
    pub partitions: Vec<(String, u32)>,
}

/// The coordinator of every group.
pub struct Coordinator {
    store: Arc<Store>,
    groups: Mutex<HashMap<String, Group>>,
    next_member: AtomicU64,
}

fn timeout(field: &'static str, ms: u32) -> Result<Duration, BrokerError> {
    if !(GROUP_TIMEOUT_MS_MIN..=GROUP_TIMEOUT_MS_MAX).contains(&ms) {
        let message = format!(
            "{ms} is outside the allowed range {GROUP_TIMEOUT_MS_MIN}..={GROUP_TIMEOUT_MS_MAX}"
        );
        return Err(BrokerError::invalid(field, message));
    }
    Ok(Duration::from_millis(u64::from(ms)))
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
        }
    }

    fn groups(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins `request.group` and waits for the generation that includes the member.
    pub async fn join(&self, request: proto::JoinGroupRequest) -> Result<Joined, BrokerError> {
        let session_timeout = timeout("session_timeout_ms", request.session_timeout_ms)?;
        let rebalance_timeout = timeout("rebalance_timeout_ms", request.rebalance_timeout_ms)?;
        if request.topics.is_empty() {
            return Err(BrokerError::invalid(
                "topics",
                "empty: subscribe to at least one topic",
            ));
        }
        let strategy = match request.strategy() {
            proto::AssignmentStrategy::Range => Strategy::Range,
            proto::AssignmentStrategy::RoundRobin => Strategy::RoundRobin,
        };
        let now = Instant::now();
        let (member_id, mut generations) = {
            let mut groups = self.groups();
            let group = groups
                .entry(request.group.clone())
                .or_insert_with(|| Group::new(strategy));
            if group.members.is_empty() {
                group.strategy = strategy;
            }
            let member_id = if request.member_id.is_empty() {
                format!(
                    "{}-{:x}",
                    request.client_id.chars().take(64).collect::<String>(),
                    self.next_member.fetch_add(1, Ordering::Relaxed)
                )
            } else {
                request.member_id.clone()
            };
            if !group.members.contains_key(&member_id) && group.members.len() >= GROUP_MEMBERS_MAX {
                return Err(BrokerError::ResourceExhausted {
                    what: "members in one group",
                    limit: GROUP_MEMBERS_MAX as u64,
                });
            }
            let mut topics = request.topics.clone();
            topics.sort();
            topics.dedup();
            group.members.insert(
                member_id.clone(),
                Member {
                    client_id: request.client_id.clone(),
                    topics,
                    session_timeout,
                    rebalance_timeout,
                    last_seen: now,
                    joined: true,
                    assigned_generation: None,
                    assignment: Vec::new(),
                },
            );
            group.start_rebalance(now, Some(&member_id));
            if group.all_joined() {
                self.complete(group);
            }
            (member_id, group.generations.subscribe())
        };
        loop {
            let deadline = {
                let mut groups = self.groups();
                let Some(group) = groups.get_mut(&request.group) else {
                    return Err(BrokerError::Fenced {
                        message: format!("group {:?} was removed while joining", request.group),
                    });
                };
                let Some(member) = group.members.get(&member_id) else {
                    return Err(BrokerError::Fenced {
                        message: format!(
                            "member {member_id} was removed from group {:?} while joining",
                            request.group
                        ),
                    });
                };
                if let Some(generation) = member.assigned_generation {
                    return Ok(Joined {
                        member_id,
                        generation,
                        assignment: member.assignment.clone(),
                        member_count: group.members.len() as u32,
                    });
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
                _ = generations.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Ends the forming generation: members that did not join again are
    /// dropped, the rest get their partitions.
    fn complete(&self, group: &mut Group) {
        group.members.retain(|_, m| m.joined);
        group.generation += 1;
        group.deadline = None;
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            let _ = group.generations.send(group.generation);
            return;
        }
        let assignment = self.assign(group);
        for (id, member) in group.members.iter_mut() {
            member.assignment = assignment.get(id).cloned().unwrap_or_default();
            member.assigned_generation = Some(group.generation);
            member.last_seen = Instant::now();
        }
        group.state = GroupState::Stable;
        tracing::info!(
            generation = group.generation,
            members = group.members.len(),
            "group rebalanced"
        );
        let _ = group.generations.send(group.generation);
    }

    /// Splits the members' subscribed partitions among them.
    fn assign(&self, group: &Group) -> BTreeMap<String, Vec<(String, u32)>> {
        let subscriptions: BTreeMap<String, Vec<String>> = group
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.topics.clone()))
            .collect();
        let mut topics: BTreeMap<String, u32> = BTreeMap::new();
        for topic in subscriptions.values().flatten() {
            if let Ok(t) = self.store.topic(topic) {
                topics.insert(topic.clone(), t.config().partitions);
            }
        }
        assign(group.strategy, &subscriptions, &topics)
    }

    /// A member's heartbeat.
    pub fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
    ) -> proto::HeartbeatStatus {
        let mut groups = self.groups();
        let Some(g) = groups.get_mut(group) else {
            return proto::HeartbeatStatus::UnknownMember;
        };
        let Some(member) = g.members.get_mut(member_id) else {
            return proto::HeartbeatStatus::UnknownMember;
        };
        member.last_seen = Instant::now();
        if g.state == GroupState::Rebalancing {
            return proto::HeartbeatStatus::Rebalance;
        }
        if generation != g.generation {
            return proto::HeartbeatStatus::StaleGeneration;
        }
        proto::HeartbeatStatus::Ok
    }

    /// A member leaves; the others rebalance.
    pub fn leave(&self, group: &str, member_id: &str) -> Result<(), BrokerError> {
        let mut groups = self.groups();
        let Some(g) = groups.get_mut(group) else {
            return Err(BrokerError::Fenced {
                message: format!("group {group:?} has no members"),
            });
        };
        if g.members.remove(member_id).is_none() {
            return Err(BrokerError::Fenced {
                message: format!("member {member_id} is not in group {group:?}"),
            });
        }
        if g.members.is_empty() {
            // An empty group holds nothing worth keeping: its commits live
            // in the offsets, and a join starts it afresh.
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
    }

    /// A topic appeared or went: groups subscribed to it rebalance.
    pub fn topic_changed(&self, topic: &str) {
        let now = Instant::now();
        for group in self.groups().values_mut() {
            if group
                .members
                .values()
                .any(|m| m.topics.iter().any(|t| t == topic))
            {
                group.start_rebalance(now, None);
            }
        }
    }

    /// Checks that a commit may advance these partitions. See `CommitOffsetsRequest`.
    pub fn check_commit(
        &self,
        group: &str,
        member_id: &str,
        generation: u32,
        partitions: &[(String, u32)],
    ) -> Result<(), BrokerError> {
        let groups = self.groups();
        let g = groups.get(group);
        if member_id.is_empty() {
            return match g {
                Some(g) if !g.members.is_empty() => Err(BrokerError::Fenced {
                    message: format!(
                        "group {group:?} has {} active members: commit as a member (member_id and generation), or wait until it is empty",
                        g.members.len()
                    ),
                }),
                _ => Ok(()),
            };
        }
        let Some(member) = g.and_then(|g| g.members.get(member_id)) else {
            return Err(BrokerError::Fenced {
                message: format!(
                    "member {member_id:?} is not in group {group:?} (it left or its session expired): join again"
                ),
            });
        };
        let current = g.map_or(0, |g| g.generation);
        if generation != current {
            return Err(BrokerError::Fenced {
                message: format!(
                    "generation {generation} is stale: group {group:?} is at generation {current}"
                ),
            });
        }
        if let Some((topic, partition)) =
            partitions.iter().find(|tp| !member.assignment.contains(tp))
        {
            return Err(BrokerError::Fenced {
                message: format!(
                    "partition {partition} of {topic:?} is not assigned to member {member_id:?} in generation {current}"
                ),
            });
        }
        Ok(())
    }

    /// One group's state, generation and members.
    pub fn describe(&self, group: &str) -> Option<GroupSnapshot> {
        let groups = self.groups();
        let g = groups.get(group)?;
        Some(GroupSnapshot {
            state: g.state,
            generation: g.generation,
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberSnapshot {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    partitions: m.assignment.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_group_is_forgotten_when_its_last_member_leaves_or_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = carteiro_storage::StoreOptions {
            maintenance_interval_ms: None,
            ..Default::default()
        };
        let store = Store::open(dir.path(), options).expect("store");
        let config = carteiro_storage::TopicConfig {
            partitions: 2,
            log: carteiro_storage::LogConfig {
                segment_bytes: 1 << 20,
                max_batch_bytes: 64 * 1024,
                ..Default::default()
            },
        };
        store.create_topic("orders", config).expect("topic");
        let coordinator = Coordinator::new(store);
        let join = |group: &str| proto::JoinGroupRequest {
            group: group.into(),
            topics: vec!["orders".into()],
            session_timeout_ms: GROUP_TIMEOUT_MS_MIN,
            rebalance_timeout_ms: GROUP_TIMEOUT_MS_MIN,
            ..Default::default()
        };
        for cycle in 0..100 {
            let group = format!("g{cycle}");
            let joined = coordinator.join(join(&group)).await.expect("join");
            assert_eq!(coordinator.group_count(), 1);
            coordinator.leave(&group, &joined.member_id).expect("leave");
            assert_eq!(coordinator.group_count(), 0, "cycle {cycle}");
        }
        // A member that stops heartbeating expires, and its group goes with it.
        coordinator.join(join("quiet")).await.expect("join");
        tokio::time::pause();
        tokio::time::advance(Duration::from_millis(u64::from(GROUP_TIMEOUT_MS_MIN) + 1)).await;
        coordinator.expire();
        assert_eq!(coordinator.group_count(), 0);
        assert!(coordinator.group_names().is_empty());
    }
}
