//! The one table of responses the gateway decodes: which API, from which version, and why.
//!
//! Everything else about decoding follows from this table: which requests are noted as needing
//! their answer decoded ([`handling`]), which versions a client may negotiate (the ApiVersions
//! clamp in [`gateway_versions`]), and which versions are refused because the codec could not
//! read their answer, and what is done to each decoded answer (the rewrite dispatch). Adding an
//! address-carrying API is one row here, naming the function that rewrites it.
//!
//! A request at a version the gateway cannot decode never reaches the broker: its answer could
//! not be rewritten and a real address would leak. A client that respects ApiVersions never
//! sends one. ApiVersions itself is the exception Kafka defines: a broker answers a version it
//! does not know with `UNSUPPORTED_VERSION` and its own range, so the client can retry lower,
//! and so does the gateway ([`Classified::UnsupportedApiVersions`]).

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;

use kafka_protocol::messages::{
    ConsumerGroupHeartbeatResponse, DeleteTopicsResponse, DescribeClusterResponse, DescribeConfigsResponse,
    DescribeQuorumResponse, DescribeTopicPartitionsResponse, FetchResponse, FindCoordinatorResponse, MetadataResponse,
    ProduceResponse, ShareAcknowledgeResponse, ShareFetchResponse, TxnOffsetCommitResponse,
};

use super::{addresses, api_versions, edits, groups, topic_ids, transactions, Edit};
use crate::protocol::{internal, sasl, InFlight, RequestError, ResponseHandling};
use crate::routing::Route;

/// One API whose responses the gateway decodes.
struct Rule {
    api_key: ApiKey,
    /// The first version whose response needs decoding; earlier ones pass through as bytes.
    since: i16,
    handling: ResponseHandling,
    /// What is done to the decoded answer; `None`: it is only read, never changed.
    edit: Option<Edit>,
}

const fn rule(api_key: ApiKey, since: i16, handling: ResponseHandling, edit: Option<Edit>) -> Rule {
    Rule { api_key, since, handling, edit }
}

/// An address-carrying answer, rewritten by `edit`.
const fn addresses(api_key: ApiKey, since: i16, edit: Edit) -> Rule {
    rule(api_key, since, ResponseHandling::RewriteAddresses, Some(edit))
}

