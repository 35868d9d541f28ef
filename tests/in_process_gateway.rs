//! The whole gateway in this process: bound by the test, stopped by a future, in front of a
//! broker stand-in on loopback. No Kafka, no child process: seconds, not minutes.
//!
//! `Gateway::run` takes its listeners and a shutdown future, as tokio's mini-redis server does,
//! so a test (or a program embedding the gateway) controls both. Real-Kafka behaviour is
//! covered by the other suites; this pins the life cycle: serve while running, then drain a
//! request in flight when the shutdown future resolves, and return.

mod frames;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use frames::{decode_answer, produce, read_frame};
use kafka_protocol::messages::{ApiKey, ProduceResponse};
use switchyard::gateway::{Gateway, Listeners};
use switchyard_testkit::free_port_block;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Answers every Produce with an opaque 8-byte body naming its correlation id, after `delay`,
/// and hangs up on anything else (the gateway's own metadata refresh, which must not be fed
/// answers it cannot parse), counting those in `refused`.
async fn broker_stand_in(listener: TcpListener, delay: Duration, refused: Arc<AtomicUsize>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let refused = Arc::clone(&refused);
        tokio::spawn(async move {
            loop {
                let Ok(size) = stream.read_i32().await else { return };
                let mut body = vec![0; size as usize];
                if stream.read_exact(&mut body).await.is_err() || body[..2] != [0, 0] {
                    refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(delay).await;
                let mut answer = 8i32.to_be_bytes().to_vec();
                answer.extend_from_slice(&body[4..8]);
                answer.extend_from_slice(&[0; 4]);
                if stream.write_all(&answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn config(broker: SocketAddr, port: u16) -> switchyard::config::GatewayConfig {
    let yaml = format!(
        r#"
streamingDomains:
  - name: stand-in
    type: kafka
    kafkaCluster:
      name: stand-in
      bootstrapServers:
        - id: plain
          endpoint: "{broker}"
      nodeIdRanges:
        - name: one
          start: 1
          end: 1
routes:
  - name: main
    endpoint: "127.0.0.1:{port}"
    brokerIdentificationStrategy:
      type: port
    streamingDomain:
      name: stand-in
admin:
  address: "127.0.0.1:0"
proxy:
  drainTimeoutMs: 10000
  # The gateway's own metadata refresh finds no real broker: let it give up fast.
  connectTimeoutMs: 1000
"#
    );
    switchyard::config::parse("tests/in_process_gateway.rs", &yaml).expect("a valid config")
}

#[tokio::test]
async fn serves_until_the_shutdown_future_resolves_and_drains_what_is_in_flight() {
    let broker = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker_addr = broker.local_addr().unwrap();
    tokio::spawn(broker_stand_in(broker, Duration::from_millis(500), Arc::default()));
    let port = free_port_block(2);
    let config = config(broker_addr, port);
    let listeners = Listeners::bind(&config).await.expect("binding");
    let (stop, stopped) = oneshot::channel::<()>();
    let gateway = tokio::spawn(async move {
        Gateway::run(&config, listeners, async {
            let _ = stopped.await;
        })
        .await
    });

    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    client.write_all(&produce(7)).await.unwrap();
    // Answered while running.
    let mut answer = [0u8; 12];
    client.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer[4..8], 7i32.to_be_bytes());

    // In flight when the shutdown future resolves: still answered, then the connection ends.
    client.write_all(&produce(8)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    client.read_exact(&mut answer).await.expect("the in-flight request is answered during the drain");
    assert_eq!(answer[4..8], 8i32.to_be_bytes());
    assert_eq!(client.read(&mut answer).await.unwrap(), 0, "closed after the drain");
    let drained = tokio::time::timeout(Duration::from_secs(20), gateway).await.expect("run returns").unwrap();
    assert!(drained.expect("the gateway ran"), "every connection drained");
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err(), "no longer listening");
}

/// Clients flooding the port of a node the cluster does not (yet) list: the gateway asks the
/// cluster once for the burst, not once per connection, and serves them all through a broker
/// standing in for the missing one, which is sent no Produce: the gateway answers each
/// NOT_LEADER_OR_FOLLOWER, as the missing broker would.
#[tokio::test]
async fn a_burst_for_an_unknown_node_asks_the_cluster_once() {
    const CLIENTS: usize = 50;
    let broker = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broker_addr = broker.local_addr().unwrap();
    let metadata_asks = Arc::new(AtomicUsize::new(0));
    tokio::spawn(broker_stand_in(broker, Duration::ZERO, Arc::clone(&metadata_asks)));
    let port = free_port_block(2);
    let config = config(broker_addr, port);
    let gateway = Gateway::start(&config, Listeners::bind(&config).await.unwrap()).await.unwrap();
    // The startup refresh has asked (and failed) by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = metadata_asks.load(Ordering::Relaxed);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        // Node 1's port: the stand-in's metadata never names it.
        clients.push(TcpStream::connect(("127.0.0.1", port + 1)).await.unwrap());
    }
    for (n, mut client) in clients.into_iter().enumerate() {
        let id = n as i32;
        client.write_all(&produce(id)).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(30), read_frame(&mut client)).await;
        let body = answer.expect("an answer in time").expect("an answer, not a closed connection");
        let answer: ProduceResponse = decode_answer(ApiKey::Produce, 9, body);
        let codes: Vec<i16> =
            answer.responses.iter().flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)).collect();
        assert_eq!(codes, vec![6], "client {id} was not answered NOT_LEADER_OR_FOLLOWER: {answer:?}");
    }
    let asks = metadata_asks.load(Ordering::Relaxed) - before;
    assert!(asks < CLIENTS / 2, "{CLIENTS} connections to an unknown node made {asks} metadata connections");
    gateway.shutdown().await;
}
