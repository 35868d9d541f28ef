//! Responses that must change on their way to the client.
//!
//! Only two kinds of response are ever decoded: ApiVersions, clamped so no client negotiates a
//! version this module cannot decode, and the responses that carry broker addresses, whose
//! addresses become the route's own. A decoded response that needs no change is forwarded from
//! its original bytes; only a changed one is encoded again. Record data inside Produce and Fetch
//! responses is held as shared `Bytes` slices of the original frame, never copied on decode.

mod addresses;
mod api_versions;

use std::fmt;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse, MetadataResponse,
    ProduceResponse, ResponseHeader, ShareAcknowledgeResponse, ShareFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::protocol::{encode_response, InFlight, ResponseHandling, SIZE_PREFIX};
use crate::routing::{Route, Upstream};

pub use api_versions::clamped_max_version;

/// A response the gateway had to decode but could not.
#[derive(Debug)]
pub struct RewriteError {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub cause: anyhow::Error,
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line: the cause's own text may end in a newline.
        let cause = format!("{:#}", self.cause);
        write!(f, "cannot decode the broker's {:?} v{} response: {}", self.api_key, self.api_version, cause.trim_end())
    }
}

impl std::error::Error for RewriteError {}

/// Return the frame to send to the client for this response frame (size prefix included):
/// the same bytes when nothing needs to change. `upstream` is where the response came from.
pub fn rewrite_response(
    route: &Route,
    upstream: &Upstream,
    request: &InFlight,
    frame: Bytes,
) -> Result<Bytes, RewriteError> {
    let result = match request.handling {
        ResponseHandling::Opaque => return Ok(frame),
        ResponseHandling::ClampApiVersions => {
            if api_versions::is_error_response(&frame[SIZE_PREFIX..]) {
                // An error answer is encoded at v0 whatever was asked; it lists no API to clamp.
                return Ok(frame);
            }
            edit::<ApiVersionsResponse>(request, &frame, api_versions::clamp)
        }
        ResponseHandling::RewriteAddresses => rewrite_addresses(route, upstream, request, &frame),
    };
    result.map(|changed| changed.unwrap_or(frame)).map_err(|cause| RewriteError {
        api_key: request.api_key,
        api_version: request.api_version,
        cause,
    })
}

fn rewrite_addresses(
    route: &Route,
    upstream: &Upstream,
    request: &InFlight,
    frame: &Bytes,
) -> anyhow::Result<Option<Bytes>> {
    let rewriter = addresses::Rewriter { route, upstream, client: request.client };
    let version = request.api_version;
    match request.api_key {
        ApiKey::Metadata => edit::<MetadataResponse>(request, frame, |r| rewriter.metadata(r)),
        ApiKey::DescribeCluster => edit::<DescribeClusterResponse>(request, frame, |r| rewriter.describe_cluster(r)),
        ApiKey::FindCoordinator => {
            edit::<FindCoordinatorResponse>(request, frame, |r| rewriter.find_coordinator(version, r))
        }
        ApiKey::Produce => edit::<ProduceResponse>(request, frame, |r| rewriter.endpoints(&mut r.node_endpoints)),
        ApiKey::Fetch => edit::<FetchResponse>(request, frame, |r| rewriter.endpoints(&mut r.node_endpoints)),
        ApiKey::ShareFetch => edit::<ShareFetchResponse>(request, frame, |r| rewriter.endpoints(&mut r.node_endpoints)),
        ApiKey::ShareAcknowledge => {
            edit::<ShareAcknowledgeResponse>(request, frame, |r| rewriter.endpoints(&mut r.node_endpoints))
        }
        other => anyhow::bail!("{other:?} responses carry no broker address"),
    }
}

/// Decode a response frame as `R`, let `change` edit it, and encode it again if it reports a
/// change. `Ok(None)` means "forward the original bytes".
fn edit<R: Decodable + Encodable>(
    request: &InFlight,
    frame: &Bytes,
    change: impl FnOnce(&mut R) -> bool,
) -> anyhow::Result<Option<Bytes>> {
    let header_version = request.api_key.response_header_version(request.api_version);
    let mut body = frame.slice(SIZE_PREFIX..);
    let header = ResponseHeader::decode(&mut body, header_version)?;
    let mut response = R::decode(&mut body, request.api_version)?;
    if !body.is_empty() {
        anyhow::bail!("{} bytes left over after the message", body.len());
    }
    if !change(&mut response) {
        return Ok(None);
    }
    encode_response(&header, &response, request.api_key, request.api_version).map(Some)
}