/// Every decoded response. The reasons, one per row:
static RULES: &[Rule] = &[
    // Clamped so clients negotiate only versions the gateway can decode.
    rule(ApiKey::ApiVersions, 0, ResponseHandling::ClampApiVersions, Some(api_versions::CLAMP)),
    // Broker lists.
    addresses(ApiKey::Metadata, 0, edits!(MetadataResponse, |rw: &addresses::Rewriter<'_>, _, r| rw.metadata(r))),
    addresses(
        ApiKey::DescribeCluster,
        0,
        edits!(DescribeClusterResponse, |rw: &addresses::Rewriter<'_>, _, r| rw.describe_cluster(r)),
    ),
    // The coordinator's address.
    addresses(
        ApiKey::FindCoordinator,
        0,
        edits!(FindCoordinatorResponse, |rw: &addresses::Rewriter<'_>, q: &InFlight, r| rw
            .find_coordinator(q.api_version, r)),
    ),
    // Leader endpoints on NOT_LEADER errors (KIP-951); on a route that has moved to another
    // cluster, also a transaction the destination never saw made abortable (`transactions`).
    addresses(
        ApiKey::Produce,
        10,
        edits!(ProduceResponse, |rw: &addresses::Rewriter<'_>, q: &InFlight, r: &mut ProduceResponse| rw
            .endpoints(&mut r.node_endpoints)
            | transactions::abortable_produce(rw.route, q.api_version, r)),
    ),
    // (Fetch answers are decoded once, in `rewrite_records_response`, which applies `fetch`.)
    addresses(ApiKey::Fetch, 16, edits!(FetchResponse, |rw: &addresses::Rewriter<'_>, _, r| fetch(rw, r))),
    addresses(
        ApiKey::ShareFetch,
        0,
        edits!(ShareFetchResponse, |rw: &addresses::Rewriter<'_>, _, r: &mut ShareFetchResponse| rw
            .endpoints(&mut r.node_endpoints)),
    ),
    addresses(
        ApiKey::ShareAcknowledge,
        0,
        edits!(ShareAcknowledgeResponse, |rw: &addresses::Rewriter<'_>, _, r: &mut ShareAcknowledgeResponse| rw
            .endpoints(&mut r.node_endpoints)),
    ),
    // v2 lists every controller's listeners, which are removed.
    addresses(
        ApiKey::DescribeQuorum,
        2,
        edits!(DescribeQuorumResponse, |_, _, r| addresses::hide_controller_listeners(r)),
    ),
    // Broker configs name listeners and controllers (`advertised.listeners`, `listeners`,
    // `controller.quorum.voters`, ...).
    addresses(
        ApiKey::DescribeConfigs,
        0,
        edits!(DescribeConfigsResponse, |rw: &addresses::Rewriter<'_>, _, r| rw.describe_configs(r)),
    ),
    // Not rewritten: its error code says whether the broker accepted the client's SASL
    // credentials, for the connection's audit event (`protocol::sasl`).
    rule(ApiKey::SaslAuthenticate, 0, ResponseHandling::ObserveSaslOutcome, None),
    // Only on a route that has moved to another cluster (the pump keeps it opaque elsewhere):
    // the destination never saw a transaction begun before the cut, and the answer that says
    // so stops the client; the proxy answers in its place (`transactions`,
    // `proxy::transactions`).
    rule(ApiKey::EndTxn, 0, ResponseHandling::EndTxnAfterCut, None),
    // Only on a route that has moved to another cluster: offsets committed in a transaction the
    // destination never saw, refused in a way that stops the client, are made abortable
    // (`transactions`); from the first version whose clients abort on that.
    after_cut(
        ApiKey::TxnOffsetCommit,
        transactions::TXN_OFFSET_COMMIT_ABORTABLE_SINCE,
        edits!(TxnOffsetCommitResponse, |_, _, r| transactions::abortable_txn_offset_commit(r)),
    ),
    // Only on a route that has moved to another cluster: answers that carry topic ids, which
    // become those clients were first shown (`topic_ids`; Metadata and Fetch, decoded for
    // their addresses, are translated in their own rows). A heartbeat for a group the
    // destination never saw is made one its member joins again after (`groups`).
    after_cut(
        ApiKey::ConsumerGroupHeartbeat,
        0,
        edits!(
            ConsumerGroupHeartbeatResponse,
            |rw: &addresses::Rewriter<'_>, _, r: &mut ConsumerGroupHeartbeatResponse| {
                let rejoins = groups::rejoin_unknown_group(&mut *r);
                topic_ids::consumer_group_heartbeat(rw.route, r) | rejoins
            }
        ),
    ),
    after_cut(
        ApiKey::DeleteTopics,
        6,
        edits!(DeleteTopicsResponse, |rw: &addresses::Rewriter<'_>, _, r| topic_ids::delete_topics(rw.route, r)),
    ),
    after_cut(
        ApiKey::DescribeTopicPartitions,
        0,
        edits!(DescribeTopicPartitionsResponse, |rw: &addresses::Rewriter<'_>, _, r| {
            topic_ids::describe_topic_partitions(rw.route, r)
        }),
    ),
];

/// A Fetch answer's change: its leader endpoints (KIP-951), and on a route that has moved the
/// topic ids clients know. Returns whether it changed.
pub(super) fn fetch(rewriter: &addresses::Rewriter<'_>, response: &mut FetchResponse) -> bool {
    rewriter.endpoints(&mut response.node_endpoints) | topic_ids::fetch(rewriter.route, response)
}

/// An answer changed by `edit` on a route that has moved, and passed as bytes elsewhere.
const fn after_cut(api_key: ApiKey, since: i16, edit: Edit) -> Rule {
    rule(api_key, since, ResponseHandling::ChangedAfterCut, Some(edit))
}

/// How the answer to `request` is handled on `route`: as classified, but on a route that has
/// moved an answer that carries topic ids is decoded, and on one that never moved an answer
/// changed only after a cut passes as bytes.
pub fn handling_on_route(route: &Route, request: &InFlight) -> ResponseHandling {
    let moved = route.moves() > 0;
    match request.handling {
        ResponseHandling::ChangedAfterCut if !moved => ResponseHandling::Opaque,
        ResponseHandling::Opaque if moved && topic_ids::in_response(request.api_key, request.api_version) => {
            ResponseHandling::ChangedAfterCut
        }
        handling => handling,
    }
}

/// What to do to the answer of `request`; `None` when it passes unchanged.
pub(super) fn edit_for(request: &InFlight) -> Option<&'static Edit> {
    if request.handling == ResponseHandling::Opaque {
        return None;
    }
    rule_for(request.api_key)?.edit.as_ref()
}

fn rule_for(api_key: ApiKey) -> Option<&'static Rule> {
    RULES.iter().find(|rule| rule.api_key == api_key)
}

/// What the gateway does with a request, by its API and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// Forward it; its answer is handled so.
    Forward(ResponseHandling),
    /// An ApiVersions the gateway cannot decode: answer it with `UNSUPPORTED_VERSION` itself.
    UnsupportedApiVersions,
    /// Refuse it: its answer would have to be decoded, at a version the codec does not know.
    Refuse(RequestError),
}

/// Classify a request of `api_key` at `version`.
pub fn classify(api_key: ApiKey, version: i16) -> Classified {
    if api_key == ApiKey::SaslHandshake && version < sasl::MIN_HANDSHAKE_VERSION {
        // Raw SASL tokens would follow, without Kafka framing: refused, never misread.
        return Classified::Refuse(RequestError::LegacySaslHandshake);
    }
    let Some(rule) = rule_for(api_key) else {
        return Classified::Forward(ResponseHandling::Opaque);
    };
    if (0..rule.since).contains(&version) {
        return Classified::Forward(ResponseHandling::Opaque);
    }
    let range = api_key.valid_versions();
    if (range.min..=range.max).contains(&version) {
        return Classified::Forward(rule.handling);
    }
    if api_key == ApiKey::ApiVersions {
        return Classified::UnsupportedApiVersions;
    }
    Classified::Refuse(RequestError::UndecodableVersion { api_key, version, min: range.min, max: range.max })
}

/// How a response to a request of `api_key` at `version` is handled. Only for versions
/// [`classify`] forwards.
pub fn handling(api_key: ApiKey, version: i16) -> ResponseHandling {
    match classify(api_key, version) {
        Classified::Forward(handling) => handling,
        _ => ResponseHandling::Opaque,
    }
}

/// The versions of `api_key` the gateway lets clients negotiate: those it can decode, for an
/// API in the table from its first decoded version on, and for an API whose requests name a
/// group (`protocol::internal`); any version otherwise.
///
/// SaslHandshake keeps the broker's range although v0 is refused ([`classify`]): librdkafka
/// (2.0 at least) takes a range without v0 to mean the broker has no SASL handshake at all and
/// gives up; it sends v1 whenever SaslAuthenticate is advertised, as every client since Kafka
/// 1.0 does.
pub fn gateway_versions(api_key: ApiKey) -> VersionRange {
    match rule_for(api_key) {
        // Versions before `since` pass as bytes, so only the top of the range is bounded.
        Some(rule) if rule.since > 0 => {
            VersionRange { min: 0, max: api_key.valid_versions().max.min(topic_ids::version_cap(api_key)) }
        }
        Some(_) => api_key.valid_versions(),
        // Their requests are decoded to keep clients out of the gateway cluster's groups.
        None if internal::names_group(api_key) => api_key.valid_versions(),
        None => VersionRange { min: 0, max: i16::MAX },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_names_a_distinct_api_with_a_decodable_first_version() {
        for (i, rule) in RULES.iter().enumerate() {
            assert!(RULES[i + 1..].iter().all(|other| other.api_key != rule.api_key), "{:?} twice", rule.api_key);
            assert!(rule.since <= rule.api_key.valid_versions().max, "{:?}", rule.api_key);
            assert_ne!(rule.handling, ResponseHandling::Opaque);
        }
    }

    #[test]
    fn every_rule_that_changes_answers_names_its_edit() {
        for rule in RULES {
            let changes = matches!(
                rule.handling,
                ResponseHandling::RewriteAddresses
                    | ResponseHandling::ClampApiVersions
                    | ResponseHandling::ChangedAfterCut
            );
            assert_eq!(rule.edit.is_some(), changes, "{:?}", rule.api_key);
        }
    }

    #[test]
    fn classifies_by_version_gate_and_codec_range() {
        use ResponseHandling::{ClampApiVersions, ObserveSaslOutcome, Opaque, RewriteAddresses};
        assert_eq!(classify(ApiKey::Produce, 9), Classified::Forward(Opaque));
        assert_eq!(classify(ApiKey::Produce, 10), Classified::Forward(RewriteAddresses));
        assert_eq!(classify(ApiKey::DescribeQuorum, 1), Classified::Forward(Opaque));
        assert_eq!(classify(ApiKey::DescribeQuorum, 2), Classified::Forward(RewriteAddresses));
        assert_eq!(classify(ApiKey::JoinGroup, 99), Classified::Forward(Opaque));
        assert_eq!(classify(ApiKey::ApiVersions, 3), Classified::Forward(ClampApiVersions));
        assert_eq!(classify(ApiKey::ApiVersions, 5), Classified::UnsupportedApiVersions);
        assert_eq!(classify(ApiKey::ApiVersions, -1), Classified::UnsupportedApiVersions);
        assert!(matches!(classify(ApiKey::Metadata, 99), Classified::Refuse(RequestError::UndecodableVersion { .. })));
        assert!(matches!(classify(ApiKey::DescribeConfigs, 0), Classified::Refuse(_)));
        assert_eq!(classify(ApiKey::SaslHandshake, 0), Classified::Refuse(RequestError::LegacySaslHandshake));
        assert_eq!(classify(ApiKey::SaslHandshake, 1), Classified::Forward(Opaque));
        assert_eq!(classify(ApiKey::SaslAuthenticate, 2), Classified::Forward(ObserveSaslOutcome));
        // Versions whose clients do not know TRANSACTION_ABORTABLE pass as bytes even after a cut.
        assert_eq!(classify(ApiKey::TxnOffsetCommit, 3), Classified::Forward(Opaque));
        assert_eq!(classify(ApiKey::TxnOffsetCommit, 4), Classified::Forward(ResponseHandling::ChangedAfterCut));
        assert!(matches!(classify(ApiKey::SaslAuthenticate, 9), Classified::Refuse(_)));
    }

    #[test]
    fn produce_is_offered_only_in_versions_that_name_topics() {
        // v13 names topics by id, which differ between the clusters of a switchover.
        assert_eq!(super::super::clamped_versions(ApiKey::Produce, 3, 13), Some((3, 12)));
        assert_eq!(super::super::clamped_versions(ApiKey::Fetch, 4, 18), Some((4, 18)));
    }

    #[test]
    fn sasl_handshake_keeps_the_brokers_range_and_sasl_authenticate_is_clamped_to_the_codec() {
        assert_eq!(super::super::clamped_versions(ApiKey::SaslHandshake, 0, 1), Some((0, 1)));
        let codec = ApiKey::SaslAuthenticate.valid_versions().max;
        assert_eq!(super::super::clamped_versions(ApiKey::SaslAuthenticate, 0, 99), Some((0, codec)));
    }
}
