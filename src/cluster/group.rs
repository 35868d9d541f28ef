//! Cluster membership and broadcast through a Kafka consumer group, with librdkafka.
//!
//! Every node subscribes a consumer to the internal topic `_switchyard-cluster-<id>` in the
//! group `switchyard-cluster-<id>`, with a client id that announces it
//! (`switchyard|<node id>|<host>|<rack or ->|<mac>`). The group coordinator then is the
//! membership service: a background thread keeps polling so the node stays in the group, and
//! another reads the group's member list every second. A node stopped gracefully closes its
//! consumer and leaves at once; a node killed drops out after `sessionTimeoutMs`.
//!
//! Any client of the backing cluster can join a group, so a member counts only if its client id
//! carries the MAC of its fields under the cluster secret ([`super::signing`]); others are
//! ignored, and reported once per distinct client id. Residual: a client id is not secret (the
//! group lists it), so a copy of a real node's id can be replayed by another client to announce
//! that same node, with its own address, never another. ACLs that let only the gateway's
//! principal read the group close that (docs/cluster.md).
//!
//! The same topic carries commands: a node that completes a switchover writes it there, signed
//! ([`super::command`]), and every node reads the topic from its end (by assignment, outside the
//! group) and applies the commands of other nodes that pass the checks.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::command::{Commands, SwitchoverCommand, MAC_HEADER};
use super::signing::Signer;
use super::{Member, Membership, Rejections};
use crate::config::{BrokerSecurity, ClusterSettings, HostPort, SwitchoverRequest};
use crate::protocol::internal::{CLUSTER_GROUP_PREFIX, INTERNAL_TOPIC_PREFIX};

const CLIENT_ID_PREFIX: &str = "switchyard";
const LIST_EVERY: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(200);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Distinct rejected client ids remembered so each is reported once; forgotten all at once when
/// full, so a flood of ids cannot grow memory.
const REPORTED_MEMBERS: usize = 1024;

