//! The answers that carry a transactional producer across a live switchover's cut.
//!
//! The destination cluster never saw a transaction that began on the source, nor the
//! transactional id's producer id: its brokers answer `INVALID_PRODUCER_ID_MAPPING`, which the
//! Java 4.x client treats as fatal everywhere. On a route that has moved to another cluster
//! (and only there), that code is turned into what the client goes on from: on Produce and on
//! an EndTxn that commits, `TRANSACTION_ABORTABLE`, so the client aborts and resends the
//! transaction; an EndTxn that aborts is answered with success and a producer id of the
//! destination's, which the proxy gets for the client (`proxy::transactions`). The records of a
//! transaction aborted so were never acknowledged; the source aborts its half at
//! `transaction.timeout.ms`. A TxnOffsetCommit (a consume-transform-produce application's
//! `sendOffsetsToTransaction`) the destination's group coordinator refuses so is made
//! abortable too: the Java client (3.9 and 4.x) treats its `INVALID_PRODUCER_ID_MAPPING` as an
//! unexpected, fatal error; then it aborts, and its abort is answered as above.
//!
//! Older clients (Produce before v12, EndTxn before v5: Java 3.x) treat
//! `INVALID_PRODUCER_ID_MAPPING` as abortable themselves and get a new producer id by their own
//! InitProducerId (an epoch bump, KIP-360): their Produce and commit answers pass unchanged.
//! Only their abort is answered with success: the Java 3.9 client that sees its abort fail
//! bumps its epoch but keeps the aborted transaction's partitions as added, so its next
//! transaction never adds them on the destination and fails for good (`INVALID_TXN_STATE`).

use bytes::Bytes;
use kafka_protocol::messages::{EndTxnResponse, ProduceResponse, TxnOffsetCommitResponse};
use kafka_protocol::protocol::StrBytes;

use super::RewriteError;
use crate::protocol::transaction::{
    COORDINATOR_NOT_AVAILABLE, END_TXN_WITH_PRODUCER_ID, INVALID_PRODUCER_ID_MAPPING, TRANSACTION_ABORTABLE,
};
use crate::protocol::InFlight;
use crate::routing::Route;

/// Produce v12 and later come from clients (Java 4.0 and later) for which
/// `INVALID_PRODUCER_ID_MAPPING` is fatal.
const PRODUCE_FATAL_MAPPING_SINCE: i16 = 12;

/// What the client reads beside the replaced code.
const WHY: &str =
    "the transaction began on the cluster this gateway route used before a switchover: abort it and retry";

/// On a route that has moved, make the partitions the destination answered
/// `INVALID_PRODUCER_ID_MAPPING` abortable. Returns whether anything changed.
pub(super) fn abortable_produce(route: &Route, version: i16, response: &mut ProduceResponse) -> bool {
    if version < PRODUCE_FATAL_MAPPING_SINCE || route.moves() == 0 {
        return false;
    }
    let mut changed = false;
    for partition in response.responses.iter_mut().flat_map(|topic| topic.partition_responses.iter_mut()) {
        if partition.error_code == INVALID_PRODUCER_ID_MAPPING {
            partition.error_code = TRANSACTION_ABORTABLE;
            partition.error_message = Some(StrBytes::from_static_str(WHY));
            changed = true;
        }
    }
    changed
}

/// TxnOffsetCommit v4 and later come from clients (Java 3.8 and later) that abort on
/// `TRANSACTION_ABORTABLE` (KIP-890); earlier ones pass unchanged.
pub(super) const TXN_OFFSET_COMMIT_ABORTABLE_SINCE: i16 = 4;

/// On a route that has moved (the only place this row's answers are decoded), make the
/// partitions whose offsets the destination refused with `INVALID_PRODUCER_ID_MAPPING`
/// abortable. Returns whether anything changed.
pub(super) fn abortable_txn_offset_commit(response: &mut TxnOffsetCommitResponse) -> bool {
    let mut changed = false;
    for partition in response.topics.iter_mut().flat_map(|topic| topic.partitions.iter_mut()) {
        if partition.error_code == INVALID_PRODUCER_ID_MAPPING {
            partition.error_code = TRANSACTION_ABORTABLE;
            changed = true;
        }
    }
    changed
}

/// What becomes of an EndTxn answer on a route that has moved.
#[derive(Debug, PartialEq, Eq)]
pub enum EndTxnAfterCut {
    /// The destination knew the transaction (or the client's version handles the error):
    /// passed as it is.
    Pass,
    /// This frame goes instead: for a commit the destination never saw,
    /// `TRANSACTION_ABORTABLE`; for an abort before v5, success.
    Replace(Bytes),
    /// An abort the destination never saw: the gateway answers it with a producer id of the
    /// destination's ([`end_txn_answer`]).
    NewProducerId,
}

