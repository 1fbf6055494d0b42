//! Kafka's classic group protocol on the core's coordinator: this broker
//! coordinates every group. The leader member gets every member's
//! subscription bytes and assigns; the broker relays the opaque bytes.
//! A first JoinGroup (v4 and later) with no member id gets
//! MEMBER_ID_REQUIRED and an id to join with (KIP-394). Static membership
//! (`group.instance.id`) is refused with UNSUPPORTED_VERSION.

use std::sync::Arc;

use bytes::Bytes;
use carteiro_core::BrokerError;
use carteiro_core::coordinator::{
    GroupKind, GroupState, HeartbeatStatus, JoinOutcome, JoinRequest, Subscription, SyncRequest,
};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};

use super::text;
use crate::NODE_ID;
use crate::error::{Family, KafkaError, kafka_error};
use crate::listener::Edge;

/// Kafka's key type for a group coordinator (1 is a transaction's).
const KEY_TYPE_GROUP: i8 = 0;

fn group_error(e: &BrokerError) -> KafkaError {
    kafka_error(e, Family::Group)
}

/// A group's state as Kafka names it.
fn state_name(state: GroupState) -> &'static str {
    match state {
        GroupState::Empty => "Empty",
        GroupState::Rebalancing => "PreparingRebalance",
        GroupState::AwaitingSync => "CompletingRebalance",
        GroupState::Stable => "Stable",
    }
}

/// A generation on the wire: Kafka's are signed, the core's are not.
fn generation(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// Answers FindCoordinator: this broker, for every group.
pub(crate) fn find_coordinator(
    edge: &Arc<Edge>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let host = text(edge.options.advertised_host.clone());
    let port = i32::from(edge.options.advertised_port);
    let refused = (request.key_type != KEY_TYPE_GROUP).then(|| {
        KafkaError::new(
            ResponseError::CoordinatorNotAvailable,
            format!(
                "key_type is {}: this broker coordinates groups (0) only; transactions are not supported",
                request.key_type
            ),
        )
    });
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let answer = Coordinator::default().with_key(key);
                match &refused {
                    Some(e) => answer
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(e.code())
                        .with_error_message(Some(text(e.message.clone()))),
                    None => answer
                        .with_node_id(BrokerId(NODE_ID))
                        .with_host(host.clone())
                        .with_port(port),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match refused {
        Some(e) => FindCoordinatorResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(text(e.message)))
            .with_node_id(BrokerId(-1))
            .with_port(-1),
        None => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(NODE_ID))
            .with_host(host)
            .with_port(port),
    }
}

