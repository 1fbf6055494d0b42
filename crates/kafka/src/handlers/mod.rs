//! One module per family of Kafka APIs. Each handler takes a decoded
//! request and returns the response value, calling the broker core; the
//! connection module frames and orders them.

pub(crate) mod api_versions;
pub(crate) mod configs;
pub(crate) mod fetch;
pub(crate) mod groups;
pub(crate) mod list_offsets;
pub(crate) mod metadata;
pub(crate) mod offsets;
pub(crate) mod produce;
pub(crate) mod producers;
pub(crate) mod topics;

use std::sync::Arc;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::listener::Edge;
use crate::request::Reply;

/// Runs the handler of a decoded request (other than Produce, which the
/// connection appends in order). `None` if the request is of an API the
/// dispatcher should not have sent here.
pub(crate) async fn handle(
    edge: &Arc<Edge>,
    request: RequestKind,
    version: i16,
    client_id: String,
) -> Option<Reply> {
    let body = match request {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::answer()),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::metadata(edge, r, version).await)
        }
        RequestKind::Fetch(r) => return Some(fetch::fetch(edge, r, version).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::list_offsets(edge, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(edge, r, version))
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join(edge, r, version, client_id).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync(edge, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(edge, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave(edge, r, version)),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(groups::describe(edge, r)),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list(edge, r)),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offsets::commit(edge, r).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offsets::fetch(edge, r)),
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(topics::create(edge, r, version).await)
        }
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(topics::delete(edge, r).await),
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(topics::create_partitions(edge, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producers::init_producer_id(edge, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(edge, r))
        }
        _ => return None,
    };
    Some(Reply::new(body))
}

/// A string for the wire.
pub(crate) fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
