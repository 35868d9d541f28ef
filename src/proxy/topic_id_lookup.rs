//! A cluster's topic ids, asked for on a broker connection of the gateway's own.
//!
//! A live switchover shows clients the source's topic ids after the cut (`routing::TopicIds`);
//! its pre-flight needs both clusters' ids for the topics it checks, and the gateway's Kafka
//! client for metadata (librdkafka) does not expose them. So the gateway dials the cluster's
//! bootstrap as a client connection's broker leg is dialled (TLS as configured), logs in with
//! its own credentials for that listener if it has SASL, and sends one Metadata request.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::broker_login::BrokerSide;
use super::stream::Duplex;
use super::upstream;
use crate::routing::{IdsByName, Target, TopicIdLookup, Upstream};

/// How long one lookup may take in all (as long as pre-flight waits for a cluster's metadata).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks on a new broker connection.
pub struct OwnConnection {
    /// How long dialling the broker may take (the gateway's `connectTimeoutMs`).
    pub connect_timeout: Duration,
    /// The largest answer read (the gateway's frame limit).
    pub max_frame_bytes: usize,
}

impl TopicIdLookup for OwnConnection {
    fn topic_ids<'a>(
        &'a self,
        upstream: &'a Upstream,
        topics: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<IdsByName, String>> + Send + 'a>> {
        Box::pin(async move {
            match tokio::time::timeout(LOOKUP_TIMEOUT, self.ask(upstream, topics)).await {
                Ok(answer) => answer,
                Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
            }
        })
    }
}

impl OwnConnection {
    async fn ask(&self, upstream: &Upstream, topics: &[String]) -> Result<IdsByName, String> {
        let (stream, _) =
            upstream::connect(upstream, Target::Bootstrap, self.connect_timeout).await.map_err(|e| e.to_string())?;
        let (mut read, mut write) = stream.into_halves();
        let mut broker = BrokerSide::new(&mut read, &mut write, self.max_frame_bytes);
        if let Some(login) = &upstream.login {
            broker.versions().await?;
            broker.login(login.mechanism, &login.username, &login.password).await?;
        }
        broker.topic_ids(topics).await
    }
}
