//! CreateTopics, DeleteTopics and CreatePartitions. This broker keeps one
//! copy of each partition until replication: a replication factor of 1 or
//! -1 (the default) is accepted, anything else is INVALID_REPLICATION_FACTOR.

use std::sync::Arc;

use carteiro_core::BrokerError;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse,
};

use super::configs::{parse_settings, topic_entries};
use super::metadata::topic_id;
use super::text;
use crate::error::{Family, KafkaError, kafka_error};
use crate::listener::Edge;

/// Most topics one admin request may name.
pub(crate) const TOPICS_PER_REQUEST_MAX: usize = 1000;

fn admin_error(e: &BrokerError) -> KafkaError {
    kafka_error(e, Family::Admin)
}

fn too_many(n: usize) -> KafkaError {
    KafkaError::new(
        ResponseError::PolicyViolation,
        format!("{n} topics in one request exceed the limit of {TOPICS_PER_REQUEST_MAX}"),
    )
}

/// Answers CreateTopics.
pub(crate) async fn create(
    edge: &Arc<Edge>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let count = request.topics.len();
    let mut results = Vec::with_capacity(count.min(TOPICS_PER_REQUEST_MAX));
    for (i, topic) in request.topics.into_iter().enumerate() {
        let name = topic.name.0.as_str().to_string();
        let answer = CreatableTopicResult::default().with_name(topic.name.clone());
        let created = if i >= TOPICS_PER_REQUEST_MAX {
            Err(too_many(count))
        } else {
            create_one(edge, &name, &topic, request.validate_only).await
        };
        results.push(match created {
            Ok((partitions, config)) => {
                let answer = answer
                    .with_num_partitions(partitions as i32)
                    .with_replication_factor(1);
                if version >= 5 {
                    let configs = topic_entries(&config)
                        .into_iter()
                        .map(|(name, value, is_default)| {
                            CreatableTopicConfigs::default()
                                .with_name(text(name))
                                .with_value(Some(text(value)))
                                .with_config_source(if is_default { 5 } else { 1 })
                        })
                        .collect();
                    answer.with_configs(Some(configs))
                } else {
                    answer
                }
            }
            Err(e) => answer
                .with_error_code(e.code())
                .with_error_message(Some(text(e.message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn create_one(
    edge: &Arc<Edge>,
    name: &str,
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
) -> Result<(u32, carteiro_storage::LogConfig), KafkaError> {
    if !matches!(topic.replication_factor, 1 | -1) {
        return Err(KafkaError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication_factor is {}: this broker keeps one copy (1, or -1 for the default)",
                topic.replication_factor
            ),
        ));
    }
    if !topic.assignments.is_empty() {
        return Err(KafkaError::new(
            ResponseError::InvalidReplicaAssignment,
            "assignments are set: this single broker places every partition itself",
        ));
    }
    let partitions = match topic.num_partitions {
        -1 => edge.options.default_partitions,
        n => u32::try_from(n).map_err(|_| {
            KafkaError::new(
                ResponseError::InvalidPartitions,
                format!("num_partitions is {n}: it must be at least 1, or -1 for the default"),
            )
        })?,
    };
    let settings = parse_settings(
        topic
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_ref().map(|v| v.as_str()))),
    )?;
    if validate_only {
        edge.broker
            .check_new_topic(name, partitions, &settings)
            .map_err(|e| admin_error(&e))?;
        return Ok((
            partitions,
            settings.log_config(&carteiro_storage::LogConfig::default()),
        ));
    }
    let created = edge
        .broker
        .create_topic(name, partitions, &settings)
        .await
        .map_err(|e| admin_error(&e))?;
    Ok((created.partitions.len() as u32, created.config))
}

/// Answers DeleteTopics (by name; v6 ids are not served).
pub(crate) async fn delete(edge: &Arc<Edge>, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let count = request.topic_names.len();
    let mut responses = Vec::with_capacity(count.min(TOPICS_PER_REQUEST_MAX));
    for (i, name) in request.topic_names.into_iter().enumerate() {
        let answer = DeletableTopicResult::default().with_name(Some(name.clone()));
        let topic = name.0.as_str();
        let id = edge
            .broker
            .describe_topic(topic)
            .map(|t| topic_id(&t.name, t.created_ms))
            .unwrap_or_default();
        let deleted = if i >= TOPICS_PER_REQUEST_MAX {
            Err(too_many(count))
        } else {
            edge.broker
                .delete_topic(topic)
                .await
                .map_err(|e| admin_error(&e))
        };
        responses.push(match deleted {
            Ok(()) => answer.with_topic_id(id),
            Err(e) => answer
                .with_error_code(e.code())
                .with_error_message(Some(text(e.message))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Answers CreatePartitions: each topic grows to its new total.
pub(crate) async fn create_partitions(
    edge: &Arc<Edge>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let count = request.topics.len();
    let mut results = Vec::with_capacity(count.min(TOPICS_PER_REQUEST_MAX));
    for (i, topic) in request.topics.into_iter().enumerate() {
        let answer = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        let grown = if i >= TOPICS_PER_REQUEST_MAX {
            Err(too_many(count))
        } else if topic.assignments.is_some() {
            Err(KafkaError::new(
                ResponseError::InvalidReplicaAssignment,
                "assignments are set: this single broker places every partition itself",
            ))
        } else {
            match u32::try_from(topic.count) {
                Ok(total) => edge
                    .broker
                    .create_partitions(topic.name.0.as_str(), total, request.validate_only)
                    .await
                    .map(|_| ())
                    .map_err(|e| admin_error(&e)),
                Err(_) => Err(KafkaError::new(
                    ResponseError::InvalidPartitions,
                    format!(
                        "count is {}: it must be the new total, more than now",
                        topic.count
                    ),
                )),
            }
        };
        results.push(match grown {
            Ok(()) => answer,
            Err(e) => answer
                .with_error_code(e.code())
                .with_error_message(Some(text(e.message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
