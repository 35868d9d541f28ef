//! Clamping the ApiVersions answer to what the gateway can handle, and answering an
//! ApiVersions the gateway cannot read.
//!
//! A client picks, for each API, the highest version both sides support. For every API whose
//! responses the gateway decodes, that must be a version the gateway's codec knows, or the
//! response could not be rewritten and a real broker address would leak: the ranges come from
//! [`super::rules`]. APIs unknown to the gateway are removed, since a request using one would be
//! refused.

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::ResponseError;

use super::rules::gateway_versions;
use crate::protocol::{encode_response, InFlight};
use kafka_protocol::protocol::buf::ByteBuf;

/// The versions of `api_key` the gateway lets a client use, given what the broker offers;
/// `None` when they share none.
pub fn clamped_versions(api_key: ApiKey, broker_min: i16, broker_max: i16) -> Option<(i16, i16)> {
    let gateway = gateway_versions(api_key);
    let (min, max) = (broker_min.max(gateway.min), broker_max.min(gateway.max));
    (min <= max).then_some((min, max))
}

/// The answer a broker gives an ApiVersions request of a version it does not know: error
/// `UNSUPPORTED_VERSION` in the v0 format, listing the ApiVersions versions it does know, so the
/// client retries with one of them.
pub fn unsupported_version_answer(correlation_id: i32) -> Bytes {
    let range = ApiKey::ApiVersions.valid_versions();
    let body =
        ApiVersionsResponse::default().with_error_code(ResponseError::UnsupportedVersion.code()).with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_min_version(range.min)
                .with_max_version(range.max),
        ]);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    encode_response(&header, &body, ApiKey::ApiVersions, 0).expect("a v0 ApiVersions answer always encodes")
}

/// The error code is the first field of every version; an error answer has nothing to clamp.
pub(super) fn is_error_response(body: &[u8]) -> bool {
    // Response header v0 for ApiVersions: correlation id (4 bytes), then error_code.
    body.get(4..6).is_some_and(|code| code != [0, 0])
}

/// Returns whether anything changed.
/// The clamp as the rewrite table's edit. An error answer is encoded at v0 whatever was asked
/// and lists no API to clamp: it passes as it is.
pub(super) const CLAMP: super::Edit =
    super::Edit::new(|_, request, body| clamp_body(request, body), |_, request, body| clamp_body(request, body));

fn clamp_body<B: ByteBuf>(request: &InFlight, body: B) -> anyhow::Result<Option<Bytes>> {
    if is_error_response(body.chunk()) {
        return Ok(None);
    }
    super::edit::<ApiVersionsResponse, _>(request, body, clamp)
}

pub(super) fn clamp(response: &mut ApiVersionsResponse) -> bool {
    let before: Vec<(i16, i16, i16)> = response.api_keys.iter().map(versions).collect();
    response.api_keys.retain_mut(|api| {
        let Ok(key) = ApiKey::try_from(api.api_key) else { return false };
        let Some((min, max)) = clamped_versions(key, api.min_version, api.max_version) else { return false };
        (api.min_version, api.max_version) = (min, max);
        true
    });
    response.api_keys.iter().map(versions).ne(before)
}

fn versions(api: &ApiVersion) -> (i16, i16, i16) {
    (api.api_key, api.min_version, api.max_version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Decodable;

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
            api(ApiKey::DescribeConfigs as i16, 0, 4),
            api(ApiKey::DescribeCluster as i16, 90, 99),
            api(30_000, 0, 1),
        ]);
        assert!(clamp(&mut response));
        let versions: Vec<(i16, i16, i16)> = response.api_keys.iter().map(versions).collect();
        assert_eq!(
            versions,
            vec![
                (ApiKey::Metadata as i16, 0, ApiKey::Metadata.valid_versions().max),
                (ApiKey::Fetch as i16, 4, ApiKey::Fetch.valid_versions().max),
                // Group requests are decoded (to keep clients out of the gateway cluster's group).
                (ApiKey::JoinGroup as i16, 0, ApiKey::JoinGroup.valid_versions().max),
                (ApiKey::DescribeQuorum as i16, 0, 2),
                // v0 is not in the codec: a client must use v1 or later.
                (ApiKey::DescribeConfigs as i16, 1, 4),
                // DescribeCluster 90-99 shares no version with the codec: dropped.
            ]
        );
    }

    #[test]
    fn answers_an_unknown_api_versions_version_as_a_broker_does() {
        let frame = unsupported_version_answer(77);
        let mut body = frame.slice(4..);
        let header = ResponseHeader::decode(&mut body, 0).unwrap();
        let answer = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(header.correlation_id, 77);
        assert_eq!(answer.error_code, ResponseError::UnsupportedVersion.code());
        assert_eq!(versions(&answer.api_keys[0]), (ApiKey::ApiVersions as i16, 0, 4));
        assert!(body.is_empty());
    }

    #[test]
    fn leaves_a_compatible_answer_alone() {
        let mut response = ApiVersionsResponse::default().with_api_keys(vec![api(ApiKey::Metadata as i16, 0, 12)]);
        assert!(!clamp(&mut response));
    }
}
