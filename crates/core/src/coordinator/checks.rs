//! What a member sends, checked against the coordinator's limits before
//! any group is touched: timeouts, ids, subscriptions, sizes.

use std::time::Duration;

use super::{
    CLASSIC_BYTES_MAX, GROUP_TIMEOUT_MS_MAX, GROUP_TIMEOUT_MS_MIN, JoinRequest,
    MEMBER_ID_MAX_BYTES, PROTOCOL_NAME_MAX_BYTES, SUBSCRIBED_TOPICS_MAX, Subscription,
};
use crate::error::BrokerError;

/// A session or rebalance timeout, within the allowed range.
pub(super) fn timeout(field: &'static str, ms: u32) -> Result<Duration, BrokerError> {
    if !(GROUP_TIMEOUT_MS_MIN..=GROUP_TIMEOUT_MS_MAX).contains(&ms) {
        let message = format!(
            "{ms} is outside the allowed range {GROUP_TIMEOUT_MS_MIN}..={GROUP_TIMEOUT_MS_MAX}"
        );
        return Err(BrokerError::invalid(field, message));
    }
    Ok(Duration::from_millis(u64::from(ms)))
}

/// Refuses `len` over `max`, naming the field and the unit.
pub(super) fn check_len(
    field: &'static str,
    len: usize,
    max: usize,
    unit: &str,
) -> Result<(), BrokerError> {
    if len > max {
        return Err(BrokerError::invalid(
            field,
            format!("{len} {unit} exceed the limit of {max}"),
        ));
    }
    Ok(())
}

/// Checks a join's ids, subscription and sizes against the limits.
pub(super) fn check_join(request: &JoinRequest) -> Result<(), BrokerError> {
    crate::committed::validate_group(&request.group)?;
    let member_id = request.member_id.as_deref().unwrap_or_default();
    check_len("member_id", member_id.len(), MEMBER_ID_MAX_BYTES, "bytes")?;
    check_len(
        "client_id",
        request.client_id.len(),
        MEMBER_ID_MAX_BYTES,
        "bytes",
    )?;
    match &request.subscription {
        Subscription::Assigned { topics, .. } => {
            if topics.is_empty() {
                return Err(BrokerError::invalid(
                    "topics",
                    "empty: subscribe to at least one topic",
                ));
            }
            check_len("topics", topics.len(), SUBSCRIBED_TOPICS_MAX, "topics")?;
            // A subscription names topics as topics are named, so a join
            // cannot park arbitrary bytes in the coordinator.
            for topic in topics {
                carteiro_storage::store::validate_topic_name(topic)
                    .map_err(|e| BrokerError::invalid("topics", e.to_string()))?;
            }
        }
        Subscription::Classic {
            protocol_type,
            protocols,
        } => {
            if protocol_type.is_empty() || protocols.is_empty() {
                return Err(BrokerError::invalid(
                    "protocols",
                    "a classic member names a protocol type and at least one protocol",
                ));
            }
            check_len(
                "protocols",
                protocols.len(),
                SUBSCRIBED_TOPICS_MAX,
                "protocols",
            )?;
            check_len(
                "protocol_type",
                protocol_type.len(),
                PROTOCOL_NAME_MAX_BYTES,
                "bytes",
            )?;
            for (name, _) in protocols {
                check_len(
                    "protocols.name",
                    name.len(),
                    PROTOCOL_NAME_MAX_BYTES,
                    "bytes",
                )?;
            }
            let metadata: usize = protocols.iter().map(|(_, m)| m.len()).sum();
            check_len("protocols.metadata", metadata, CLASSIC_BYTES_MAX, "bytes")?;
        }
    }
    Ok(())
}
