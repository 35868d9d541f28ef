//! The gateway's own requests on a broker connection of a swap route: its login as the
//! cluster user the secret store maps a client to (SASL PLAIN or SCRAM), and the ApiVersions
//! that tells which SaslAuthenticate version the broker speaks. On a passthrough connection
//! moved by a switchover's cut, the replay of the client's own PLAIN or OAUTHBEARER login.
//!
//! Used by a client's first login ([`super::swap::login`]) and again when its connection follows
//! the route to another cluster or domain, where the gateway logs in once more on the new broker
//! connection while the client's connection stays open. After a switchover's cut it also asks
//! the destination for a transactional producer's new producer id ([`super::transactions`]), on
//! a broker connection of its own, and a switchover's pre-flight asks each cluster for its topic
//! ids ([`super::topic_id_lookup`]).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, InitProducerIdRequest, InitProducerIdResponse, MetadataRequest,
    MetadataResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::connection::CloseReason;
use crate::config::{SaslMechanism, Secret};
use crate::protocol::scram::{ScramClient, ScramHash};
use crate::protocol::{encode_request, frame_at, FrameLimits, FrameStatus, InFlight, MIN_RESPONSE_BODY, SIZE_PREFIX};
use crate::routing::IdsByName;

/// Correlation ids of the gateway's own requests on the broker connection.
const GATEWAY_CORRELATION: i32 = 0x5357_0000;
/// The client id of the gateway's broker logins.
const CLIENT_ID: &str = "switchyard-swap";

/// A broker connection's halves while the gateway speaks on it, with the bytes read ahead.
pub struct BrokerSide<'l, R, W> {
    read: &'l mut R,
    write: &'l mut W,
    buf: BytesMut,
    limits: FrameLimits,
    /// The highest SaslAuthenticate version the broker offers.
    sasl_authenticate_max: i16,
}

impl<'l, R: AsyncRead + Unpin, W: AsyncWrite + Unpin> BrokerSide<'l, R, W> {
    pub fn new(read: &'l mut R, write: &'l mut W, max_frame_bytes: usize) -> Self {
        let limits = FrameLimits { min_body: MIN_RESPONSE_BODY, max_body: max_frame_bytes };
        BrokerSide { read, write, buf: BytesMut::new(), limits, sasl_authenticate_max: 2 }
    }

    /// Forward a client's request frame as it is.
    pub async fn forward(&mut self, frame: &[u8]) -> Result<(), CloseReason> {
        self.write.write_all(frame).await.map_err(CloseReason::UpstreamError)
    }

