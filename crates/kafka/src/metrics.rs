//! The Kafka edge's figures for `/metrics`: per API served, requests (in
//! flight and done), their durations and the error codes their replies
//! carried; connections open; and what the edge's limits refused. Fixed
//! arrays of atomics in one process-wide value, indexed by the API's place
//! in [`SERVED`] and by the code, so counting takes no lock; the broker's
//! collector reads [`snapshot`] when scraped.
//!
//! A request counts from the moment its frame is read until its reply is
//! written (behind the replies to the requests before it on its
//! connection, as the client sees it), or until it is appended for a
//! produce with acks=0. Errors count as Kafka's own broker counts them
//! (`ErrorsPerSec`): each non-zero code in a reply, at whatever level
//! (request, topic, partition), once.

use carteiro_storage::metrics::{
    ApiSnapshot, Counters, EdgeSnapshot, Gauge, GaugeHold, RequestCounters, RequestTimer,
};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, ResponseKind};

use crate::versions::SERVED;

/// The highest Kafka error code with its own counter (the highest the
/// codec knows); every code above it, or below -1, counts as `OTHER`.
pub const ERROR_CODE_MAX: i16 = 133;
/// Counters of error codes per API: -1 to [`ERROR_CODE_MAX`], and one for
/// any other code.
const CODES: usize = ERROR_CODE_MAX as usize + 3;
/// The counter of codes outside -1 to [`ERROR_CODE_MAX`].
const OTHER_CODE: usize = CODES - 1;

/// The limits of the Kafka edge that refuse something, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// A connection over `--max-connections`, closed at accept.
    Connections = 0,
    /// A frame over `--kafka-request-bytes-max`: its connection is closed.
    RequestBytes = 1,
}

/// Names of the edge's limits in the `limit` label (by `Limit`): the flag
/// that sets each.
pub const LIMIT_NAMES: [&str; 2] = ["max_connections", "kafka_request_bytes_max"];

/// The edge's counters; see the module documentation.
struct KafkaMetrics {
    apis: [RequestCounters<CODES>; SERVED.len()],
    connections: Gauge,
    refused: Counters<{ LIMIT_NAMES.len() }>,
}

static KAFKA: KafkaMetrics = KafkaMetrics {
    apis: [const { RequestCounters::new() }; SERVED.len()],
    connections: Gauge::new(),
    refused: Counters::new(),
};

/// The place of `key` in [`SERVED`], if served.
pub(crate) fn api_index(key: ApiKey) -> Option<usize> {
    SERVED.iter().position(|r| r.key == key)
}

/// A request of the API at `api` (from [`api_index`]) begins.
pub(crate) fn start(api: usize) -> Option<RequestTimer> {
    KAFKA.apis.get(api).map(RequestCounters::start)
}

/// Counts an error code (0 is not one) met by a request of the API at `api`.
pub(crate) fn count_error(api: usize, code: i16) {
    if code == 0 {
        return;
    }
    if let Some(counters) = KAFKA.apis.get(api) {
        counters.error(code_index(code));
    }
}

/// Counts every non-zero code in a reply.
pub(crate) fn count_reply_errors(api: usize, reply: &ResponseKind) {
    for_each_error_code(reply, |code| count_error(api, code));
}

/// A connection is open until the returned hold is dropped.
pub(crate) fn connection_open() -> GaugeHold {
    KAFKA.connections.hold()
}

/// Counts something a limit refused.
pub(crate) fn refused(limit: Limit) {
    KAFKA.refused.add(limit as usize);
}

fn code_index(code: i16) -> usize {
    match usize::try_from(i32::from(code) + 1) {
        Ok(i) if i < OTHER_CODE => i,
        _ => OTHER_CODE,
    }
}

/// The label of the code counted at `index`: Kafka's own name for it
/// (`UNKNOWN_TOPIC_OR_PARTITION`), or its number if the codec has none.
fn code_name(index: usize) -> String {
    if index == OTHER_CODE {
        return "OTHER".to_string();
    }
    let code = index as i16 - 1;
    match ResponseError::try_from_code(code) {
        Some(ResponseError::Unknown(_)) | None => code.to_string(),
        Some(error) => screaming_snake(&error.to_string()),
    }
}