/// This node's place in the cluster group; leaves the group when stopped or dropped.
pub struct ClusterGroup {
    topic: String,
    commands: Arc<Commands>,
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
        rejections: Arc<Rejections>,
        applied: mpsc::UnboundedSender<SwitchoverCommand>,
    ) -> anyhow::Result<ClusterGroup> {
        // Every client of the group reaches the listener as its security says.
        let servers = crate::tls::librdkafka::client_config(bootstrap, security)?;
        let id = &membership.cluster_id;
        let secret =
            settings.secret.as_ref().context("a gateway cluster needs its secret (checked with the config)")?;
        let signer = Signer::new(secret, id);
        let topic = format!("{INTERNAL_TOPIC_PREFIX}cluster-{id}");
        let group = format!("{CLUSTER_GROUP_PREFIX}{id}");
        create_topic(&servers, &topic).await?;

        let me = &membership.me;
        let commands = Arc::new(Commands::new(signer.clone(), me.node_id.clone()));
        let member_consumer: Arc<BaseConsumer> = Arc::new(
            servers
                .clone()
                .set("group.id", &group)
                .set("client.id", encode(me, &signer))
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
        let members =
            MemberReader { group, signer, membership: Arc::clone(&membership), rejections: Arc::clone(&rejections) };
        let reader = CommandReader { commands: Arc::clone(&commands), rejections, applied };
        let threads = vec![
            spawn("cluster-heartbeat", stay_in_group(Arc::clone(&member_consumer), Arc::clone(&stop))),
            spawn("cluster-members", members.run(member_consumer, Arc::clone(&stop))),
            spawn("cluster-commands", reader.run(command_consumer, Arc::clone(&stop))),
        ];
        tracing::info!(cluster = %id, node = %me.node_id, %topic, "joined the gateway cluster");
        Ok(ClusterGroup { topic, commands, producer, stop, threads: std::sync::Mutex::new(threads) })
    }

    /// Tell every other node to apply a switchover this node completed.
    pub fn broadcast(&self, route: &str, request: &SwitchoverRequest) -> anyhow::Result<()> {
        let (payload, mac) = self.commands.seal(route, request, SystemTime::now())?;
        let headers = OwnedHeaders::new().insert(Header { key: MAC_HEADER, value: Some(&mac) });
        self.producer
            .send(BaseRecord::<(), _>::to(&self.topic).payload(&payload).headers(headers))
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

/// Reads the group's member list, keeping the members whose client id is signed.
struct MemberReader {
    group: String,
    signer: Signer,
    membership: Arc<Membership>,
    rejections: Arc<Rejections>,
}

impl MemberReader {
    fn run(self, consumer: Arc<BaseConsumer>, stop: Arc<AtomicBool>) -> impl FnOnce() {
        move || {
            let mut reported = HashSet::new();
            while !stop.load(Ordering::Acquire) {
                match consumer.fetch_group_list(Some(&self.group), REQUEST_TIMEOUT) {
                    Ok(list) => {
                        let client_ids = list.groups().iter().flat_map(|g| g.members()).map(|m| m.client_id());
                        let members = client_ids.filter_map(|id| self.verified(id, &mut reported)).collect();
                        self.membership.update(members);
                    }
                    Err(e) => tracing::warn!(group = %self.group, "cannot list the gateway cluster's members: {e}"),
                }
                std::thread::sleep(LIST_EVERY);
            }
        }
    }

    /// The member `client_id` announces, if it is signed; otherwise reported (once per id).
    fn verified(&self, client_id: &str, reported: &mut HashSet<String>) -> Option<Member> {
        let refused = match decode(client_id, &self.signer) {
            Ok(member) => return Some(member),
            Err(reason) => reason,
        };
        if reported.len() >= REPORTED_MEMBERS {
            reported.clear();
        }
        if reported.insert(client_id.to_string()) {
            self.rejections.member(refused, client_id);
        }
        None
    }
}

/// Reads the command stream and passes on the commands of other nodes that pass the checks.
struct CommandReader {
    commands: Arc<Commands>,
    rejections: Arc<Rejections>,
    applied: mpsc::UnboundedSender<SwitchoverCommand>,
}

impl CommandReader {
    fn run(self, consumer: BaseConsumer, stop: Arc<AtomicBool>) -> impl FnOnce() {
        move || {
            while !stop.load(Ordering::Acquire) {
                let Some(Ok(message)) = consumer.poll(POLL) else { continue };
                let mac = message.headers().and_then(|h| h.iter().find(|h| h.key == MAC_HEADER)).and_then(|h| h.value);
                match self.commands.open(message.payload().unwrap_or_default(), mac, SystemTime::now()) {
                    Ok(Some(command)) => {
                        let _ = self.applied.send(command);
                    }
                    Ok(None) => {}
                    Err(refused) => self
                        .rejections
                        .command(refused.label(), format!("record at offset {}: {refused}", message.offset())),
                }
            }
        }
    }
}

/// A member's client id: `switchyard|<node id>|<host>|<rack or ->|<mac>`.
fn encode(member: &Member, signer: &Signer) -> String {
    let fields = fields(member);
    format!("{CLIENT_ID_PREFIX}|{}|{}", fields.join("|"), signer.sign_member(&fields))
}

/// What a member's MAC covers: node id, host, rack (`-` for none).
fn fields(member: &Member) -> [&str; 3] {
    [&member.node_id, &member.host, member.rack.as_deref().unwrap_or("-")]
}

/// The member a client id announces, or why it is not one (a metric label).
fn decode(client_id: &str, signer: &Signer) -> Result<Member, &'static str> {
    let parts: Vec<&str> = client_id.split('|').collect();
    match parts.as_slice() {
        [CLIENT_ID_PREFIX, node_id, host, rack, mac] => {
            if !signer.verify_member(&[node_id, host, rack], mac) {
                return Err("bad_signature");
            }
            let rack = (*rack != "-").then(|| rack.to_string());
            Ok(Member { node_id: node_id.to_string(), host: host.to_string(), rack })
        }
        [CLIENT_ID_PREFIX, ..] => Err("unsigned"),
        _ => Err("not_a_node"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::ClusterSecret;

    fn signer() -> Signer {
        Signer::new(&ClusterSecret::new("0123456789abcdef0123456789abcdef"), "orders")
    }

    #[test]
    fn signed_client_ids_round_trip() {
        let member = Member { node_id: "gw-1".into(), host: "127.0.0.2".into(), rack: Some("rack-a".into()) };
        assert_eq!(decode(&encode(&member, &signer()), &signer()), Ok(member));
        let rackless = Member { node_id: "gw-2".into(), host: "gw2.example.com".into(), rack: None };
        assert_eq!(decode(&encode(&rackless, &signer()), &signer()), Ok(rackless));
        assert_eq!(decode("rdkafka", &signer()), Err("not_a_node"));
    }

    #[test]
    fn forged_and_tampered_client_ids_are_not_members() {
        assert_eq!(decode("switchyard|x|6.6.6.6|-", &signer()), Err("unsigned"));
        let member = Member { node_id: "gw-1".into(), host: "127.0.0.2".into(), rack: Some("rack-a".into()) };
        let genuine = encode(&member, &signer());
        for (from, to) in [("gw-1", "gw-9"), ("127.0.0.2", "6.6.6.6"), ("rack-a", "rack-b")] {
            let tampered = genuine.replacen(from, to, 1);
            assert_eq!(decode(&tampered, &signer()), Err("bad_signature"), "{tampered}");
        }
        let other = Signer::new(&ClusterSecret::new("another secret, 32 bytes long!!"), "orders");
        assert_eq!(decode(&genuine, &other), Err("bad_signature"));
        assert_eq!(decode(&format!("{genuine}|extra"), &signer()), Err("unsigned"));
    }
}
