//! One group's state: its members, the generation forming or formed, and
//! the two steps that change it (starting a rebalance, completing a
//! generation). No waiting and no clocks of its own: the coordinator
//! drives it.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::assignment::{Strategy, assign};

/// A group's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// A new generation is forming: members must join again.
    Rebalancing,
    /// A classic group's generation has formed; its leader has yet to send
    /// the assignments.
    AwaitingSync,
    /// Every member has its assignment.
    Stable,
}

impl GroupState {
    /// The name DescribeGroup shows.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "EMPTY",
            GroupState::Rebalancing => "REBALANCING",
            GroupState::AwaitingSync => "AWAITING_SYNC",
            GroupState::Stable => "STABLE",
        }
    }
}

/// Which of the two kinds of group, fixed while the group has members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupKind {
    /// Carteiro's: the broker assigns partitions by this strategy.
    Assigned(Strategy),
    /// Kafka's classic protocol of this type (e.g. `consumer`): the leader
    /// member assigns, the broker relays opaque bytes.
    Classic(String),
}

/// What a member subscribes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// To these topics, in a group the broker assigns by `strategy` (the
    /// group takes its first member's).
    Assigned {
        /// The topics.
        topics: Vec<String>,
        /// The assignment strategy.
        strategy: Strategy,
    },
    /// In a classic group: a protocol type and the assignment protocols
    /// the member supports, by preference, each with its opaque metadata.
    Classic {
        /// The protocol type; every member's must be the same.
        protocol_type: String,
        /// `(protocol name, metadata)`, most preferred first.
        protocols: Vec<(String, Bytes)>,
    },
}

impl Subscription {
    pub(crate) fn kind(&self) -> GroupKind {
        match self {
            Subscription::Assigned { strategy, .. } => GroupKind::Assigned(*strategy),
            Subscription::Classic { protocol_type, .. } => {
                GroupKind::Classic(protocol_type.clone())
            }
        }
    }

    fn supports(&self, protocol: &str) -> bool {
        match self {
            Subscription::Classic { protocols, .. } => protocols.iter().any(|(n, _)| n == protocol),
            Subscription::Assigned { .. } => false,
        }
    }

    pub(crate) fn topics(&self) -> &[String] {
        match self {
            Subscription::Assigned { topics, .. } => topics,
            Subscription::Classic { .. } => &[],
        }
    }
}

#[derive(Debug)]
pub(crate) struct Member {
    pub client_id: String,
    pub subscription: Subscription,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub last_seen: Instant,
    /// Joined the generation now forming.
    pub joined: bool,
    /// The generation the member is part of, once it formed.
    pub generation: Option<u32>,
    /// Its partitions, in an assigned group.
    pub partitions: Vec<(String, u32)>,
    /// Its opaque assignment from the leader, in a classic group.
    pub assignment: Option<Bytes>,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub kind: GroupKind,
    pub generation: u32,
    pub state: GroupState,
    pub members: BTreeMap<String, Member>,
    pub leader: Option<String>,
    /// The classic protocol the current generation uses.
    pub protocol: Option<String>,
    pub deadline: Option<Instant>,
    /// Bumped at every change members wait on (a generation formed, a
    /// sync done, a rebalance begun).
    pub changes: watch::Sender<u64>,
}

impl Group {
    pub fn new(kind: GroupKind) -> Self {
        Group {
            kind,
            generation: 0,
            state: GroupState::Empty,
            members: BTreeMap::new(),
            leader: None,
            protocol: None,
            deadline: None,
            changes: watch::channel(0).0,
        }
    }

    pub fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Starts forming a new generation: every member but `joiner` (which
    /// is joining now) must join again.
    pub fn start_rebalance(&mut self, now: Instant, joiner: Option<&str>) {
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.deadline = None;
            self.notify();
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
        self.notify();
    }

    pub fn all_joined(&self) -> bool {
        self.members.values().all(|m| m.joined)
    }

    /// The classic protocols every member supports, in `member`'s order.
    pub fn common_protocols(&self, member: &Subscription) -> Vec<String> {
        let Subscription::Classic { protocols, .. } = member else {
            return Vec::new();
        };
        protocols
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| self.members.values().all(|m| m.subscription.supports(name)))
            .collect()
    }

    /// Ends the forming generation: members that did not join again are
    /// dropped; in an assigned group the rest get their partitions (`topics`
    /// gives each subscribed topic's partition count), in a classic group a
    /// leader and a protocol are chosen and the group awaits the leader's sync.
    pub fn complete(&mut self, topics: impl Fn(&str) -> Option<u32>) {
        self.members.retain(|_, m| m.joined);
        self.generation += 1;
        self.deadline = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.leader = None;
            self.notify();
            return;
        }
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        let now = Instant::now();
        match &self.kind {
            GroupKind::Assigned(strategy) => {
                let subscriptions: BTreeMap<String, Vec<String>> = self
                    .members
                    .iter()
                    .map(|(id, m)| (id.clone(), m.subscription.topics().to_vec()))
                    .collect();
                let mut counts: BTreeMap<String, u32> = BTreeMap::new();
                for topic in subscriptions.values().flatten() {
                    if let Some(partitions) = topics(topic) {
                        counts.insert(topic.clone(), partitions);
                    }
                }
                let assignment = assign(*strategy, &subscriptions, &counts);
                for (id, member) in self.members.iter_mut() {
                    member.partitions = assignment.get(id).cloned().unwrap_or_default();
                }
                self.state = GroupState::Stable;
            }
            GroupKind::Classic(_) => {
                let leader = self.leader.as_ref().and_then(|l| self.members.get(l));
                self.protocol =
                    leader.and_then(|l| self.common_protocols(&l.subscription).into_iter().next());
                for member in self.members.values_mut() {
                    member.assignment = None;
                }
                self.state = GroupState::AwaitingSync;
            }
        }
        for member in self.members.values_mut() {
            member.generation = Some(self.generation);
            member.last_seen = now;
        }
        tracing::info!(
            generation = self.generation,
            members = self.members.len(),
            state = self.state.name(),
            "group generation formed"
        );
        self.notify();
    }
}
