//! Clamping the ApiVersions answer to what the gateway can handle.
//!
//! A client picks, for each API, the highest version both sides support. For every API whose
//! responses the gateway decodes, that must be a version the gateway's codec knows, or the
//! response could not be rewritten and a real broker address would leak. APIs unknown to the
//! gateway are removed, since a request using one would be refused. DescribeQuorum is held at
//! v1: v2 adds the controllers' listener addresses, which clients cannot reach through a route.

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use crate::protocol::ResponseHandling;

/// Highest DescribeQuorum version without controller endpoints.
const DESCRIBE_QUORUM_MAX: i16 = 1;

/// The highest version of `api_key` the gateway lets a client use, given what the broker offers.
pub fn clamped_max_version(api_key: ApiKey, broker_max: i16) -> i16 {
    // Produce and Fetch are decoded only from some version on; any decoded version counts.
    let decoded = ResponseHandling::for_request(api_key, i16::MAX).decodes_response();
    let gateway_max = match api_key {
        ApiKey::DescribeQuorum => DESCRIBE_QUORUM_MAX,
        _ if decoded => api_key.valid_versions().max,
        _ => i16::MAX,
    };
    broker_max.min(gateway_max)
}

/// The error code is the first field of every version; an error answer has nothing to clamp.
pub(super) fn is_error_response(body: &[u8]) -> bool {
    // Response header v0 for ApiVersions: correlation id (4 bytes), then error_code.
    body.get(4..6).is_some_and(|code| code != [0, 0])
}

/// Returns whether anything changed.
pub(super) fn clamp(response: &mut ApiVersionsResponse) -> bool {
    let before = response.api_keys.len();
    response.api_keys.retain(|api| ApiKey::try_from(api.api_key).is_ok());
    let mut changed = response.api_keys.len() != before;
    for api in &mut response.api_keys {
        let key = ApiKey::try_from(api.api_key).expect("unknown keys were removed above");
        let max = clamped_max_version(key, api.max_version);
        if max != api.max_version {
            api.max_version = max;
            changed = true;
        }
    }
    let before = response.api_keys.len();
    response.api_keys.retain(|api| api.min_version <= api.max_version);
    changed || response.api_keys.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    fn api(key: i16, min: i16, max: i16) -> ApiVersion {
        ApiVersion::default().with_api_key(key).with_min_version(min).with_max_version(max)
    }

    #[test]
    fn clamps_decoded_apis_and_drops_unknown_ones() {
        let mut response = ApiVersionsResponse::default().with_api_keys(vec![
            api(ApiKey::Metadata as i16, 0, 99),
            api(ApiKey::Fetch as i16, 4, 99),
            api(ApiKey::JoinGroup as i16, 0, 99),
            api(ApiKey::DescribeQuorum as i16, 0, 2),
            api(30_000, 0, 1),
        ]);
        assert!(clamp(&mut response));
        let versions: Vec<(i16, i16)> = response.api_keys.iter().map(|a| (a.api_key, a.max_version)).collect();
        assert_eq!(
            versions,
            vec![
                (ApiKey::Metadata as i16, ApiKey::Metadata.valid_versions().max),
                (ApiKey::Fetch as i16, ApiKey::Fetch.valid_versions().max),
                (ApiKey::JoinGroup as i16, 99),
                (ApiKey::DescribeQuorum as i16, 1),
            ]
        );
    }

    #[test]
    fn leaves_a_compatible_answer_alone() {
        let mut response = ApiVersionsResponse::default().with_api_keys(vec![api(ApiKey::Metadata as i16, 0, 12)]);
        assert!(!clamp(&mut response));
    }
}
