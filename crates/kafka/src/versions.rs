//! The Kafka APIs this broker serves and their versions: one table, read by
//! the ApiVersions answer and by the dispatcher, so they cannot disagree.
//!
//! Each range is advertised from its low end, as Kafka does: older
//! librdkafka (Debian's kcat links 2.0.2) probes single low versions.

use kafka_protocol::messages::ApiKey;

/// One API's versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API.
    pub key: ApiKey,
    /// The lowest version advertised.
    pub advertised_min: i16,
    /// The lowest version served; requests below it (and at or above
    /// `advertised_min`) are answered UNSUPPORTED_VERSION.
    pub served_min: i16,
    /// The highest version served and advertised.
    pub max: i16,
}

const fn range(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange {
        key,
        advertised_min: min,
        served_min: min,
        max,
    }
}

/// Every API served, with its versions.
pub const SERVED: &[ApiRange] = &[
    // Produce v0-2 are advertised and refused, as Kafka 4 does
    // (KAFKA-18659: librdkafka before 2.11.1 turns compression off when
    // the range does not start at 0).
    ApiRange {
        key: ApiKey::Produce,
        advertised_min: 0,
        served_min: 3,
        max: 9,
    },
    range(ApiKey::Fetch, 4, 12),
    range(ApiKey::ListOffsets, 1, 7),
    range(ApiKey::Metadata, 0, 12),
    range(ApiKey::OffsetCommit, 2, 8),
    range(ApiKey::OffsetFetch, 1, 7),
    range(ApiKey::FindCoordinator, 0, 4),
    range(ApiKey::JoinGroup, 0, 5),
    range(ApiKey::Heartbeat, 0, 4),
    range(ApiKey::LeaveGroup, 0, 4),
    range(ApiKey::SyncGroup, 0, 5),
    range(ApiKey::DescribeGroups, 0, 5),
    range(ApiKey::ListGroups, 0, 4),
    range(ApiKey::ApiVersions, 0, 3),
    range(ApiKey::CreateTopics, 2, 5),
    range(ApiKey::DeleteTopics, 1, 4),
    range(ApiKey::DescribeConfigs, 1, 2),
    range(ApiKey::CreatePartitions, 0, 3),
    range(ApiKey::InitProducerId, 0, 4),
];

/// The versions of `key` this broker knows, if it serves the API.
pub fn served(key: ApiKey) -> Option<&'static ApiRange> {
    SERVED.iter().find(|r| r.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::Message;

    /// Every version served must be one the codec can decode and encode.
    #[test]
    fn every_served_version_is_known_to_the_codec() {
        for r in SERVED {
            let codec = r.key.valid_versions();
            assert!(
                codec.min <= r.served_min && r.max <= codec.max,
                "{:?}: served {}..={} but the codec knows {codec}",
                r.key,
                r.served_min,
                r.max
            );
            assert!(r.advertised_min <= r.served_min);
        }
        // Header versions exist for all of them.
        let _ = (RequestHeader::VERSIONS, ResponseHeader::VERSIONS);
    }
}