/// Decide on the EndTxn answer `body` (the frame after its size prefix) to `request`, which
/// asked to commit (`committed`) or abort.
pub fn end_txn_after_cut(request: &InFlight, committed: bool, body: &[u8]) -> Result<EndTxnAfterCut, RewriteError> {
    let producer_id_in_answer = request.api_version >= END_TXN_WITH_PRODUCER_ID;
    let mut unknown = false;
    let replaced = super::edit::<EndTxnResponse, _>(request, body, |response| {
        unknown = response.error_code == INVALID_PRODUCER_ID_MAPPING;
        match (unknown, committed, producer_id_in_answer) {
            (false, ..) | (true, true, false) | (true, false, true) => false,
            (true, true, true) => {
                response.error_code = TRANSACTION_ABORTABLE;
                true
            }
            (true, false, false) => {
                response.error_code = 0;
                true
            }
        }
    })
    .map_err(|cause| rewrite_error(request, cause))?;
    Ok(match replaced {
        Some(frame) => EndTxnAfterCut::Replace(frame),
        None if unknown && producer_id_in_answer && !committed => EndTxnAfterCut::NewProducerId,
        None => EndTxnAfterCut::Pass,
    })
}

/// The answer to an abort the destination never saw, in place of `body`: success, going on
/// with `producer` (id and epoch) the destination gave; or, when it could not give one yet
/// (`Err`: its retriable error), `COORDINATOR_NOT_AVAILABLE`, so the client looks its
/// coordinator up again and retries the abort.
pub fn end_txn_answer(
    request: &InFlight,
    body: &[u8],
    producer: Result<(i64, i16), i16>,
) -> Result<Bytes, RewriteError> {
    let answer = super::edit::<EndTxnResponse, _>(request, body, |response| {
        match producer {
            Ok((id, epoch)) => {
                response.error_code = 0;
                response.producer_id = id.into();
                response.producer_epoch = epoch;
            }
            Err(_) => response.error_code = COORDINATOR_NOT_AVAILABLE,
        }
        true
    })
    .map_err(|cause| rewrite_error(request, cause))?;
    answer.ok_or_else(|| rewrite_error(request, anyhow::anyhow!("the EndTxn answer was not re-encoded")))
}

fn rewrite_error(request: &InFlight, cause: anyhow::Error) -> RewriteError {
    RewriteError { api_key: request.api_key, api_version: request.api_version, cause }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ResponseHandling, SIZE_PREFIX};
    use kafka_protocol::messages::{ApiKey, ResponseHeader};
    use kafka_protocol::protocol::Decodable;

    fn end_txn_request(version: i16) -> InFlight {
        InFlight {
            correlation_id: 3,
            api_key: ApiKey::EndTxn,
            api_version: version,
            handling: ResponseHandling::EndTxnAfterCut,
            expects_response: true,
            sent_at: std::time::Instant::now(),
            client: 0,
        }
    }

    fn answer(version: i16, error_code: i16) -> Vec<u8> {
        let header = ResponseHeader::default().with_correlation_id(3);
        let body = EndTxnResponse::default().with_error_code(error_code);
        crate::protocol::encode_response(&header, &body, ApiKey::EndTxn, version).unwrap()[SIZE_PREFIX..].to_vec()
    }

    fn error_code(version: i16, decision: EndTxnAfterCut) -> i16 {
        let EndTxnAfterCut::Replace(frame) = decision else { panic!("not replaced: {decision:?}") };
        let mut body = &frame[SIZE_PREFIX..];
        ResponseHeader::decode(&mut body, ApiKey::EndTxn.response_header_version(version)).unwrap();
        EndTxnResponse::decode(&mut body, version).unwrap().error_code
    }

    #[test]
    fn end_txn_answers_by_version_and_outcome() {
        let decide = |version, committed, code| {
            end_txn_after_cut(&end_txn_request(version), committed, &answer(version, code)).unwrap()
        };
        for version in 0..=5 {
            for committed in [true, false] {
                assert_eq!(decide(version, committed, 0), EndTxnAfterCut::Pass, "v{version} {committed}");
                assert_eq!(decide(version, committed, 48), EndTxnAfterCut::Pass, "v{version} INVALID_TXN_STATE");
            }
        }
        assert_eq!(error_code(5, decide(5, true, INVALID_PRODUCER_ID_MAPPING)), TRANSACTION_ABORTABLE);
        assert_eq!(decide(5, false, INVALID_PRODUCER_ID_MAPPING), EndTxnAfterCut::NewProducerId);
        assert_eq!(decide(4, true, INVALID_PRODUCER_ID_MAPPING), EndTxnAfterCut::Pass);
        assert_eq!(error_code(4, decide(4, false, INVALID_PRODUCER_ID_MAPPING)), 0);
    }

    #[test]
    fn an_abort_is_answered_with_the_producer_id_or_a_retriable_error() {
        let request = end_txn_request(5);
        let body = answer(5, INVALID_PRODUCER_ID_MAPPING);
        let decode = |frame: Bytes| {
            let mut body = &frame[SIZE_PREFIX..];
            let header = ResponseHeader::decode(&mut body, 1).unwrap();
            (header.correlation_id, EndTxnResponse::decode(&mut body, 5).unwrap())
        };
        let (correlation_id, done) = decode(end_txn_answer(&request, &body, Ok((7, 3))).unwrap());
        assert_eq!((correlation_id, done.error_code, done.producer_id.0, done.producer_epoch), (3, 0, 7, 3));
        let (_, retry) = decode(end_txn_answer(&request, &body, Err(14)).unwrap());
        assert_eq!(retry.error_code, COORDINATOR_NOT_AVAILABLE);
    }
}
