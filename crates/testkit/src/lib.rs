//! Test support for Switchyard: real Apache Kafka, real clients, the real gateway binary.
//!
//! Integration tests and the xtask use this crate to run genuine Kafka 4.1.1 brokers (KRaft,
//! from Maven Central jars, see [`KafkaJars`]) and genuine clients on loopback, so the gateway is
//! tested against the behaviour it must proxy rather than against a model of it:
//!
//! - [`kafka`]: jar cache and [`KafkaCluster`] (1..n combined broker+controller nodes), with an
//!   optionally secured client listener (`SSL`, `SASL_PLAINTEXT`, `SASL_SSL`);
//! - [`pki`]: a test CA, server and client certificates, and an unrelated CA, as PEM and PKCS#12;
//! - [`java`]: Kafka's Java tools (topics, console and perf clients, groups) and small Java
//!   programs from `crates/testkit/java/`;
//! - [`clients`]: other client generations: any release of the Java client (its own jars, from
//!   Maven Central) and franz-go, each running the same workout;
//! - [`kcat`]: librdkafka clients through `kcat`;
//! - [`confluent_kafka`]: a current librdkafka (2.16) through Python's confluent-kafka;
//! - [`wire`]: a minimal blocking protocol client for readiness checks and raw frames;
//! - [`gateway`]: the Switchyard binary as a child process, and its config files;
//! - [`drill`]: the client-switchover drill (two clusters, MirrorMaker 2, numbered clients);
//! - [`drill_clients`]: the drill's kcat producer and consumer and Java transactional producer;
//! - [`haproxy`]: HAProxy in front of gateway nodes, optionally sending PROXY protocol headers;
//! - [`mirrormaker`]: MirrorMaker 2 replicating one cluster into another, and end/committed
//!   offset checks on both sides;
//! - [`numbered`]: numbered records sent and read by the Java client, for switchover drills;
//! - [`recorder`]: a recording forwarder in front of a broker, for the fuzz seed corpora;
//! - [`process`], [`ports`], [`poll`]: the plumbing (processes that die with the test, free
//!   ports, waiting by polling).
//!
//! Everything is blocking (std threads and sockets) and every process started is stopped on
//! drop, or killed by the kernel if the test process dies.

pub mod clients;
pub mod confluent_kafka;
pub mod drill;
pub mod drill_clients;
pub mod gateway;
pub mod haproxy;
pub mod java;
pub mod kafka;
pub mod kcat;
pub mod load;
pub mod mirrormaker;
pub mod numbered;
pub mod pki;
pub mod poll;
pub mod ports;
pub mod process;
pub mod recorder;
pub mod wire;

/// The protocol crate the [`wire`] client speaks, re-exported so tests build requests with the
/// same version.
pub use kafka_protocol;

pub use clients::{JavaClientJars, Workout};
pub use gateway::{GatewayProcess, GatewayYaml, KafkaDomain};
pub use haproxy::{HaproxyProcess, HaproxySpec, ProxyHeader};
pub use java::{ConsumeOptions, ConsumerPerfSummary, DescribedCluster, ProducerPerfOptions, ProducerPerfSummary};
pub use kafka::{ClusterSpec, KafkaCluster, KafkaJars, ListenerSasl, ListenerTls};
pub use mirrormaker::{committed_offsets, end_offsets, MirrorMaker, MirrorOptions};
pub use numbered::{ConsumerReport, JavaStart, NumberedConsumer, NumberedProducer, ProducerReport};
pub use pki::{Identity, TestPki};
pub use ports::{free_port, free_port_block};
pub use process::{ChildGuard, CommandOutput, ServerProcess};
pub use wire::{fetch_metadata, KafkaWire};
