//! The `Admin` gRPC service: topics and consumer groups.

use std::sync::Arc;

use carteiro::proto::{self, admin_server::Admin};
use carteiro_storage::store::{TOPIC_NAME_MAX_CHARS, validate_topic_name};
use carteiro_storage::{LogConfig, Topic, TopicConfig};
use tonic::{Request, Response, Status};

use crate::broker::high_watermark;
use crate::convert;
use crate::coordinator::GroupState;
use crate::error::{BrokerError, join_error};
use crate::offsets::validate_group;
use crate::shared::{INTERNAL_TOPIC_PREFIX, Shared};

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

/// A topic as `DescribeTopic` shows it.
pub fn describe(topic: &Topic) -> proto::TopicDescription {
    proto::TopicDescription {
        name: topic.name().to_string(),
        partitions: topic.config().partitions,
        config: Some(convert::topic_config(&topic.config().log)),
        created_ms: topic.created_ms(),
        partition_details: topic
            .partitions()
            .iter()
            .enumerate()
            .map(|(partition, log)| {
                let stats = log.stats();
                proto::PartitionDescription {
                    partition: partition as u32,
                    start_offset: stats.start_offset as i64,
                    end_offset: stats.end_offset as i64,
                    high_watermark: high_watermark(log) as i64,
                    size_bytes: stats.size_bytes,
                    segment_count: stats.segment_count as u32,
                }
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_topic(
        &self,
        request: Request<proto::CreateTopicRequest>,
    ) -> Result<Response<proto::TopicDescription>, Status> {
        let _admitted = self.shared.limits.admit()?;
        self.shared.check_running()?;
        let request = request.into_inner();
        validate_topic_name(&request.name)
            .map_err(|e| BrokerError::invalid("name", e.to_string()))?;
        self.shared.check_user_topic("name", &request.name)?;
        let log = convert::log_config(request.config.as_ref(), &LogConfig::default())?;
        let config = TopicConfig {
            partitions: request.partitions,
            log,
        };
        let store = self.shared.store.clone();
        let topic = tokio::task::spawn_blocking(move || store.create_topic(&request.name, config))
            .await
            .map_err(join_error)?
            .map_err(BrokerError::from)?;
        self.shared.coordinator.topic_changed(topic.name());
        Ok(Response::new(describe(&topic)))
    }

    async fn delete_topic(
        &self,
        request: Request<proto::DeleteTopicRequest>,
    ) -> Result<Response<proto::DeleteTopicResponse>, Status> {
        let _admitted = self.shared.limits.admit()?;
        self.shared.check_running()?;
        let name = request.into_inner().name;
        self.shared.check_user_topic("name", &name)?;
        let topic_name = name.clone();
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || -> Result<(), BrokerError> {
            shared.store.delete_topic(&name)?;
            shared.offsets.forget_topic(&name, shared.now_ms());
            Ok(())
        })
        .await
        .map_err(join_error)??;
        self.shared.coordinator.topic_changed(&topic_name);
        Ok(Response::new(proto::DeleteTopicResponse {}))
    }

    async fn list_topics(
        &self,
        _request: Request<proto::ListTopicsRequest>,
    ) -> Result<Response<proto::ListTopicsResponse>, Status> {
        let _admitted = self.shared.limits.admit()?;
        let topics = self
            .shared
            .store
            .topics()
            .iter()
            .filter(|t| !t.name().starts_with(INTERNAL_TOPIC_PREFIX))
            .map(|t| proto::TopicSummary {
                name: t.name().to_string(),
                partitions: t.config().partitions,
            })
            .collect();
        Ok(Response::new(proto::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<proto::DescribeTopicRequest>,
    ) -> Result<Response<proto::TopicDescription>, Status> {
        let _admitted = self.shared.limits.admit()?;
        let name = request.into_inner().name;
        if name.chars().count() > TOPIC_NAME_MAX_CHARS {
            return Err(BrokerError::invalid(
                "name",
                format!("longer than {TOPIC_NAME_MAX_CHARS} characters"),
            )
            .into());
        }
        let topic = self.shared.store.topic(&name).map_err(BrokerError::from)?;
        Ok(Response::new(describe(&topic)))
    }

    async fn list_groups(
        &self,
        _request: Request<proto::ListGroupsRequest>,
    ) -> Result<Response<proto::ListGroupsResponse>, Status> {
        let _admitted = self.shared.limits.admit()?;
        let mut groups = self.shared.offsets.groups();
        groups.extend(self.shared.coordinator.group_names());
        groups.sort();
        groups.dedup();
        Ok(Response::new(proto::ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        request: Request<proto::DescribeGroupRequest>,
    ) -> Result<Response<proto::GroupDescription>, Status> {
        let _admitted = self.shared.limits.admit()?;
        let group = request.into_inner().group;
        validate_group(&group)?;
        let partitions = self
            .shared
            .offsets
            .group(&group)
            .into_iter()
            .map(|(topic, partition, committed)| {
                let end = self
                    .shared
                    .store
                    .partition(&topic, partition)
                    .map(|log| high_watermark(&log) as i64)
                    .unwrap_or(0);
                proto::GroupPartition {
                    topic,
                    partition,
                    committed_offset: committed.offset,
                    metadata: committed.metadata,
                    log_end_offset: end,
                    lag: (end - committed.offset).max(0),
                }
            })
            .collect::<Vec<_>>();
        let membership = self.shared.coordinator.describe(&group);
        if partitions.is_empty() && membership.as_ref().is_none_or(|m| m.members.is_empty()) {
            return Err(BrokerError::UnknownGroup { group }.into());
        }
        let (state, generation, members) = match membership {
            Some(m) => (m.state, m.generation, m.members),
            None => (GroupState::Empty, 0, Vec::new()),
        };
        let members = members
            .into_iter()
            .map(|m| proto::GroupMember {
                member_id: m.member_id,
                client_id: m.client_id,
                partitions: m
                    .partitions
                    .into_iter()
                    .map(|(topic, partition)| proto::GroupMemberPartition { topic, partition })
                    .collect(),
            })
            .collect();
        Ok(Response::new(proto::GroupDescription {
            group,
            partitions,
            state: state.name().to_string(),
            generation,
            members,
        }))
    }
}
