//! A passthrough client's SASL login across a switchover's cut.
//!
//! A client that logged in with SASL itself is logged in to the source cluster only. At the cut
//! the gateway repeats its PLAIN or OAUTHBEARER login (the token the source accepted, kept by
//! `protocol::sasl::Exchange`) on the new broker connection to the destination, before any of
//! the client's requests go there, so the connection follows the route like any other. A
//! login that cannot be repeated (SCRAM, a token over `MAX_KEPT_TOKEN`) still closes the
//! connection at the cut, and the client logs in again.
//!
//! The two clusters may disagree about session lifetimes (KIP-368). The client re-authenticates
//! on the schedule the source gave it; a destination that does not limit sessions answers a
//! second SaslHandshake with `ILLEGAL_SASL_STATE`, which clients take for an authentication
//! failure. So where the replay's answer carried no session lifetime, the gateway answers the
//! client's re-authentications itself: accepted only when they repeat the replayed login byte for
//! byte (for PLAIN: the same user and password), with no session lifetime, so the client stops
//! re-authenticating; anything else is refused and the connection closed. Where the destination
//! limits sessions, re-authentications go to it like any other request.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::broker_login::BrokerSide;
use super::swap::{authenticate_answer, decode_authenticate, decode_handshake, handshake_answer};
use crate::protocol::sasl::{Exchange, MIN_HANDSHAKE_VERSION};
use crate::protocol::sasl_login::ReplayableLogin;
use crate::protocol::{InFlight, RequestError};

/// What a client is told when its re-authentication does not repeat the replayed login.
const REFUSED: &str =
    "Authentication failed: a re-authentication after a switchover must repeat the connection's login";

/// Log the client in again with `login` on a new broker connection: the session's lifetime if
/// that broker limits sessions.
pub async fn replay<R, W>(
    login: &ReplayableLogin,
    read: &mut R,
    write: &mut W,
    max_frame_bytes: usize,
) -> Result<Option<Duration>, String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut broker = BrokerSide::new(read, write, max_frame_bytes);
    broker.versions().await?;
    broker.replay(login.mechanism(), login.token()).await
}

/// The gateway's answer to a step (SaslHandshake or SaslAuthenticate) of a client's
/// re-authentication after a replay on a cluster that does not limit sessions, and whether the
/// connection closes after it (refused). The step is noted in `exchange` as a broker's would be.
pub fn answer_reauthentication(
    exchange: &mut Exchange,
    request: &InFlight,
    body: &[u8],
) -> Result<(Bytes, bool), RequestError> {
    let (answer, accepted) = match request.api_key {
        ApiKey::SaslHandshake => {
            if request.api_version < MIN_HANDSHAKE_VERSION {
                return Err(RequestError::LegacySaslHandshake);
            }
            let mechanism = decode_handshake(request, body)?;
            let accepted = exchange.repeats_mechanism(&mechanism);
            exchange.request(request.api_key, request.api_version, body);
            if !accepted {
                exchange.answer(ResponseError::UnsupportedSaslMechanism.code());
            }
            let offered = if accepted { vec![StrBytes::from_string(mechanism)] } else { Vec::new() };
            (handshake_answer(request, accepted, offered)?, accepted)
        }
        _ => {
            let accepted = exchange.repeats_token(&decode_authenticate(request, body)?);
            exchange.request(request.api_key, request.api_version, body);
            let code = if accepted { 0 } else { ResponseError::SaslAuthenticationFailed.code() };
            exchange.answer(code);
            let outcome = if accepted { Ok(Vec::new()) } else { Err(REFUSED.to_owned()) };
            // No session lifetime: the cluster behind does not limit sessions, nor does the gateway.
            (authenticate_answer(request, outcome, None)?, accepted)
        }
    };
    Ok((answer, !accepted))
}