/// `UnknownTopicOrPartition` as Kafka's `Errors` names it: `UNKNOWN_TOPIC_OR_PARTITION`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The Kafka edge's figures now.
pub fn snapshot() -> EdgeSnapshot {
    let apis = SERVED
        .iter()
        .zip(&KAFKA.apis)
        .map(|(range, counters)| {
            let requests = counters.snapshot();
            let errors = requests
                .errors
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (code_name(i), *n))
                .collect();
            ApiSnapshot {
                api: format!("{:?}", range.key),
                requests,
                errors,
            }
        })
        .collect();
    EdgeSnapshot {
        edge: "kafka",
        apis,
        open_connections: KAFKA.connections.get(),
        refused: LIMIT_NAMES
            .iter()
            .copied()
            .zip(KAFKA.refused.snapshot())
            .collect(),
    }
}

/// Calls `f` with every error code of a reply of an API served, non-zero
/// or not, at every level it has one.
fn for_each_error_code(reply: &ResponseKind, mut f: impl FnMut(i16)) {
    match reply {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| f(p.error_code)),
        ResponseKind::Fetch(r) => {
            f(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::Metadata(r) => {
            f(r.error_code);
            for topic in &r.topics {
                f(topic.error_code);
                topic.partitions.iter().for_each(|p| f(p.error_code));
            }
        }
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            f(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
            for group in &r.groups {
                f(group.error_code);
                group
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| f(p.error_code));
            }
        }
        ResponseKind::FindCoordinator(r) => {
            f(r.error_code);
            r.coordinators.iter().for_each(|c| f(c.error_code));
        }
        ResponseKind::JoinGroup(r) => f(r.error_code),
        ResponseKind::Heartbeat(r) => f(r.error_code),
        ResponseKind::LeaveGroup(r) => {
            f(r.error_code);
            r.members.iter().for_each(|m| f(m.error_code));
        }
        ResponseKind::SyncGroup(r) => f(r.error_code),
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        ResponseKind::ListGroups(r) => f(r.error_code),
        ResponseKind::ApiVersions(r) => f(r.error_code),
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|t| f(t.error_code)),
        ResponseKind::CreatePartitions(r) => r.results.iter().for_each(|t| f(t.error_code)),
        ResponseKind::InitProducerId(r) => f(r.error_code),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{ProduceResponse, TopicName};

    use super::*;

    #[test]
    fn codes_have_kafkas_names_and_a_fixed_set_of_counters() {
        assert_eq!(code_index(-1), 0);
        assert_eq!(code_index(0), 1);
        assert_eq!(code_index(ERROR_CODE_MAX), OTHER_CODE - 1);
        assert_eq!(code_index(ERROR_CODE_MAX + 1), OTHER_CODE);
        assert_eq!(code_index(-2), OTHER_CODE);
        assert_eq!(code_name(code_index(3)), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(code_name(code_index(-1)), "UNKNOWN_SERVER_ERROR");
        assert_eq!(code_name(code_index(17)), "INVALID_TOPIC_EXCEPTION");
        assert_eq!(code_name(OTHER_CODE), "OTHER");
        assert_eq!(api_index(ApiKey::Produce), Some(0));
        assert_eq!(api_index(ApiKey::SaslHandshake), None);
    }

    #[test]
    fn every_partition_error_of_a_reply_is_found() {
        let partition = |code| PartitionProduceResponse::default().with_error_code(code);
        let reply = ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default()
                .with_name(TopicName(crate::handlers::text("a")))
                .with_partition_responses(vec![partition(0), partition(3), partition(3)]),
            TopicProduceResponse::default().with_partition_responses(vec![partition(87)]),
        ]));
        let mut codes = Vec::new();
        for_each_error_code(&reply, |c| codes.push(c));
        assert_eq!(codes, vec![0, 3, 3, 87]);
    }
}
