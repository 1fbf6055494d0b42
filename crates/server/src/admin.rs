//! The `Admin` gRPC service: topics and consumer groups. Each method turns
//! its request into a core call and the answer back.

use std::sync::Arc;

use carteiro::proto::{self, admin_server::Admin};
use tonic::{Request, Response, Status};

use crate::convert;
use crate::error::status;
use crate::shared::Shared;

/// The `Admin` service.
pub struct AdminService {
    shared: Arc<Shared>,
}

impl AdminService {
    /// A service over the shared broker state.
    pub fn new(shared: Arc<Shared>) -> Self {
        AdminService { shared }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_topic(
        &self,
        request: Request<proto::CreateTopicRequest>,
    ) -> Result<Response<proto::TopicDescription>, Status> {
        let _admitted = self.shared.limits.admit().map_err(status)?;
        let request = request.into_inner();
        let settings = convert::topic_settings(request.config.as_ref()).map_err(status)?;
        let topic = self
            .shared
            .broker
            .create_topic(&request.name, request.partitions, &settings)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::topic_description(topic)))
    }

    async fn delete_topic(
        &self,
        request: Request<proto::DeleteTopicRequest>,
    ) -> Result<Response<proto::DeleteTopicResponse>, Status> {
        let _admitted = self.shared.limits.admit().map_err(status)?;
        self.shared
            .broker
            .delete_topic(&request.into_inner().name)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::DeleteTopicResponse {}))
    }

    async fn list_topics(
        &self,
        _request: Request<proto::ListTopicsRequest>,
    ) -> Result<Response<proto::ListTopicsResponse>, Status> {
        let _admitted = self.shared.limits.admit().map_err(status)?;
        let topics = self
            .shared
            .broker
            .list_topics()
            .into_iter()
            .map(|(name, partitions)| proto::TopicSummary { name, partitions })
            .collect();
        Ok(Response::new(proto::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<proto::DescribeTopicRequest>,
    ) -> Result<Response<proto::TopicDescription>, Status> {
        let _admitted = self.shared.limits.admit().map_err(status)?;
        let topic = self
            .shared
            .broker
            .describe_topic(&request.into_inner().name)
            .map_err(status)?;
        Ok(Response::new(convert::topic_description(topic)))
    }

    async fn create_partitions(
        &self,
        request: Request<proto::CreatePartitionsRequest>,
    ) -> Result<Response<proto::TopicDescription>, Status> {
        let _admitted = self.shared.limits.admit().map_err(status)?;
        let request = request.into_inner();
        let topic = self
            .shared
            .broker
            .create_partitions(&request.name, request.partitions, request.validate_only)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::topic_description(topic)))
    }

    async fn list_groups(
        &self,
        _request: Request<proto::ListGroupsRequest>,
    ) -> Result<Response<proto::ListGroupsResponse>, Status> {
        let _admitted = self.shared.limits.admit().map_err(status)?;
        let groups = self.shared.broker.list_groups();
        Ok(Response::new(proto::ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        request: Request<proto::DescribeGroupRequest>,
    ) -> Result<Response<proto::GroupDescription>, Status> {
        let _admitted = self.shared.limits.admit().map_err(status)?;
        let group = self
            .shared
            .broker
            .describe_group(&request.into_inner().group)
            .map_err(status)?;
        Ok(Response::new(convert::group_description(group)))
    }
}
