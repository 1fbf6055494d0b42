//! What group members send the coordinator and what it answers: joins,
//! syncs, heartbeats, fences, and descriptions of a group.

use bytes::Bytes;

use super::{GroupKind, GroupState, Subscription};

/// A join.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The group.
    pub group: String,
    /// The id the coordinator gave on an earlier join; `None` on the first.
    pub member_id: Option<String>,
    /// The client's own name for itself.
    pub client_id: String,
    /// The member is removed if no heartbeat arrives for this long, in ms.
    pub session_timeout_ms: u32,
    /// How long a rebalance waits for every member to join again, in ms.
    pub rebalance_timeout_ms: u32,
    /// What it subscribes with (and so which kind of group it joins).
    pub subscription: Subscription,
}

/// What a join answers, once the generation that includes the member formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The member's id.
    pub member_id: String,
    /// The new generation.
    pub generation: u32,
    /// The leader member's id.
    pub leader: String,
    /// Members in the generation.
    pub member_count: u32,
    /// The kind-specific part.
    pub outcome: JoinOutcome,
}

/// The kind-specific part of a join's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// An assigned group: this member's partitions.
    Assigned(Vec<(String, u32)>),
    /// A classic group: the chosen protocol and, for the leader only, every
    /// member's metadata for it (the others get an empty list).
    Classic {
        /// The protocol every member supports that the leader prefers.
        protocol: String,
        /// `(member id, metadata)` for the leader; empty for the others.
        members: Vec<(String, Bytes)>,
    },
}

/// A classic member's sync: the leader's carries every member's assignment.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// The group.
    pub group: String,
    /// The member.
    pub member_id: String,
    /// The generation it joined.
    pub generation: u32,
    /// From the leader: `(member id, opaque assignment)`; ignored from others.
    pub assignments: Vec<(String, Bytes)>,
}

/// What a heartbeat tells the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatStatus {
    /// Carry on.
    Ok,
    /// A rebalance is under way: join again.
    Rebalance,
    /// The member is not in the group (it left or expired): join afresh.
    UnknownMember,
    /// The member's generation is not the group's: join again.
    StaleGeneration,
}

/// Why a member was fenced, for edges that tell the cases apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceReason {
    /// The member is not in the group.
    UnknownMember,
    /// The member's generation is not the group's.
    StaleGeneration,
    /// The member does not own a partition it commits.
    NotOwner,
    /// A commit without a member id to a group that has members.
    GroupHasMembers,
}

/// A snapshot of one group for describing it.
#[derive(Debug, Clone)]
pub struct GroupSnapshot {
    /// Its state.
    pub state: GroupState,
    /// Its kind.
    pub kind: GroupKind,
    /// Its generation.
    pub generation: u32,
    /// Its leader member, if it has members.
    pub leader: Option<String>,
    /// A classic group's current protocol.
    pub protocol: Option<String>,
    /// The members, by member id.
    pub members: Vec<MemberSnapshot>,
}

/// One member, described.
#[derive(Debug, Clone)]
pub struct MemberSnapshot {
    /// Its id.
    pub member_id: String,
    /// The client's own name for itself.
    pub client_id: String,
    /// Its partitions, in an assigned group.
    pub partitions: Vec<(String, u32)>,
    /// Its metadata for the group's protocol, in a classic group.
    pub metadata: Bytes,
    /// Its assignment from the leader, in a classic group.
    pub assignment: Bytes,
}
