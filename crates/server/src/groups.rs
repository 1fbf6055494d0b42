//! The `Groups` gRPC service: join, heartbeat, leave. Each method turns
//! its request into a core call and the answer back.

use std::sync::Arc;

use carteiro::proto::{self, groups_server::Groups};
use tonic::{Request, Response, Status};

use crate::convert;
use crate::error::status;
use crate::shared::Shared;

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
        let request = convert::join_request(request.into_inner()).map_err(status)?;
        let joined = self
            .shared
            .broker
            .join_group(request)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::joined(joined)))
    }

    async fn heartbeat(
        &self,
        request: Request<proto::HeartbeatRequest>,
    ) -> Result<Response<proto::HeartbeatResponse>, Status> {
        let _admitted = self.shared.limits.admit().map_err(status)?;
        let request = request.into_inner();
        let answer =
            self.shared
                .broker
                .heartbeat(&request.group, &request.member_id, request.generation);
        Ok(Response::new(proto::HeartbeatResponse {
            status: convert::heartbeat_status(answer) as i32,
        }))
    }

    async fn leave_group(
        &self,
        request: Request<proto::LeaveGroupRequest>,
    ) -> Result<Response<proto::LeaveGroupResponse>, Status> {
        let _admitted = self.shared.limits.admit().map_err(status)?;
        let request = request.into_inner();
        self.shared
            .broker
            .leave_group(&request.group, &request.member_id)
            .map_err(status)?;
        Ok(Response::new(proto::LeaveGroupResponse {}))
    }
}
