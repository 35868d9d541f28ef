//! A transactional producer's connection across a live switchover's cut.
//!
//! The destination cluster never saw the transactions begun on the source. Where its answer
//! would stop a Java 4.x client for good (`INVALID_PRODUCER_ID_MAPPING`), the gateway answers
//! in a way the client goes on from (`rewrite::end_txn_after_cut` decides): a commit becomes
//! abortable, and an abort is answered with success and a producer id the gateway asked the
//! destination for, with the client's transactional id, on a broker connection of its own (the
//! client's connection carries only the client's requests, so answers keep their order). The
//! client takes that producer id as it takes a new one after an epoch overflow, and its next
//! transaction runs on the destination. See `docs/switchover.md`, "Transactional producers".
//!
//! Per connection this keeps the EndTxn requests forwarded after a cut until their answers
//! come, and the transaction timeout from the client's InitProducerId, so the destination
//! aborts a stuck transaction when the client would expect it to.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;

use super::connection::CloseReason;
use crate::protocol::transaction::{self, EndTxn, DEFAULT_TRANSACTION_TIMEOUT_MS};
use crate::protocol::{InFlight, RequestError, ResponseHandling};
use crate::rewrite::{end_txn_after_cut, end_txn_answer, EndTxnAfterCut};
use crate::routing::{Route, Upstream};

/// How long the gateway waits for the destination's producer id before answering the abort
/// with a retriable error instead.
const PRODUCER_ID_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker's error code, producer id and epoch for an InitProducerId.
pub type ProducerIdAnswer = (i16, i64, i16);

/// Asks the broker of `upstream` this connection is pumped to for a producer id for a
/// transactional id, with a transaction timeout, on a new broker connection.
pub type ProducerIdCall<'a> = dyn Fn(Arc<Upstream>, StrBytes, i32) -> Pin<Box<dyn Future<Output = Result<ProducerIdAnswer, String>> + Send + 'a>>
    + Send
    + Sync
    + 'a;

/// What one connection keeps of its client's transactions; both directions share it.
#[derive(Default)]
pub(super) struct Transactions {
    /// EndTxn requests forwarded on a route that has moved, oldest first: answers come in order.
    ending: Mutex<VecDeque<EndTxn>>,
    /// The transaction timeout the client initialised with; 0 until seen.
    timeout_ms: AtomicI32,
}

impl Transactions {
    /// Note what the answer to `request` (`body`: the frame after its size prefix) will need.
    /// Cheap for every API but InitProducerId and EndTxn.
    pub fn note(&self, route: &Route, request: &mut InFlight, body: &[u8]) -> Result<(), RequestError> {
        if request.api_key == ApiKey::InitProducerId {
            // Best effort, as the request is forwarded either way: one the codec cannot read (a
            // client newer than the gateway) leaves the default timeout.
            if let Ok(Some(timeout)) = transaction::transaction_timeout(request.api_version, body) {
                self.timeout_ms.store(timeout, Ordering::Relaxed);
                route.saw_transactional_producer();
            }
        }
        if request.handling != ResponseHandling::EndTxnAfterCut {
            return Ok(());
        }
        if route.moves() == 0 {
            // The route never changed clusters: nothing to answer for.
            request.handling = ResponseHandling::Opaque;
            return Ok(());
        }
        let end = transaction::end_txn(request.api_version, body)?;
        self.ending.lock().unwrap_or_else(PoisonError::into_inner).push_back(end);
        Ok(())
    }

    /// The frame to send in place of the EndTxn answer `body` to `request`, which came from
    /// `upstream`; `None` to pass it as it is. `producer_ids` asks the destination for a
    /// producer id (none: the connection cannot open broker connections of its own).
    pub async fn answer(
        &self,
        route: &Route,
        request: &InFlight,
        body: &[u8],
        upstream: &Arc<Upstream>,
        producer_ids: Option<&ProducerIdCall<'_>>,
    ) -> Result<Option<Bytes>, CloseReason> {
        let Some(end) = self.ending.lock().unwrap_or_else(PoisonError::into_inner).pop_front() else {
            return Ok(None);
        };
        if end.correlation_id != request.correlation_id {
            return Ok(None);
        }
        match end_txn_after_cut(request, end.committed, body).map_err(CloseReason::BadResponse)? {
            EndTxnAfterCut::Pass => Ok(None),
            EndTxnAfterCut::Replace(answer) => {
                let how = if end.committed { "a commit answered as abortable" } else { "an abort answered as done" };
                tracing::info!(route = %route.name, transactional_id = %end.transactional_id,
                    "{how}: the new cluster never saw the transaction (begun before the switchover)");
                Ok(Some(answer))
            }
            EndTxnAfterCut::NewProducerId => {
                let Some(producer_ids) = producer_ids else { return Ok(None) };
                let timeout = match self.timeout_ms.load(Ordering::Relaxed) {
                    0 => DEFAULT_TRANSACTION_TIMEOUT_MS,
                    seen => seen,
                };
                let asked = producer_ids(Arc::clone(upstream), end.transactional_id.clone(), timeout);
                let Some(producer) =
                    producer_for_abort(route, &end, tokio::time::timeout(PRODUCER_ID_TIMEOUT, asked).await)
                else {
                    return Ok(None);
                };
                end_txn_answer(request, body, producer).map(Some).map_err(CloseReason::BadResponse)
            }
        }
    }
}

/// What the abort of `end` is answered with, from the destination's answer to the gateway's
/// InitProducerId: its producer id, a retriable error (the client retries the abort), or
/// `None` when it failed for good (the broker's own answer then passes, and the client stops
/// as it would without the gateway).
fn producer_for_abort(
    route: &Route,
    end: &EndTxn,
    answer: Result<Result<ProducerIdAnswer, String>, tokio::time::error::Elapsed>,
) -> Option<Result<(i64, i16), i16>> {
    let (route, id) = (&route.name, &end.transactional_id);
    match answer {
        Ok(Ok((0, producer_id, epoch))) => {
            tracing::info!(route = %route, transactional_id = %id, producer_id, epoch,
                "an abort the new cluster never saw (begun before the switchover) answered with its new producer id");
            Some(Ok((producer_id, epoch)))
        }
        Ok(Ok((code, ..))) if retriable(code) => Some(Err(code)),
        Err(_) => Some(Err(transaction::COORDINATOR_NOT_AVAILABLE)),
        Ok(Ok((code, ..))) => {
            tracing::warn!(route = %route, transactional_id = %id,
                "the new cluster refused a producer id for a transaction begun before the switchover (error {code}); the client sees its error");
            None
        }
        Ok(Err(e)) => {
            tracing::warn!(route = %route, transactional_id = %id,
                "could not ask the new cluster for a producer id for a transaction begun before the switchover: {e}; the client sees its error");
            None
        }
    }
}

/// InitProducerId errors after which asking again can succeed: the coordinator is loading,
/// moving or busy finishing an earlier transaction, or the request timed out.
fn retriable(code: i16) -> bool {
    const REQUEST_TIMED_OUT: i16 = 7;
    const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    const NOT_COORDINATOR: i16 = 16;
    const CONCURRENT_TRANSACTIONS: i16 = 51;
    matches!(
        code,
        REQUEST_TIMED_OUT
            | COORDINATOR_LOAD_IN_PROGRESS
            | transaction::COORDINATOR_NOT_AVAILABLE
            | NOT_COORDINATOR
            | CONCURRENT_TRANSACTIONS
    )
}
