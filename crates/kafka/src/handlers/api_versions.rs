//! ApiVersions: the table of [`crate::versions::SERVED`].

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsResponse, ResponseKind};

use crate::versions::SERVED;

/// The answer: every API served, from its advertised low version.
pub(crate) fn answer() -> ApiVersionsResponse {
    let api_keys = SERVED
        .iter()
        .map(|r| {
            ApiVersion::default()
                .with_api_key(r.key as i16)
                .with_min_version(r.advertised_min)
                .with_max_version(r.max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}

/// The answer to an ApiVersions newer than served (KIP-511): encoded as
/// v0 by the caller, with UNSUPPORTED_VERSION and the ranges, so that the
/// client retries with a version it finds there.
pub(crate) fn unsupported() -> ResponseKind {
    ResponseKind::ApiVersions(answer().with_error_code(ResponseError::UnsupportedVersion.code()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;

    #[test]
    fn produce_is_advertised_from_zero_and_fetch_from_four() {
        let answer = answer();
        let find = |key: ApiKey| {
            answer
                .api_keys
                .iter()
                .find(|k| k.api_key == key as i16)
                .map(|k| (k.min_version, k.max_version))
        };
        assert_eq!(find(ApiKey::Produce), Some((0, 9)));
        assert_eq!(find(ApiKey::Fetch), Some((4, 12)));
        assert_eq!(find(ApiKey::InitProducerId), Some((0, 4)));
    }
}
