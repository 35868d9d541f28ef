//! Cluster membership and broadcast through a Kafka consumer group, with librdkafka.
//!
//! Every node subscribes a consumer to the internal topic `_switchyard-cluster-<id>` in the
//! group `switchyard-cluster-<id>`, with a client id that announces it
//! (`switchyard|<node id>|<host>|<rack or ->`). The group coordinator then is the membership
//! service: a background thread keeps polling so the node stays in the group, and another reads
//! the group's member list every second. A node stopped gracefully closes its consumer and
//! leaves at once; a node killed drops out after `sessionTimeoutMs`.
//!
//! The same topic carries commands: a node that completes a switchover writes it there, and every
//! node reads the topic from its end (by assignment, outside the group) and applies commands
//! from other nodes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Member, Membership};
use crate::config::{BrokerSecurity, ClusterSettings, HostPort, SwitchoverRequest};

const CLIENT_ID_PREFIX: &str = "switchyard";
const LIST_EVERY: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(200);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A switchover one node completed, for the others to apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverCommand {
    pub origin: String,
    pub route: String,
    pub request: SwitchoverRequest,
}

/// This node's place in the cluster group; leaves the group when stopped or dropped.
pub struct ClusterGroup {
    topic: String,
    origin: String,
    producer: BaseProducer,
    stop: Arc<AtomicBool>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl ClusterGroup {
    /// Join the group of `membership`'s cluster through `bootstrap`; commands from other nodes
    /// arrive on `commands`.
    pub async fn join(
        settings: &ClusterSettings,
        bootstrap: &[HostPort],
        security: &BrokerSecurity,
        membership: Arc<Membership>,
        commands: mpsc::UnboundedSender<SwitchoverCommand>,
    ) -> anyhow::Result<ClusterGroup> {
        // Every client of the group reaches the listener as its security says.
        let servers = crate::tls::librdkafka::client_config(bootstrap, security)?;
        let id = &membership.cluster_id;
        let topic = format!("_switchyard-cluster-{id}");
        let group = format!("switchyard-cluster-{id}");
        create_topic(&servers, &topic).await?;

        let me = &membership.me;
        let member_consumer: Arc<BaseConsumer> = Arc::new(
            servers
                .clone()
                .set("group.id", &group)
                .set("client.id", encode(me))
                .set("session.timeout.ms", settings.session_timeout.as_millis().to_string())
                .set("heartbeat.interval.ms", (settings.session_timeout.as_millis() / 6).max(100).to_string())
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "latest")
                .create()?,
        );
        member_consumer.subscribe(&[&topic])?;
        let command_consumer: BaseConsumer = servers
            .clone()
            .set("group.id", format!("{group}-commands-{}", me.node_id))
            .set("enable.auto.commit", "false")
            .create()?;
        let mut partition = TopicPartitionList::new();
        partition.add_partition_offset(&topic, 0, Offset::End)?;
        command_consumer.assign(&partition)?;
        let producer: BaseProducer = servers.clone().set("acks", "all").create()?;

        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            spawn("cluster-heartbeat", stay_in_group(Arc::clone(&member_consumer), Arc::clone(&stop))),
            spawn("cluster-members", list_members(member_consumer, group, Arc::clone(&membership), Arc::clone(&stop))),
            spawn("cluster-commands", read_commands(command_consumer, me.node_id.clone(), commands, Arc::clone(&stop))),
        ];
        tracing::info!(cluster = %id, node = %me.node_id, %topic, "joined the gateway cluster");
        Ok(ClusterGroup { topic, origin: me.node_id.clone(), producer, stop, threads: std::sync::Mutex::new(threads) })
    }

    /// Tell every other node to apply a switchover this node completed.
    pub fn broadcast(&self, route: &str, request: &SwitchoverRequest) -> anyhow::Result<()> {
        let command =
            SwitchoverCommand { origin: self.origin.clone(), route: route.to_string(), request: request.clone() };
        let payload = serde_json::to_vec(&command)?;
        self.producer
            .send(BaseRecord::<(), _>::to(&self.topic).payload(&payload))
            .map_err(|(e, _)| anyhow::anyhow!("cannot publish the switchover to the cluster: {e}"))?;
        self.producer.flush(REQUEST_TIMEOUT)?;
        Ok(())
    }

    /// Leave the group now, rather than after the session timeout; idempotent.
    pub fn leave(&self) {
        self.stop.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for ClusterGroup {
    fn drop(&mut self) {
        self.leave();
    }
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new().name(name.to_string()).spawn(work).expect("a thread can be started")
}

async fn create_topic(servers: &ClientConfig, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = servers.create()?;
    // One partition: commands are few and must stay in order. -1: the cluster's default factor.
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1));
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    for result in admin.create_topics([&new], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => anyhow::bail!("cannot create the cluster topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Keep polling so the consumer stays in the group; close it (leaving the group) when stopped.
fn stay_in_group(consumer: Arc<BaseConsumer>, stop: Arc<AtomicBool>) -> impl FnOnce() {
    move || {
        while !stop.load(Ordering::Acquire) {
            // Records land here on whichever node owns the partition; commands are read apart.
            let _ = consumer.poll(POLL);
        }
        consumer.unsubscribe();
    }
}

fn list_members(
    consumer: Arc<BaseConsumer>,
    group: String,
    membership: Arc<Membership>,
    stop: Arc<AtomicBool>,
) -> impl FnOnce() {
    move || {
        while !stop.load(Ordering::Acquire) {
            match consumer.fetch_group_list(Some(&group), REQUEST_TIMEOUT) {
                Ok(list) => {
                    let members = list.groups().iter().flat_map(|g| g.members()).filter_map(|m| decode(m.client_id()));
                    membership.update(members.collect());
                }
                Err(e) => tracing::warn!(%group, "cannot list the gateway cluster's members: {e}"),
            }
            std::thread::sleep(LIST_EVERY);
        }
    }
}

fn read_commands(
    consumer: BaseConsumer,
    me: String,
    commands: mpsc::UnboundedSender<SwitchoverCommand>,
    stop: Arc<AtomicBool>,
) -> impl FnOnce() {
    move || {
        while !stop.load(Ordering::Acquire) {
            let Some(Ok(message)) = consumer.poll(POLL) else { continue };
            match message.payload().map(serde_json::from_slice::<SwitchoverCommand>) {
                Some(Ok(command)) if command.origin != me => {
                    let _ = commands.send(command);
                }
                Some(Err(e)) => tracing::warn!("ignoring an unreadable cluster command: {e}"),
                _ => {}
            }
        }
    }
}

/// A member's client id: `switchyard|<node id>|<host>|<rack or ->`.
fn encode(member: &Member) -> String {
    format!("{CLIENT_ID_PREFIX}|{}|{}|{}", member.node_id, member.host, member.rack.as_deref().unwrap_or("-"))
}

fn decode(client_id: &str) -> Option<Member> {
    let mut parts = client_id.split('|');
    if parts.next()? != CLIENT_ID_PREFIX {
        return None;
    }
    let (node_id, host, rack) = (parts.next()?, parts.next()?, parts.next()?);
    let rack = (rack != "-").then(|| rack.to_string());
    Some(Member { node_id: node_id.to_string(), host: host.to_string(), rack })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_round_trip() {
        let member = Member { node_id: "gw-1".into(), host: "127.0.0.2".into(), rack: Some("rack-a".into()) };
        assert_eq!(decode(&encode(&member)), Some(member));
        let rackless = Member { node_id: "gw-2".into(), host: "gw2.example.com".into(), rack: None };
        assert_eq!(decode(&encode(&rackless)), Some(rackless));
        assert_eq!(decode("rdkafka"), None);
    }
}
