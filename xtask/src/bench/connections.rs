//! Connection cost: many idle client connections on the gateway's bootstrap port.
//!
//! The gateway opens one broker connection per client connection, so N idle clients cost it
//! 2N sockets, two connection tasks' worth of state, and their buffers. This opens N plain TCP
//! connections (no bytes sent), waits until the gateway reports all of them proxied, and reads
//! its RSS before and after; then each connection sends one ApiVersions request, as every Kafka
//! client does first, and the RSS is read again, since the first read sizes the buffers.
//! The same N connections are also opened straight to the broker, for the time reference.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use switchyard_testkit::kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader};
use switchyard_testkit::kafka_protocol::protocol::{Encodable, StrBytes};
use switchyard_testkit::{poll, KafkaCluster};

use super::system::{cpu_seconds, metric_sum, scrape_metrics, tcp_ext_counter, vm_kib};
use super::{start_gateway, step};

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionReport {
    pub connections: usize,
    /// The soft `RLIMIT_NOFILE` the bench, the broker and the gateway ran with.
    pub nofile_limit: u64,
    /// Opening every connection straight to the broker (reference).
    pub direct_connect_s: f64,
    pub direct_slowest_connect_ms: f64,
    /// Connections refused a place in the broker's accept queue (the client retries the SYN a
    /// second later): the machine's `ListenOverflows` counter over the phase.
    pub direct_listen_overflows: u64,
    /// Opening every connection to the gateway (each `connect` returns once the kernel has
    /// queued it for accept).
    pub gateway_connect_s: f64,
    pub gateway_slowest_connect_ms: f64,
    /// Connects that took over 200 ms (a dropped SYN costs its client a 1 s retransmit).
    pub gateway_slow_connects: usize,
    /// Connections the gateway's accept queue overflowed on (`ListenOverflows` over the phase).
    pub gateway_listen_overflows: u64,
    /// Gateway CPU time from the first connect until every connection is proxied, per connection.
    pub gateway_cpu_us_per_connection: f64,
    /// From the first connect until the gateway reports every client accepted and its broker
    /// connection open.
    pub gateway_all_proxied_s: f64,
    pub rss_before_kib: u64,
    pub rss_idle_kib: u64,
    pub kib_per_idle_connection: f64,
    /// One pipelined ApiVersions v3 round trip on every connection.
    pub api_versions_round_trips_s: f64,
    pub rss_after_api_versions_kib: u64,
    pub kib_per_connection_after_api_versions: f64,
    /// Until the gateway reports every connection closed after the clients reset theirs.
    pub close_s: f64,
    pub gateway_peak_rss_kib: u64,
}

