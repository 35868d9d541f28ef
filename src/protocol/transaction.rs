//! What the gateway reads of a transactional producer's requests, so that it can carry the
//! producer across a live switchover's cut (`docs/switchover.md`, "Transactional producers").
//!
//! The destination cluster never saw a transaction that began on the source: its coordinator
//! answers `INVALID_PRODUCER_ID_MAPPING`, which the Java 4.x client treats as fatal. To answer
//! for it, the gateway needs the transactional id and the outcome an EndTxn asked for, and the
//! transaction timeout the client asked for when it initialised. Only EndTxn and InitProducerId
//! requests are decoded, with `kafka-protocol`: a producer sends one per transaction and one per
//! life, never per record.

use kafka_protocol::messages::{ApiKey, EndTxnRequest, InitProducerIdRequest, RequestHeader};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::RequestError;

/// The coordinator does not know the transactional id, or it maps to another producer id.
pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
/// The client must abort its transaction and may then go on (KIP-890).
pub const TRANSACTION_ABORTABLE: i16 = 120;
/// The coordinator is not there yet: the client looks it up again and retries.
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;

/// The first EndTxn version whose answer carries the producer id and epoch to go on with
/// (transaction version 2, KIP-890): the only way a new producer id reaches such a client.
pub const END_TXN_WITH_PRODUCER_ID: i16 = 5;

/// Kafka's default `transaction.timeout.ms`, for a producer whose InitProducerId the gateway
/// did not see.
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: i32 = 60_000;

/// An EndTxn request, as far as the gateway answers for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTxn {
    pub correlation_id: i32,
    pub transactional_id: StrBytes,
    /// Commit (true) or abort.
    pub committed: bool,
}

/// Read an EndTxn request (`body`: the frame after its size prefix) at `version`.
pub fn end_txn(version: i16, mut body: &[u8]) -> Result<EndTxn, RequestError> {
    let body = &mut body;
    let decode = |body: &mut &[u8]| -> anyhow::Result<EndTxn> {
        let header = RequestHeader::decode(body, ApiKey::EndTxn.request_header_version(version))?;
        let request = EndTxnRequest::decode(body, version)?;
        Ok(EndTxn {
            correlation_id: header.correlation_id,
            transactional_id: request.transactional_id.0,
            committed: request.committed,
        })
    };
    decode(body).map_err(|cause| undecodable(ApiKey::EndTxn, version, &cause))
}

/// The transaction timeout of a transactional producer's InitProducerId request (`body`: the
/// frame after its size prefix); `None` for an idempotent producer's.
pub fn transaction_timeout(version: i16, mut body: &[u8]) -> Result<Option<i32>, RequestError> {
    let body = &mut body;
    let decode = |body: &mut &[u8]| -> anyhow::Result<Option<i32>> {
        RequestHeader::decode(body, ApiKey::InitProducerId.request_header_version(version))?;
        let request = InitProducerIdRequest::decode(body, version)?;
        Ok(request.transactional_id.map(|_| request.transaction_timeout_ms))
    };
    decode(body).map_err(|cause| undecodable(ApiKey::InitProducerId, version, &cause))
}

fn undecodable(api_key: ApiKey, version: i16, cause: &anyhow::Error) -> RequestError {
    RequestError::Undecodable { api_key, version, cause: format!("{cause:#}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::request_body;
    use kafka_protocol::messages::TransactionalId;

    #[test]
    fn reads_an_end_txn_request_of_every_version() {
        for version in 0..=5 {
            let request = EndTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("orders")))
                .with_committed(version % 2 == 0);
            let read = end_txn(version, &request_body(ApiKey::EndTxn, version, 7, &request)).unwrap();
            assert_eq!(read.correlation_id, 7);
            assert_eq!(read.transactional_id.as_str(), "orders");
            assert_eq!(read.committed, version % 2 == 0, "v{version}");
        }
    }

    #[test]
    fn reads_the_transaction_timeout_of_transactional_producers_only() {
        let transactional = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("orders"))))
            .with_transaction_timeout_ms(30_000);
        let body = request_body(ApiKey::InitProducerId, 5, 1, &transactional);
        assert_eq!(transaction_timeout(5, &body), Ok(Some(30_000)));
        let idempotent = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(-1);
        assert_eq!(transaction_timeout(4, &request_body(ApiKey::InitProducerId, 4, 1, &idempotent)), Ok(None));
        assert!(transaction_timeout(4, &body[..12]).is_err());
    }
}
