//! The `Groups` gRPC service: join, heartbeat, leave. The logic is the
//! coordinator's; this is its edge.

use std::sync::Arc;

use carteiro::proto::{self, groups_server::Groups};
use tonic::{Request, Response, Status};

use crate::error::BrokerError;
use crate::offsets::validate_group;
use crate::shared::Shared;

/// Longest member id or client id, in bytes.
pub const MEMBER_ID_MAX_BYTES: usize = 255;
/// Most topics one member may subscribe to.
pub const SUBSCRIBED_TOPICS_MAX: usize = 1000;

fn check_ids(member_id: &str, client_id: &str) -> Result<(), BrokerError> {
    for (field, value) in [("member_id", member_id), ("client_id", client_id)] {
        if value.len() > MEMBER_ID_MAX_BYTES {
            let message = format!(
                "{} bytes exceed the limit of {MEMBER_ID_MAX_BYTES}",
                value.len()
            );
            return Err(BrokerError::invalid(field, message));
        }
    }
    Ok(())
}

/// The `Groups` service.
pub struct GroupsService {
    shared: Arc<Shared>,
}

impl GroupsService {
    /// A service over the shared broker state.
    pub fn new(shared: Arc<Shared>) -> Self {
        GroupsService { shared }
    }
}

#[tonic::async_trait]
impl Groups for GroupsService {
    async fn join_group(
        &self,
        request: Request<proto::JoinGroupRequest>,
    ) -> Result<Response<proto::JoinGroupResponse>, Status> {
        // A join waits for the whole group; it holds no request place meanwhile.
        self.shared.check_running()?;
        let request = request.into_inner();
        validate_group(&request.group)?;
        check_ids(&request.member_id, &request.client_id)?;
        if request.topics.len() > SUBSCRIBED_TOPICS_MAX {
            let message = format!(
                "{} topics exceed the limit of {SUBSCRIBED_TOPICS_MAX}",
                request.topics.len()
            );
            return Err(BrokerError::invalid("topics", message).into());
        }
        for topic in &request.topics {
            self.shared.check_user_topic("topics", topic)?;
        }
        let mut shutdown = self.shared.shutdown.clone();
        let joined = tokio::select! {
            joined = self.shared.coordinator.join(request) => joined?,
            _ = shutdown.changed() => return Err(BrokerError::ShuttingDown.into()),
        };
        Ok(Response::new(proto::JoinGroupResponse {
            member_id: joined.member_id,
            generation: joined.generation,
            assignment: joined
                .assignment
                .into_iter()
                .map(|(topic, partition)| proto::TopicPartition { topic, partition })
                .collect(),
            member_count: joined.member_count,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<proto::HeartbeatRequest>,
    ) -> Result<Response<proto::HeartbeatResponse>, Status> {
        let _admitted = self.shared.limits.admit()?;
        let request = request.into_inner();
        let status = self.shared.coordinator.heartbeat(
            &request.group,
            &request.member_id,
            request.generation,
        );
        Ok(Response::new(proto::HeartbeatResponse {
            status: status as i32,
        }))
    }

    async fn leave_group(
        &self,
        request: Request<proto::LeaveGroupRequest>,
    ) -> Result<Response<proto::LeaveGroupResponse>, Status> {
        let _admitted = self.shared.limits.admit()?;
        let request = request.into_inner();
        self.shared
            .coordinator
            .leave(&request.group, &request.member_id)?;
        Ok(Response::new(proto::LeaveGroupResponse {}))
    }
}
