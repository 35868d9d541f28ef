//! Tests for the HAProxy wrapper: real HAProxy in front of small loopback servers, checking the
//! PROXY headers it sends, the `source` address it connects from, same-port forwarding across a
//! port range and round robin across backends.
//!
//! Run with `cargo test -p switchyard-testkit --test haproxy`.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use switchyard_testkit::poll::poll_until;
use switchyard_testkit::{free_port_block, HaproxyProcess, HaproxySpec, ProxyHeader};

const CLIENT_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;
const FRONTEND_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const OTHER_BACKEND_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const SOURCE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// One connection as a backend saw it.
#[derive(Debug, Clone)]
struct Received {
    peer: SocketAddr,
    header: Vec<u8>,
    payload: Vec<u8>,
}

/// A backend that reads the expected PROXY header and one line from each connection, records
/// them and echoes the line back. Connections are served one at a time.
struct EchoServer {
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    fn start(ip: Ipv4Addr, port: u16, header: ProxyHeader) -> Self {
        let listener = TcpListener::bind((ip, port)).unwrap_or_else(|e| panic!("binding {ip}:{port}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (received, stop) = (received.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            // A failed connection shows up as a missing record in the test.
                            if let Ok((record, mut stream)) = serve(stream, peer, header) {
                                let payload = record.payload.clone();
                                // Recorded before the echo, so a client holding its echo finds it.
                                received.lock().unwrap().push(record);
                                let _ = stream.write_all(&payload);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                        Err(e) => panic!("accept on {ip}:{port}: {e}"),
                    }
                }
            }
        });
        Self { received, stop, thread: Some(thread) }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads the PROXY header (if any) and one line; the caller echoes the line.
fn serve(stream: TcpStream, peer: SocketAddr, header: ProxyHeader) -> std::io::Result<(Received, TcpStream)> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream);
    let header = match header {
        ProxyHeader::None => Vec::new(),
        ProxyHeader::V1 => {
            let mut line = Vec::new();
            reader.read_until(b'\n', &mut line)?;
            line
        }
        ProxyHeader::V2 => {
            let mut header = vec![0; 16];
            reader.read_exact(&mut header)?;
            let len = u16::from_be_bytes([header[14], header[15]]) as usize;
            header.resize(16 + len, 0);
            reader.read_exact(&mut header[16..])?;
            header
        }
    };
    let mut payload = Vec::new();
    reader.read_until(b'\n', &mut payload)?;
    Ok((Received { peer, header, payload }, reader.into_inner()))
}