/// Answers JoinGroup once the generation that includes the member forms.
pub(crate) async fn join(
    edge: &Arc<Edge>,
    request: JoinGroupRequest,
    version: i16,
    client_id: String,
) -> JoinGroupResponse {
    let group = request.group_id.0.as_str().to_string();
    let failed = |e: KafkaError, member_id: &str| {
        JoinGroupResponse::default()
            .with_error_code(e.code())
            .with_generation_id(-1)
            .with_member_id(text(member_id))
    };
    if request.group_instance_id.is_some() {
        let e = KafkaError::new(
            ResponseError::UnsupportedVersion,
            "group.instance.id is set: static membership is not supported by this broker",
        );
        return failed(e, request.member_id.as_str());
    }
    let session_timeout_ms = u32::try_from(request.session_timeout_ms).unwrap_or(0);
    // v0 has no rebalance timeout: Kafka uses the session timeout.
    let rebalance_timeout_ms = match version {
        0 => session_timeout_ms,
        _ => u32::try_from(request.rebalance_timeout_ms).unwrap_or(0),
    };
    if request.member_id.is_empty() && version >= 4 {
        return match edge.broker.coordinator().reserve_member_id(
            &group,
            &client_id,
            session_timeout_ms,
        ) {
            Ok(id) => failed(
                KafkaError::new(
                    ResponseError::MemberIdRequired,
                    "join again with this member id",
                ),
                &id,
            ),
            Err(e) => failed(group_error(&e), ""),
        };
    }
    let member_id = request.member_id.as_str().to_string();
    let protocol_type = request.protocol_type.as_str().to_string();
    let joined = edge
        .broker
        .join_group(JoinRequest {
            group,
            member_id: (!member_id.is_empty()).then(|| member_id.clone()),
            client_id,
            session_timeout_ms,
            rebalance_timeout_ms,
            subscription: Subscription::Classic {
                protocol_type: protocol_type.clone(),
                protocols: request
                    .protocols
                    .into_iter()
                    .map(|p| (p.name.as_str().to_string(), p.metadata))
                    .collect(),
            },
        })
        .await;
    let joined = match joined {
        Ok(joined) => joined,
        Err(e) => return failed(group_error(&e), &member_id),
    };
    let JoinOutcome::Classic { protocol, members } = joined.outcome else {
        let e = KafkaError::new(
            ResponseError::InconsistentGroupProtocol,
            "the group is one of Carteiro's assigned groups, not a Kafka consumer group",
        );
        return failed(e, &member_id);
    };
    let members = members
        .into_iter()
        .map(|(id, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(text(id))
                .with_metadata(metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_generation_id(joined.generation as i32)
        .with_protocol_type(Some(text(protocol_type)))
        .with_protocol_name(Some(text(protocol)))
        .with_leader(text(joined.leader))
        .with_member_id(text(joined.member_id))
        .with_members(members)
}

/// Answers SyncGroup once the leader has sent the assignments.
pub(crate) async fn sync(edge: &Arc<Edge>, request: SyncGroupRequest) -> SyncGroupResponse {
    let answer = SyncGroupResponse::default()
        .with_protocol_type(request.protocol_type.clone())
        .with_protocol_name(request.protocol_name.clone());
    let synced = edge
        .broker
        .sync_group(SyncRequest {
            group: request.group_id.0.as_str().to_string(),
            member_id: request.member_id.as_str().to_string(),
            generation: generation(request.generation_id),
            assignments: request
                .assignments
                .into_iter()
                .map(|a| (a.member_id.as_str().to_string(), a.assignment))
                .collect(),
        })
        .await;
    match synced {
        Ok(assignment) => answer.with_assignment(assignment),
        Err(e) => answer
            .with_error_code(group_error(&e).code())
            .with_assignment(Bytes::new()),
    }
}

/// Answers Heartbeat.
pub(crate) fn heartbeat(edge: &Arc<Edge>, request: HeartbeatRequest) -> HeartbeatResponse {
    let status = edge.broker.heartbeat(
        request.group_id.0.as_str(),
        request.member_id.as_str(),
        generation(request.generation_id),
    );
    let error = match status {
        HeartbeatStatus::Ok => None,
        HeartbeatStatus::Rebalance => Some(ResponseError::RebalanceInProgress),
        HeartbeatStatus::UnknownMember => Some(ResponseError::UnknownMemberId),
        HeartbeatStatus::StaleGeneration => Some(ResponseError::IllegalGeneration),
    };
    HeartbeatResponse::default().with_error_code(error.map_or(0, |e| e.code()))
}

/// Answers LeaveGroup: one member (v0-2) or several (v3 and later).
pub(crate) fn leave(
    edge: &Arc<Edge>,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group = request.group_id.0.as_str();
    let leave_one = |member_id: &str| match edge.broker.leave_group(group, member_id) {
        Ok(()) => 0,
        Err(e) => group_error(&e).code(),
    };
    if version < 3 {
        return LeaveGroupResponse::default()
            .with_error_code(leave_one(request.member_id.as_str()));
    }
    let members = request
        .members
        .into_iter()
        .take(carteiro_core::coordinator::GROUP_MEMBERS_MAX)
        .map(|m| {
            let code = if m.group_instance_id.is_some() && m.member_id.is_empty() {
                ResponseError::UnknownMemberId.code()
            } else {
                leave_one(m.member_id.as_str())
            };
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(code)
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

/// Answers DescribeGroups; a group with no members nor commits is "Dead",
/// as Kafka answers.
pub(crate) fn describe(edge: &Arc<Edge>, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let operations = if request.include_authorized_operations {
        crate::GROUP_AUTHORIZED_OPERATIONS
    } else {
        i32::MIN
    };
    let groups = request
        .groups
        .into_iter()
        .take(carteiro_core::fetch::PARTITIONS_PER_REQUEST_MAX)
        .map(|group| {
            let answer = DescribedGroup::default()
                .with_group_id(group.clone())
                .with_authorized_operations(operations);
            match edge.broker.describe_group(group.0.as_str()) {
                Ok(described) => {
                    let protocol_type = match &described.kind {
                        Some(GroupKind::Classic(t)) => t.clone(),
                        Some(GroupKind::Assigned(_)) => "carteiro".to_string(),
                        None => String::new(),
                    };
                    let members = described
                        .members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(text(m.member_id))
                                .with_client_id(text(m.client_id))
                                .with_client_host(text(""))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect();
                    answer
                        .with_group_state(text(state_name(described.state)))
                        .with_protocol_type(text(protocol_type))
                        .with_protocol_data(text(described.protocol.unwrap_or_default()))
                        .with_members(members)
                }
                Err(BrokerError::UnknownGroup { .. }) => answer.with_group_state(text("Dead")),
                Err(e) => answer
                    .with_error_code(group_error(&e).code())
                    .with_group_state(text("Dead")),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// Answers ListGroups: every group with members or commits, filtered by
/// state (v4) if asked.
pub(crate) fn list(edge: &Arc<Edge>, request: ListGroupsRequest) -> ListGroupsResponse {
    let mut listed = Vec::new();
    for name in edge.broker.list_groups() {
        let (state, protocol_type) = match edge.broker.coordinator().describe(&name) {
            Some(g) => (
                state_name(g.state),
                match g.kind {
                    GroupKind::Classic(t) => t,
                    GroupKind::Assigned(_) => "carteiro".to_string(),
                },
            ),
            None => (state_name(GroupState::Empty), String::new()),
        };
        if !request.states_filter.is_empty()
            && !request.states_filter.iter().any(|s| s.as_str() == state)
        {
            continue;
        }
        listed.push(
            ListedGroup::default()
                .with_group_id(GroupId(text(name)))
                .with_protocol_type(text(protocol_type))
                .with_group_state(text(state)),
        );
    }
    ListGroupsResponse::default().with_groups(listed)
}
