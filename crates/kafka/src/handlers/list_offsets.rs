//! ListOffsets: earliest (-2), latest (-1), or the first offset at or after
//! a timestamp; -1 and timestamp -1 if every record is older, as Kafka
//! answers. Max-timestamp queries (-3) are refused with
//! UNSUPPORTED_VERSION: the log keeps no index of its largest timestamp.

use std::sync::Arc;

use carteiro_core::BrokerError;
use carteiro_core::fetch::{OffsetSpec, PARTITIONS_PER_REQUEST_MAX};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::error::{Family, kafka_error};
use crate::listener::Edge;

/// Kafka's timestamp for "the earliest offset".
const EARLIEST_TIMESTAMP: i64 = -2;
/// Kafka's timestamp for "the latest offset".
const LATEST_TIMESTAMP: i64 = -1;

/// `(offset, timestamp)` for one partition's query. Blocking.
fn answer_one(
    broker: &carteiro_core::Broker,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<(i64, i64), ResponseError> {
    let partition = u32::try_from(partition).map_err(|_| ResponseError::UnknownTopicOrPartition)?;
    let data = |e: BrokerError| kafka_error(&e, Family::Data).error;
    match timestamp {
        EARLIEST_TIMESTAMP => broker
            .list_offset(topic, partition, OffsetSpec::Earliest)
            .map(|o| (o as i64, -1))
            .map_err(data),
        LATEST_TIMESTAMP => broker
            .list_offset(topic, partition, OffsetSpec::Latest)
            .map(|o| (o as i64, -1))
            .map_err(data),
        ts if ts >= 0 => broker
            .offset_at_time(topic, partition, ts)
            .map(|found| found.map_or((-1, -1), |o| (o as i64, ts)))
            .map_err(data),
        _ => Err(ResponseError::UnsupportedVersion),
    }
}

/// Answers a ListOffsets.
pub(crate) async fn list_offsets(
    edge: &Arc<Edge>,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let broker = edge.broker.clone();
    let answered = tokio::task::spawn_blocking(move || {
        let mut left = PARTITIONS_PER_REQUEST_MAX;
        request
            .topics
            .into_iter()
            .map(|topic| {
                let name = topic.name.0.as_str().to_string();
                let partitions = topic
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let answer = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_leader_epoch(-1);
                        let result = if left == 0 {
                            Err(ResponseError::PolicyViolation)
                        } else {
                            left -= 1;
                            answer_one(&broker, &name, p.partition_index, p.timestamp)
                        };
                        match result {
                            Ok((offset, timestamp)) => {
                                answer.with_offset(offset).with_timestamp(timestamp)
                            }
                            Err(e) => answer
                                .with_error_code(e.code())
                                .with_offset(-1)
                                .with_timestamp(-1),
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect()
    })
    .await;
    ListOffsetsResponse::default().with_topics(answered.unwrap_or_default())
}