pub fn idle_connections(
    cluster: &KafkaCluster,
    binary: &Path,
    n: usize,
    nofile_limit: u64,
) -> Result<ConnectionReport> {
    step(&format!("connection cost: {n} idle connections, straight to the broker first"));
    let broker = cluster.first_bootstrap();
    let overflows = tcp_ext_counter("ListenOverflows").unwrap_or(0);
    let started = Instant::now();
    let (direct, direct_times) = open(broker, n)?;
    let direct_connect_s = started.elapsed().as_secs_f64();
    let direct_listen_overflows = tcp_ext_counter("ListenOverflows").unwrap_or(0).saturating_sub(overflows);
    close_with_reset(direct);
    let direct_slowest_connect_ms = direct_times.iter().copied().fold(0.0, f64::max);
    println!(
        "    direct: {n} connections in {direct_connect_s:.2} s (slowest {direct_slowest_connect_ms:.1} ms, \
         {direct_listen_overflows} accept-queue overflows)"
    );
    std::thread::sleep(Duration::from_secs(2));

    step(&format!("connection cost: {n} idle connections through a fresh gateway"));
    let mut gateway = start_gateway(binary, cluster)?;
    let pid = gateway.process.pid();
    // Let start-up work (metadata refresh, admin server) settle before the baseline.
    std::thread::sleep(Duration::from_secs(2));
    scrape_metrics(gateway.admin)?;
    let rss_before_kib = vm_kib(pid, "VmRSS")?;

    let (cpu_before, overflows) = (cpu_seconds(pid)?, tcp_ext_counter("ListenOverflows").unwrap_or(0));
    let started = Instant::now();
    let (mut clients, gateway_times) = open(gateway.bootstrap, n)?;
    let gateway_connect_s = started.elapsed().as_secs_f64();
    wait_for_connections(gateway.admin, n as f64, Duration::from_secs(180))
        .with_context(|| format!("gateway log:\n{}", gateway.process.log_tail()))?;
    let gateway_all_proxied_s = started.elapsed().as_secs_f64();
    let gateway_listen_overflows = tcp_ext_counter("ListenOverflows").unwrap_or(0).saturating_sub(overflows);
    let gateway_cpu_us_per_connection = (cpu_seconds(pid)? - cpu_before) * 1e6 / n as f64;
    let gateway_slowest_connect_ms = gateway_times.iter().copied().fold(0.0, f64::max);
    let gateway_slow_connects = gateway_times.iter().filter(|&&ms| ms > 200.0).count();
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle_kib = vm_kib(pid, "VmRSS")?;
    println!(
        "    gateway: connected in {gateway_connect_s:.2} s (slowest {gateway_slowest_connect_ms:.1} ms, \
         {gateway_slow_connects} over 200 ms, {gateway_listen_overflows} accept-queue overflows), all proxied \
         after {gateway_all_proxied_s:.2} s, {gateway_cpu_us_per_connection:.0} µs gateway CPU each; \
         RSS {rss_before_kib} -> {rss_idle_kib} KiB"
    );

    let started = Instant::now();
    api_versions_everywhere(&mut clients)?;
    let api_versions_round_trips_s = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let rss_after_api_versions_kib = vm_kib(pid, "VmRSS")?;
    println!(
        "    ApiVersions on every connection in {api_versions_round_trips_s:.2} s; RSS {rss_after_api_versions_kib} KiB"
    );

    let started = Instant::now();
    close_with_reset(clients);
    wait_for_connections(gateway.admin, 0.0, Duration::from_secs(120))?;
    let close_s = started.elapsed().as_secs_f64();
    let gateway_peak_rss_kib = vm_kib(pid, "VmHWM")?;
    gateway.process.terminate(Duration::from_secs(30));

    let per = |after: u64| (after as f64 - rss_before_kib as f64) / n as f64;
    Ok(ConnectionReport {
        connections: n,
        nofile_limit,
        direct_connect_s,
        direct_slowest_connect_ms,
        direct_listen_overflows,
        gateway_connect_s,
        gateway_slowest_connect_ms,
        gateway_slow_connects,
        gateway_listen_overflows,
        gateway_cpu_us_per_connection,
        gateway_all_proxied_s,
        rss_before_kib,
        rss_idle_kib,
        kib_per_idle_connection: per(rss_idle_kib),
        api_versions_round_trips_s,
        rss_after_api_versions_kib,
        kib_per_connection_after_api_versions: per(rss_after_api_versions_kib),
        close_s,
        gateway_peak_rss_kib,
    })
}

/// Opens `n` connections one after the other; also returns how long each connect took, in ms.
fn open(addr: SocketAddr, n: usize) -> Result<(Vec<TcpStream>, Vec<f64>)> {
    let mut streams = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(30))
            .with_context(|| format!("connection {} of {n} to {addr}", i + 1))?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        streams.push(stream);
    }
    Ok((streams, times))
}

/// Closes with RST (SO_LINGER 0), so thousands of closes leave no TIME_WAIT ports behind.
fn close_with_reset(streams: Vec<TcpStream>) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    for stream in streams {
        // SAFETY: a valid socket fd and a correctly sized option value.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
}

/// Waits until the gateway reports `n` open client connections and `n` open broker connections.
fn wait_for_connections(admin: SocketAddr, n: f64, timeout: Duration) -> Result<()> {
    let mut last = (0.0, 0.0);
    poll::poll_until(timeout, || {
        let page = scrape_metrics(admin).ok()?;
        last = (
            metric_sum(&page, "switchyard_client_connections_active"),
            metric_sum(&page, "switchyard_upstream_connections_active"),
        );
        (last == (n, n)).then_some(())
    })
    .with_context(|| format!("the gateway reports {} client and {} broker connections, not {n}", last.0, last.1))
}

/// Sends one ApiVersions v3 request on every connection, then reads every answer.
fn api_versions_everywhere(clients: &mut [TcpStream]) -> Result<()> {
    let frame = api_versions_frame()?;
    for client in clients.iter_mut() {
        client.write_all(&frame)?;
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut size = [0u8; 4];
        client.read_exact(&mut size).with_context(|| format!("reading ApiVersions answer {i}"))?;
        let size = i32::from_be_bytes(size);
        if !(4..1 << 20).contains(&size) {
            bail!("ApiVersions answer {i} has size {size}");
        }
        let mut body = vec![0u8; size as usize];
        client.read_exact(&mut body)?;
        if body[..4] != 1i32.to_be_bytes() {
            bail!("ApiVersions answer {i} has the wrong correlation id");
        }
    }
    Ok(())
}

fn api_versions_frame() -> Result<Vec<u8>> {
    let version = 3;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("switchyard-bench")));
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("switchyard-bench"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let mut body = Vec::new();
    header.encode(&mut body, ApiKey::ApiVersions.request_header_version(version))?;
    request.encode(&mut body, version)?;
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    Ok(frame)
}
