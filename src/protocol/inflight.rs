//! The record kept for each request between forwarding it and seeing its response.
//!
//! Kafka answers the requests of one connection in order, so a FIFO of these entries is all it
//! takes to know, for each response, which API and version produced it, and whether it carries
//! broker addresses that must be rewritten.

use std::time::Instant;

use kafka_protocol::messages::ApiKey;

/// A forwarded request whose response has not been seen yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    pub correlation_id: i32,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub handling: ResponseHandling,
    /// False only for Produce with `acks=0`, which the broker never answers.
    pub expects_response: bool,
    /// When the gateway read the request, for the upstream latency metric.
    pub sent_at: Instant,
    /// A hash of the client id, for responses that are rewritten (which gateway node a client
    /// is sent to depends on it); 0 otherwise.
    pub client: u32,
}

impl InFlight {
    /// Whether the response carries record data, which is best decoded from shared `Bytes`
    /// (records are sliced, not copied) rather than from a borrowed slice of the read buffer.
    pub fn response_carries_records(&self) -> bool {
        matches!(self.api_key, ApiKey::Fetch | ApiKey::ShareFetch)
    }
}

/// What the gateway does with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseHandling {
    /// Forward the bytes as they are.
    Opaque,
    /// Decode to clamp the advertised API versions.
    ClampApiVersions,
    /// Decode to replace broker addresses with gateway addresses.
    RewriteAddresses,
    /// Read the error code of a SaslAuthenticate answer (did the broker accept the client?);
    /// the answer itself is forwarded unchanged.
    ObserveSaslOutcome,
    /// An EndTxn answer on a route that has moved to another cluster: where the destination
    /// never saw the transaction, its error is replaced by one the client goes on from (see
    /// `proxy::transactions`). On a route that never moved it is [`Self::Opaque`].
    EndTxnAfterCut,
    /// An answer that changes only on a route that has moved to another cluster: its topic
    /// ids become those clients were first shown (`rewrite::topic_ids`), or a transaction the
    /// destination never saw becomes abortable (`rewrite::transactions`). On a route that never
    /// moved it is [`Self::Opaque`].
    ChangedAfterCut,
}

impl ResponseHandling {
    pub fn decodes_response(self) -> bool {
        self != ResponseHandling::Opaque
    }
}
