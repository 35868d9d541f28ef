//! Responses that must change on their way to the client.
//!
//! Only the responses listed in `rules.rs` are ever decoded: ApiVersions, clamped so no client
//! negotiates a version this module cannot decode, and the responses that carry broker or
//! controller addresses, whose addresses become the route's own or are hidden; and, on a route
//! a live switchover moved, the answers about a transaction the new cluster never saw
//! (`transactions.rs`). A decoded
//! response that needs no change is forwarded from its original bytes; only a changed one is
//! encoded again. The caller chooses what the body is decoded from: a borrowed slice of the read
//! buffer for small responses, so an unchanged one stays in place, or shared `Bytes` for
//! responses that carry record data (Fetch), so records are sliced, never copied, on decode.

mod addresses;
mod api_versions;
mod configs;
mod groups;
mod rules;
mod topic_ids;
mod transactions;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, SaslAuthenticateResponse};
use kafka_protocol::protocol::buf::ByteBuf;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::protocol::{encode_response, InFlight, ResponseHandling, SIZE_PREFIX};
use crate::routing::{Route, Upstream};

pub use api_versions::{clamped_versions, unsupported_version_answer};
pub use rules::{classify, handling, handling_on_route, Classified};
pub use topic_ids::translate_request;
pub use transactions::{end_txn_after_cut, end_txn_answer, EndTxnAfterCut};

/// A response the gateway had to decode but could not.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode the broker's {api_key:?} v{api_version} response: {}", one_line(cause))]
pub struct RewriteError {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub cause: anyhow::Error,
}

/// The cause's text on one line: it may end in a newline.
fn one_line(cause: &anyhow::Error) -> String {
    format!("{cause:#}").trim_end().to_string()
}

/// The frame (size prefix included) to send to the client in place of the response whose body
/// (the frame after its size prefix) is `body`, or `None` to send the response as it is.
/// `upstream` is where the response came from. What is done is the rewrite table's
/// (`rules.rs`) edit for the request's API.
pub fn rewrite_response(
    route: &Route,
    upstream: &Upstream,
    request: &InFlight,
    body: ResponseBody<'_>,
) -> Result<Option<Bytes>, RewriteError> {
    let Some(edit) = rules::edit_for(request) else { return Ok(None) };
    let rewriter = addresses::Rewriter { route, upstream, client: request.client };
    let result = match body {
        ResponseBody::Slice(body) => (edit.slice)(&rewriter, request, body),
        ResponseBody::Shared(body) => (edit.shared)(&rewriter, request, body),
    };
    result.map_err(|cause| RewriteError { api_key: request.api_key, api_version: request.api_version, cause })
}

/// What to send the client in place of an answer that carries records.
pub enum RecordsAnswer {
    /// The frame as it came.
    Unchanged,
    /// A frame encoded anew.
    Encoded(Bytes),
    /// The frame's own bytes with a few replaced, as pieces to write in order.
    Spliced(Vec<Bytes>),
}

/// [`rewrite_response`] for an answer that carries records (`frame`, size prefix included):
/// where only topic ids change (a route that has moved), the records are not copied.
pub fn rewrite_records_response(
    route: &Route,
    upstream: &Upstream,
    request: &InFlight,
    frame: &Bytes,
) -> Result<RecordsAnswer, RewriteError> {
    if request.api_key == ApiKey::Fetch && request.handling != ResponseHandling::Opaque {
        return fetch_answer(route, upstream, request, frame).map_err(|cause| RewriteError {
            api_key: request.api_key,
            api_version: request.api_version,
            cause,
        });
    }
    let rewritten = rewrite_response(route, upstream, request, ResponseBody::Shared(frame.slice(SIZE_PREFIX..)))?;
    Ok(rewritten.map_or(RecordsAnswer::Unchanged, RecordsAnswer::Encoded))
}