/// Connects to `addr`, sends `payload` (one line) and waits for the echo. Returns the client's
/// own address.
fn round_trip(addr: SocketAddrV4, payload: &str) -> SocketAddrV4 {
    let mut stream = TcpStream::connect_timeout(&addr.into(), IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(payload.as_bytes()).unwrap();
    let mut echo = vec![0; payload.len()];
    stream.read_exact(&mut echo).unwrap_or_else(|e| panic!("no echo of {payload:?} via {addr}: {e}"));
    assert_eq!(echo, payload.as_bytes());
    match stream.local_addr().unwrap() {
        SocketAddr::V4(local) => local,
        other => panic!("client address {other} is not IPv4"),
    }
}

fn skip_without_haproxy() -> bool {
    let missing = !HaproxyProcess::available();
    if missing {
        eprintln!("[haproxy] haproxy not installed (apt-get install -y haproxy): skipping");
    }
    missing
}

/// One backend on 127.0.0.1:P behind HAProxy on 127.0.0.2:P, connecting from 127.0.0.5.
/// Returns what the backend received and the client's address.
fn single_connection(header: ProxyHeader) -> (Received, SocketAddrV4, u16, HaproxyProcess) {
    let port = free_port_block(1);
    let server = EchoServer::start(Ipv4Addr::LOCALHOST, port, header);
    let haproxy = HaproxyProcess::start(&HaproxySpec {
        frontend_ip: FRONTEND_IP,
        ports: port..=port,
        backends: vec![Ipv4Addr::LOCALHOST],
        source_ip: Some(SOURCE_IP),
        header,
    })
    .unwrap();
    let client = round_trip(SocketAddrV4::new(FRONTEND_IP, port), "hello through haproxy\n");
    assert_eq!(*client.ip(), CLIENT_IP);
    let received = server.received();
    assert_eq!(received.len(), 1, "{received:?}\n--- haproxy log ---\n{}", haproxy.log_contents());
    let record = received.into_iter().next().unwrap();
    assert_eq!(record.payload, b"hello through haproxy\n");
    assert_eq!(record.peer.ip(), SOURCE_IP, "backend must see haproxy's source address");
    (record, client, port, haproxy)
}

#[test]
fn v1_header_carries_the_client_address() {
    if skip_without_haproxy() {
        return;
    }
    let (record, client, port, haproxy) = single_connection(ProxyHeader::V1);
    let header = String::from_utf8(record.header).unwrap();
    assert!(header.starts_with("PROXY TCP4 127.0.0.1 127.0.0.2 "), "{header:?}");
    assert_eq!(header, format!("PROXY TCP4 {} {FRONTEND_IP} {} {port}\r\n", client.ip(), client.port()));

    // HAProxy logs each connection when it ends.
    poll_until(IO_TIMEOUT, || haproxy.log_contents().contains("switchyard gateways/gw0").then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n--- haproxy log ---\n{}", haproxy.log_contents()));
    assert!(haproxy.config_text().contains("send-proxy\n"), "{}", haproxy.config_text());
}

#[test]
fn v2_header_carries_the_client_address() {
    if skip_without_haproxy() {
        return;
    }
    let (record, client, port, _haproxy) = single_connection(ProxyHeader::V2);
    let header = record.header;
    assert_eq!(&header[..12], V2_SIGNATURE, "{header:?}");
    assert_eq!(header[12], 0x21, "version 2, command PROXY");
    assert_eq!(header[13], 0x11, "TCP over IPv4");
    let len = u16::from_be_bytes([header[14], header[15]]) as usize;
    assert!(len >= 12, "address block too short: {header:?}");
    let addresses = &header[16..28];
    assert_eq!(&addresses[0..4], &client.ip().octets());
    assert_eq!(&addresses[4..8], &FRONTEND_IP.octets());
    assert_eq!(u16::from_be_bytes([addresses[8], addresses[9]]), client.port());
    assert_eq!(u16::from_be_bytes([addresses[10], addresses[11]]), port);
}

#[test]
fn each_port_goes_to_the_same_port_round_robin_across_backends() {
    if skip_without_haproxy() {
        return;
    }
    let base = free_port_block(2);
    let backends = [Ipv4Addr::LOCALHOST, OTHER_BACKEND_IP];
    let servers: Vec<((Ipv4Addr, u16), EchoServer)> = [base, base + 1]
        .into_iter()
        .flat_map(|port| backends.map(|ip| ((ip, port), EchoServer::start(ip, port, ProxyHeader::None))))
        .collect();
    let haproxy = HaproxyProcess::start(&HaproxySpec {
        frontend_ip: FRONTEND_IP,
        ports: base..=base + 1,
        backends: backends.to_vec(),
        source_ip: None,
        header: ProxyHeader::None,
    })
    .unwrap();

    for (i, port) in [base, base, base + 1, base + 1].into_iter().enumerate() {
        round_trip(SocketAddrV4::new(FRONTEND_IP, port), &format!("{port} #{i}\n"));
    }

    let summary: Vec<String> = servers
        .iter()
        .map(|((ip, port), server)| {
            let payloads: Vec<String> =
                server.received().iter().map(|r| String::from_utf8_lossy(&r.payload).trim_end().to_owned()).collect();
            format!("{ip}:{port} <- {payloads:?}")
        })
        .collect();
    let context = format!("{summary:#?}\n--- haproxy log ---\n{}", haproxy.log_contents());
    for ((ip, port), server) in &servers {
        let received = server.received();
        // Two connections per port, alternating between the two backends.
        assert_eq!(received.len(), 1, "{ip}:{port}: {context}");
        assert!(received[0].payload.starts_with(format!("{port} #").as_bytes()), "{ip}:{port}: {context}");
        assert!(received[0].header.is_empty());
    }
}
