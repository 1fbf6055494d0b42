//! Metadata: this broker, the controller and every partition's leader, and
//! the topics asked for (all of them if none are named). A missing topic
//! that a client names is created when auto-creation is on and the client
//! allows it.

use std::sync::Arc;

use carteiro_core::topics::TopicDescription;
use carteiro_core::{BrokerError, INTERNAL_TOPIC_PREFIX};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::text;
use crate::error::{Family, kafka_error};
use crate::listener::Edge;
use crate::{CLUSTER_AUTHORIZED_OPERATIONS, CLUSTER_ID, NODE_ID, TOPIC_AUTHORIZED_OPERATIONS};

/// A topic's id: stable for the life of the topic (its name and creation
/// time), never zero, and different for a topic deleted and created again.
pub(crate) fn topic_id(name: &str, created_ms: i64) -> Uuid {
    let mut words = [0u32; 4];
    for (salt, word) in words.iter_mut().enumerate() {
        let mut bytes = Vec::with_capacity(name.len() + 9);
        bytes.push(salt as u8);
        bytes.extend_from_slice(&created_ms.to_be_bytes());
        bytes.extend_from_slice(name.as_bytes());
        *word = crc32c::crc32c(&bytes);
    }
    let value = words
        .iter()
        .fold(0u128, |acc, w| (acc << 32) | u128::from(*w))
        .max(1);
    Uuid::from_u128(value)
}

/// Checks that the topic exists, creating it first if it is missing and
/// `create` allows it. Cheap when it exists (the produce path asks every time).
pub(crate) async fn ensure_topic(
    edge: &Arc<Edge>,
    name: &str,
    create: bool,
) -> Result<(), BrokerError> {
    if edge.broker.store().topic(name).is_ok() {
        return Ok(());
    }
    find_or_create(edge, name, create).await.map(|_| ())
}

/// The topic, created first if it is missing and `create` allows it.
pub(crate) async fn find_or_create(
    edge: &Arc<Edge>,
    name: &str,
    create: bool,
) -> Result<TopicDescription, BrokerError> {
    match edge.broker.describe_topic(name) {
        Err(BrokerError::Store(carteiro_storage::StoreError::UnknownTopic { .. }))
            if create && edge.options.auto_create_topics =>
        {
            let settings = carteiro_core::topics::TopicSettings::default();
            match edge
                .broker
                .create_topic(name, edge.options.default_partitions, &settings)
                .await
            {
                Ok(created) => {
                    tracing::info!(
                        topic = name,
                        partitions = edge.options.default_partitions,
                        "topic created automatically"
                    );
                    Ok(created)
                }
                // Another client created it first.
                Err(BrokerError::Store(carteiro_storage::StoreError::TopicExists { .. })) => {
                    edge.broker.describe_topic(name)
                }
                Err(e) => Err(e),
            }
        }
        other => other,
    }
}

/// What a response says of authorized operations: the set if asked,
/// Kafka's "not provided" (`i32::MIN`) otherwise.
fn authorized(asked: bool, operations: i32) -> i32 {
    if asked { operations } else { i32::MIN }
}

fn topic_answer(topic: &TopicDescription, version: i16, operations: i32) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.partition as i32)
                .with_leader_id(BrokerId(NODE_ID))
                .with_leader_epoch(-1)
                .with_replica_nodes(vec![BrokerId(NODE_ID)])
                .with_isr_nodes(vec![BrokerId(NODE_ID)])
        })
        .collect();
    let answer = MetadataResponseTopic::default()
        .with_name(Some(TopicName(text(topic.name.clone()))))
        .with_is_internal(topic.name.starts_with(INTERNAL_TOPIC_PREFIX))
        .with_partitions(partitions)
        .with_topic_authorized_operations(operations);
    if version >= 10 {
        answer.with_topic_id(topic_id(&topic.name, topic.created_ms))
    } else {
        answer
    }
}

fn topic_error(name: Option<&str>, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(|n| TopicName(text(n))))
        .with_error_code(error.code())
}

/// Answers a Metadata request.
pub(crate) async fn metadata(
    edge: &Arc<Edge>,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(NODE_ID))
        .with_host(text(edge.options.advertised_host.clone()))
        .with_port(i32::from(edge.options.advertised_port));
    let operations = authorized(
        request.include_topic_authorized_operations,
        TOPIC_AUTHORIZED_OPERATIONS,
    );
    let mut answer = MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(text(CLUSTER_ID)))
        .with_controller_id(BrokerId(NODE_ID))
        .with_cluster_authorized_operations(authorized(
            request.include_cluster_authorized_operations,
            CLUSTER_AUTHORIZED_OPERATIONS,
        ));
    // v0 names no topics to mean all of them; v1 and later send null.
    let named = match request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(topics),
        _ => None,
    };
    let Some(named) = named else {
        let mut topics: Vec<MetadataResponseTopic> = Vec::new();
        for (name, _) in edge.broker.list_topics() {
            // A topic deleted meanwhile is left out.
            if let Ok(topic) = edge.broker.describe_topic(&name) {
                topics.push(topic_answer(&topic, version, operations));
            }
        }
        answer.topics = topics;
        return answer;
    };
    // Kafka before v4 always creates; later the client says.
    let create = version < 4 || request.allow_auto_topic_creation;
    let mut topics = Vec::with_capacity(
        named
            .len()
            .min(carteiro_core::fetch::PARTITIONS_PER_REQUEST_MAX),
    );
    for wanted in named
        .into_iter()
        .take(carteiro_core::fetch::PARTITIONS_PER_REQUEST_MAX)
    {
        let Some(name) = wanted.name else {
            // Asked by id: this broker answers by name only.
            topics.push(topic_error(None, ResponseError::UnknownTopicId));
            continue;
        };
        let name = name.0.as_str();
        match find_or_create(edge, name, create).await {
            Ok(topic) => topics.push(topic_answer(&topic, version, operations)),
            Err(e) => topics.push(topic_error(Some(name), kafka_error(&e, Family::Data).error)),
        }
    }
    answer.topics = topics;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_are_stable_and_differ_for_a_topic_made_again() {
        assert_eq!(topic_id("orders", 1), topic_id("orders", 1));
        assert_ne!(topic_id("orders", 1), topic_id("orders", 2));
        assert_ne!(topic_id("orders", 1), Uuid::nil());
    }
}