/// A Fetch answer, decoded once: as it came, or with its topic ids spliced in, when its leader
/// endpoints need no change; otherwise (endpoints to rewrite, or a frame whose layout did not
/// line up) edited as the rewrite table says and encoded anew.
fn fetch_answer(
    route: &Route,
    upstream: &Upstream,
    request: &InFlight,
    frame: &Bytes,
) -> anyhow::Result<RecordsAnswer> {
    let mut body = frame.slice(SIZE_PREFIX..);
    let header = ResponseHeader::decode(&mut body, request.api_key.response_header_version(request.api_version))?;
    let mut response = FetchResponse::decode(&mut body, request.api_version)?;
    if body.has_remaining() {
        anyhow::bail!("{} bytes left over after the message", body.remaining());
    }
    if response.node_endpoints.is_empty() {
        match topic_ids::fetch_splices(request.api_version, frame, &response, |id| topic_ids::presented(route, id)) {
            Ok(Some(pieces)) => return Ok(RecordsAnswer::Spliced(pieces)),
            Ok(None) => return Ok(RecordsAnswer::Unchanged),
            Err(e) => {
                tracing::debug!(route = %route.name, upstream = %upstream.domain, "Fetch answer encoded anew: {e:#}");
            }
        }
    }
    let rewriter = addresses::Rewriter { route, upstream, client: request.client };
    if !rules::fetch(&rewriter, &mut response) {
        return Ok(RecordsAnswer::Unchanged);
    }
    encode_response(&header, &response, request.api_key, request.api_version).map(RecordsAnswer::Encoded)
}

/// A response body (the frame after its size prefix), as the caller holds it.
pub enum ResponseBody<'a> {
    /// A slice of the read buffer: small answers, which stay in place when unchanged.
    Slice(&'a [u8]),
    /// Shared bytes: answers that carry records, which are sliced, never copied, on decode.
    Shared(Bytes),
}

/// A rewrite function, for each kind of body.
type EditFn<B> = fn(&addresses::Rewriter<'_>, &InFlight, B) -> anyhow::Result<Option<Bytes>>;

/// One API's rewrite, made for both kinds of body by [`edits!`].
struct Edit {
    slice: for<'b> fn(&addresses::Rewriter<'_>, &InFlight, &'b [u8]) -> anyhow::Result<Option<Bytes>>,
    shared: EditFn<Bytes>,
}

impl Edit {
    const fn new(
        slice: for<'b> fn(&addresses::Rewriter<'_>, &InFlight, &'b [u8]) -> anyhow::Result<Option<Bytes>>,
        shared: EditFn<Bytes>,
    ) -> Edit {
        Edit { slice, shared }
    }
}

/// The rewrite that decodes a response as `$response` and lets `$change` (given the rewriter,
/// the request and the response) edit it, for both kinds of body.
macro_rules! edits {
    ($response:ty, $change:expr) => {
        super::Edit::new(
            |rewriter, request, body| super::edit::<$response, _>(request, body, |r| ($change)(rewriter, request, r)),
            |rewriter, request, body| super::edit::<$response, _>(request, body, |r| ($change)(rewriter, request, r)),
        )
    };
}
use edits;

/// Decode a response body as `R`, let `change` edit it, and encode the frame again if it
/// reports a change. `Ok(None)` means "forward the original bytes".
fn edit<R: Decodable + Encodable, B: ByteBuf>(
    request: &InFlight,
    mut body: B,
    change: impl FnOnce(&mut R) -> bool,
) -> anyhow::Result<Option<Bytes>> {
    let header_version = request.api_key.response_header_version(request.api_version);
    let header = ResponseHeader::decode(&mut body, header_version)?;
    let mut response = R::decode(&mut body, request.api_version)?;
    if body.has_remaining() {
        anyhow::bail!("{} bytes left over after the message", body.remaining());
    }
    if !change(&mut response) {
        return Ok(None);
    }
    encode_response(&header, &response, request.api_key, request.api_version).map(Some)
}

/// What the gateway keeps of a SaslAuthenticate answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslOutcome {
    /// 0 when the broker accepted the client's credentials.
    pub error_code: i16,
    /// The client's session lifetime (KIP-368), in milliseconds; 0: unlimited.
    pub session_lifetime_ms: i64,
}

/// The outcome of a SaslAuthenticate answer (`body`: the frame after its size prefix) to
/// `request`. Only the error code and the session lifetime are kept; the rest (a SCRAM server
/// message) is dropped with the decoded copy.
pub fn sasl_outcome(request: &InFlight, mut body: &[u8]) -> Result<SaslOutcome, RewriteError> {
    let body = &mut body;
    let decode = |body: &mut &[u8]| -> anyhow::Result<SaslOutcome> {
        ResponseHeader::decode(body, request.api_key.response_header_version(request.api_version))?;
        let answer = SaslAuthenticateResponse::decode(body, request.api_version)?;
        Ok(SaslOutcome { error_code: answer.error_code, session_lifetime_ms: answer.session_lifetime_ms })
    };
    decode(body).map_err(|cause| RewriteError { api_key: request.api_key, api_version: request.api_version, cause })
}
