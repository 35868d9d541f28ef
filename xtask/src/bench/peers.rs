//! Other Kafka proxies, measured in the same rounds as the gateway by the closed-loop probe.
//!
//! Issue 16 compared the gateway's tail with other proxies' (Shotover, Kroxylicious,
//! kafka-proxy) from a run on another machine. A p99 difference of a fraction of a millisecond
//! means something only when both were taken in the same rounds, on the same broker, under the
//! same load, so the probe can take any proxy as one more side:
//!
//! `SWITCHYARD_BENCH_PEERS='<name>=<command>;<name>=<command>'`: each command runs under
//! `sh -c`, with `{broker}` replaced by the broker's `host:port` and `{port}` by a free loopback
//! port, on which the proxy must listen and which it must advertise as the broker's address
//! (the probe uses one broker). The bench builds none of them: a peer is whatever binary the
//! command names, so none of its code comes into this repository. Its output goes to
//! `target/bench/latency/peer-<name>.log`.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use switchyard_testkit::{free_port_block, ChildGuard};

/// How long a peer gets to accept connections on its port.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A proxy started from `SWITCHYARD_BENCH_PEERS`, stopped when dropped.
pub struct Peer {
    pub name: String,
    pub bootstrap: SocketAddr,
    pub process: ChildGuard,
}

/// The peers `SWITCHYARD_BENCH_PEERS` names, each started in front of `broker` and accepting
/// connections; none when it is unset.
pub fn start_from_env(broker: &str, log_dir: &Path) -> Result<Vec<Peer>> {
    let Ok(spec) = std::env::var("SWITCHYARD_BENCH_PEERS") else { return Ok(Vec::new()) };
    parse(&spec)?.into_iter().map(|(name, command)| start(name, &command, broker, log_dir)).collect()
}

/// `name=command;...` into pairs; a name is what the report and the sample files call the side.
fn parse(spec: &str) -> Result<Vec<(String, String)>> {
    let mut peers = Vec::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, command)) = entry.split_once('=') else {
            bail!("SWITCHYARD_BENCH_PEERS: {entry:?} is not <name>=<command>");
        };
        let name = name.trim();
        ensure!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "SWITCHYARD_BENCH_PEERS: the name {name:?} must be letters, digits and '-' (it names files)"
        );
        ensure!(
            !["direct", "gateway", "baseline"].contains(&name),
            "SWITCHYARD_BENCH_PEERS: {name:?} is taken by the bench's own sides; pick another name"
        );
        ensure!(command.contains("{port}"), "SWITCHYARD_BENCH_PEERS: the command of {name} must listen on {{port}}");
        peers.push((name.to_owned(), command.trim().to_owned()));
    }
    Ok(peers)
}

fn start(name: String, command: &str, broker: &str, log_dir: &Path) -> Result<Peer> {
    let port = free_port_block(1);
    let command = command.replace("{broker}", broker).replace("{port}", &port.to_string());
    let mut sh = Command::new("sh");
    // `exec`: the process measured is the proxy itself, not the shell.
    sh.arg("-c").arg(format!("exec {command}"));
    let log = log_dir.join(format!("peer-{name}.log"));
    let mut process = ChildGuard::spawn_logged(sh, &log).with_context(|| format!("starting peer {name}: {command}"))?;
    let bootstrap = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect_timeout(&bootstrap, Duration::from_millis(200)).is_err() {
        if !process.is_running() || Instant::now() > deadline {
            bail!("peer {name} did not listen on {bootstrap} ({command}); its log:\n{}", process.log_tail(30));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Peer { name, bootstrap, process })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn peers_are_named_commands_that_listen_on_their_port() {
        let peers = parse("shotover=run --listen {port} ; kafka-proxy=kp {broker},127.0.0.1:{port}").unwrap();
        assert_eq!(peers[0], ("shotover".to_owned(), "run --listen {port}".to_owned()));
        assert_eq!(peers[1].0, "kafka-proxy");
        assert!(parse("gateway=x {port}").is_err(), "a bench side's name");
        assert!(parse("p=x").is_err(), "no {{port}}");
        assert!(parse("a b=x {port}").is_err(), "a name that cannot name a file");
    }
}