    /// The gateway's own ApiVersions, for the broker's SaslAuthenticate versions (when the
    /// client's own ApiVersions did not pass this way: mTLS clients, and re-dialled connections).
    pub async fn versions(&mut self) -> Result<(), String> {
        let answer: ApiVersionsResponse = self.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default()).await?;
        if let Some(api) = answer.api_keys.iter().find(|a| a.api_key == ApiKey::SaslAuthenticate as i16) {
            self.sasl_authenticate_max = api.max_version;
        }
        Ok(())
    }

    /// Log in to the broker as `user` with `mechanism`; the session's
    /// lifetime if the broker limits it.
    pub async fn login(
        &mut self,
        mechanism: SaslMechanism,
        user: &str,
        password: &Secret,
    ) -> Result<Option<Duration>, String> {
        let version = self.handshake(mechanism.kafka_name()).await?;
        match mechanism {
            SaslMechanism::Plain => {
                let mut token = Vec::with_capacity(user.len() + password.expose().len() + 2);
                token.push(0);
                token.extend_from_slice(user.as_bytes());
                token.push(0);
                token.extend_from_slice(password.expose().as_bytes());
                self.authenticate(version, token).await.map(|(_, lifetime)| lifetime)
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let hash = if mechanism == SaslMechanism::ScramSha256 { ScramHash::Sha256 } else { ScramHash::Sha512 };
                let mut scram = ScramClient::new(hash, user, password.expose());
                let (server_first, _) = self.authenticate(version, scram.client_first()).await?;
                let client_final = scram.client_final(&server_first).map_err(|e| e.to_string())?;
                let (server_final, lifetime) = self.authenticate(version, client_final).await?;
                scram.verify_server_final(&server_final).map_err(|e| e.to_string())?;
                Ok(lifetime)
            }
        }
    }

    /// The ids this broker's cluster gives `topics` (Metadata v12, which every broker since
    /// Kafka 3.1 answers); topics it does not have are left out.
    pub async fn topic_ids(&mut self, topics: &[String]) -> Result<IdsByName, String> {
        let wanted = topics
            .iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(t.clone())))));
        let request =
            MetadataRequest::default().with_topics(Some(wanted.collect())).with_allow_auto_topic_creation(false);
        let answer: MetadataResponse = self.call(ApiKey::Metadata, 12, &request).await?;
        let found = answer.topics.into_iter().filter(|t| t.error_code == 0 && !t.topic_id.is_nil());
        Ok(found.filter_map(|t| Some((t.name?.0.to_string(), t.topic_id))).collect())
    }

    /// Repeat a passthrough client's single-message login (`crate::protocol::sasl_login`) on
    /// this connection: the session's lifetime if the broker limits it. The token goes to the
    /// broker and nowhere else; errors carry the broker's code and message only.
    pub async fn replay(&mut self, mechanism: &str, token: &[u8]) -> Result<Option<Duration>, String> {
        let version = self.handshake(mechanism).await?;
        self.authenticate(version, token.to_vec()).await.map(|(_, lifetime)| lifetime)
    }

    /// The gateway's SaslHandshake for `mechanism`; the SaslAuthenticate version to use next.
    async fn handshake(&mut self, mechanism: &str) -> Result<i16, String> {
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.to_owned()));
        let answer: SaslHandshakeResponse = self.call(ApiKey::SaslHandshake, 1, &handshake).await?;
        if answer.error_code != 0 {
            let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(format!(
                "SaslHandshake {mechanism}: error {} (the broker offers {offered:?})",
                answer.error_code
            ));
        }
        Ok(self.sasl_authenticate_max.clamp(0, 2))
    }

    /// The gateway's own InitProducerId for `transactional_id`, as a transactional producer
    /// initialising from scratch sends it: the broker's error code, producer id and epoch.
    /// Version 4 is answered by every broker since Kafka 2.7.
    pub async fn init_producer_id(
        &mut self,
        transactional_id: StrBytes,
        transaction_timeout_ms: i32,
    ) -> Result<(i16, i64, i16), String> {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(transactional_id)))
            .with_transaction_timeout_ms(transaction_timeout_ms)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1);
        let answer: InitProducerIdResponse = self.call(ApiKey::InitProducerId, 4, &request).await?;
        Ok((answer.error_code, answer.producer_id.0, answer.producer_epoch))
    }

    /// One SaslAuthenticate round with the broker: its token and session lifetime, or why it
    /// refused.
    async fn authenticate(&mut self, version: i16, token: Vec<u8>) -> Result<(Bytes, Option<Duration>), String> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let answer: SaslAuthenticateResponse = self.call(ApiKey::SaslAuthenticate, version, &request).await?;
        if answer.error_code != 0 {
            let message = answer.error_message.map(|m| m.to_string()).unwrap_or_default();
            return Err(format!("SaslAuthenticate: error {}: {message}", answer.error_code));
        }
        let lifetime = u64::try_from(answer.session_lifetime_ms).ok().filter(|ms| *ms > 0).map(Duration::from_millis);
        Ok((answer.auth_bytes, lifetime))
    }

    /// Send the gateway's own request to the broker and decode its answer.
    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        message: &Req,
    ) -> Result<Resp, String> {
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(GATEWAY_CORRELATION + api_key as i32)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let frame = encode_request(&header, message, api_key, version)
            .map_err(|e| format!("cannot encode {api_key:?}: {e}"))?;
        self.write.write_all(&frame).await.map_err(|e| format!("broker connection: {e}"))?;
        let answer = self.frame().await.map_err(|e| e.to_string())?;
        let mut body = &answer[SIZE_PREFIX..];
        let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version))
            .map_err(|e| format!("cannot decode the broker's {api_key:?} answer: {e}"))?;
        if header.correlation_id != GATEWAY_CORRELATION + api_key as i32 {
            return Err(format!(
                "the broker answered correlation id {} to the gateway's {api_key:?}",
                header.correlation_id
            ));
        }
        Resp::decode(&mut body, version).map_err(|e| format!("cannot decode the broker's {api_key:?} answer: {e}"))
    }

    /// Remember the broker's SaslAuthenticate versions, for the gateway's own login.
    pub fn note_versions(&mut self, request: &InFlight, mut body: &[u8]) {
        let header_version = request.api_key.response_header_version(request.api_version);
        if ResponseHeader::decode(&mut body, header_version).is_err() {
            return;
        }
        if let Ok(answer) = ApiVersionsResponse::decode(&mut body, request.api_version) {
            if let Some(api) = answer.api_keys.iter().find(|a| a.api_key == ApiKey::SaslAuthenticate as i16) {
                self.sasl_authenticate_max = api.max_version;
            }
        }
    }

    /// The broker's next complete response frame.
    pub async fn frame(&mut self) -> Result<Bytes, CloseReason> {
        loop {
            match frame_at(&self.buf, self.limits) {
                Ok(FrameStatus::Complete(len)) => return Ok(self.buf.split_to(len).freeze()),
                Ok(FrameStatus::Incomplete { .. }) => {}
                Err(e) => return Err(CloseReason::BadResponseFrame(e)),
            }
            match self.read.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return Err(CloseReason::UpstreamClosed),
                Ok(0) => return Err(CloseReason::UpstreamClosedMidFrame { received: self.buf.len() }),
                Ok(_) => {}
                Err(e) => return Err(CloseReason::UpstreamError(e)),
            }
        }
    }
}
