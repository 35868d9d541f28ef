//! HAProxy (the Debian `haproxy` binary) as a TCP load balancer in front of gateway nodes.
//!
//! Gateways are commonly deployed behind a layer-4 load balancer that hides the client's address
//! and announces it with the PROXY protocol. Tests of that setup use the real HAProxy rather than
//! a hand-written header, so the gateway is checked against the v1 text and v2 binary headers a
//! real balancer sends, on real connections that it forwards byte for byte.
//!
//! Layout on loopback: clients connect to `frontend_ip` (for example 127.0.0.2) on any port of a
//! range; HAProxy forwards each connection to one backend node on the *same* port (its `server`
//! lines have no port), optionally from a distinct `source` address (for example 127.0.0.5), so a
//! test can tell HAProxy's address from the client's (127.0.0.1). All of 127.0.0.0/8 is routed to
//! `lo` on Linux, so no interface setup is needed.
//!
//! Readiness is read from `/proc/net/tcp` rather than probed with a connection: a probe would be
//! forwarded to a backend and show up there as a spurious client.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::ops::{Deref, DerefMut, RangeInclusive};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use crate::process::{self, ServerProcess};

const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Debian installs HAProxy here, which is not on a non-root user's `PATH`.
const DEBIAN_BINARY: &str = "/usr/sbin/haproxy";
/// `st` of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// What HAProxy sends to a backend before the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// Nothing: the backend sees HAProxy's address as the client.
    None,
    /// PROXY protocol v1 text line (`send-proxy`).
    V1,
    /// PROXY protocol v2 binary header (`send-proxy-v2`).
    V2,
}

/// How to run HAProxy; see the module docs for the loopback layout.
#[derive(Debug, Clone)]
pub struct HaproxySpec {
    /// Where clients connect, for example 127.0.0.2.
    pub frontend_ip: Ipv4Addr,
    /// Every port in the range is bound on `frontend_ip` and forwarded to the same port.
    pub ports: RangeInclusive<u16>,
    /// Gateway node addresses; each client connection goes to one of them (round robin).
    pub backends: Vec<Ipv4Addr>,
    /// The address HAProxy connects to the backends from (its `source`); the kernel picks one
    /// (127.0.0.1 on loopback) when `None`.
    pub source_ip: Option<Ipv4Addr>,
    pub header: ProxyHeader,
}

impl HaproxySpec {
    /// The `haproxy.cfg` for this spec.
    pub fn config_text(&self) -> Result<String> {
        ensure!(!self.ports.is_empty(), "empty port range {:?}", self.ports);
        ensure!(!self.backends.is_empty(), "no backends");
        let server_options = match self.header {
            ProxyHeader::None => "",
            ProxyHeader::V1 => " send-proxy",
            ProxyHeader::V2 => " send-proxy-v2",
        };
        let mut cfg = String::new();
        // No `daemon`: the process stays in the foreground (also forced by `-db`) so ChildGuard
        // owns it. Logs (one line per connection with `option tcplog`) go to stderr, i.e. to the
        // log file.
        cfg.push_str(
            "global\n    maxconn 4096\n    log stderr format raw local0 info\n\n\
             defaults\n    mode tcp\n    log global\n    option tcplog\n    balance roundrobin\n    \
             timeout connect 5s\n    timeout client 5m\n    timeout server 5m\n\n",
        );
        let (first, last) = (self.ports.start(), self.ports.end());
        writeln!(
            cfg,
            "frontend switchyard\n    bind {}:{first}-{last}\n    default_backend gateways\n",
            self.frontend_ip
        )?;
        cfg.push_str("backend gateways\n");
        if let Some(source) = self.source_ip {
            writeln!(cfg, "    source {source}")?;
        }
        for (i, ip) in self.backends.iter().enumerate() {
            // No port: HAProxy uses the port the client connected to.
            writeln!(cfg, "    server gw{i} {ip}{server_options}")?;
        }
        Ok(cfg)
    }
}

/// A running HAProxy; killed when dropped. Its pid, log, config path and stopping are
/// [`ServerProcess`]'s. The log holds warnings, alerts and one line per finished connection;
/// SIGTERM ([`ServerProcess::terminate`]) is HAProxy's hard stop, which closes the connections.
#[derive(Debug)]
pub struct HaproxyProcess {
    server: ServerProcess,
    config_text: String,
}

impl HaproxyProcess {
    /// Whether a runnable `haproxy` is installed (Debian: `apt-get install -y haproxy`).
    pub fn available() -> bool {
        Command::new(binary())
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Writes `haproxy.cfg` to a temporary directory, checks it with `haproxy -c`, runs
    /// `haproxy -db -f haproxy.cfg` and waits up to 30 s until every frontend port listens.
    /// The backends need not be up yet.
    pub fn start(spec: &HaproxySpec) -> Result<Self> {
        let config_text = spec.config_text()?;
        let mut server = ServerProcess::start("haproxy", "haproxy.cfg", &config_text, |config_path| {
            let mut check = Command::new(binary());
            check.arg("-c").arg("-f").arg(config_path);
            process::run(check, None, CHECK_TIMEOUT)?
                .ensure_success("haproxy -c")
                .with_context(|| format!("--- haproxy.cfg ---\n{config_text}"))?;
            let mut cmd = Command::new(binary());
            cmd.arg("-db").arg("-f").arg(config_path);
            Ok(cmd)
        })?;
        server.wait_until_ready(&format!("listening on {}:{:?}", spec.frontend_ip, spec.ports), || {
            let listening = listening_sockets()?;
            Ok(spec.ports.clone().all(|port| listening.contains(&(spec.frontend_ip, port))))
        })?;
        Ok(Self { server, config_text })
    }

    /// The configuration HAProxy was started with.
    pub fn config_text(&self) -> String {
        self.config_text.clone()
    }
}

impl Deref for HaproxyProcess {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.server
    }
}

impl DerefMut for HaproxyProcess {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.server
    }
}

fn binary() -> PathBuf {
    if Path::new(DEBIAN_BINARY).exists() {
        PathBuf::from(DEBIAN_BINARY)
    } else {
        PathBuf::from("haproxy")
    }
}

/// Every IPv4 address and port with a socket in LISTEN state, from `/proc/net/tcp`.
fn listening_sockets() -> Result<Vec<(Ipv4Addr, u16)>> {
    let table = fs::read_to_string("/proc/net/tcp").context("reading /proc/net/tcp")?;
    // Lines look like `0: 0200007F:7530 00000000:0000 0A ...`: the address is the in-memory
    // (network order) u32 printed as a native-endian hex number.
    Ok(table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (fields.get(1)?, fields.get(3)?);
            if *state != TCP_LISTEN {
                return None;
            }
            let (ip, port) = local.split_once(':')?;
            let ip = Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
            Some((ip, u16::from_str_radix(port, 16).ok()?))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_sees_a_listener() {
        let listener = std::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, 3), 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listening_sockets().unwrap().contains(&(Ipv4Addr::new(127, 0, 0, 3), port)));
    }

    #[test]
    fn config_has_one_server_line_per_backend_without_port() {
        let spec = HaproxySpec {
            frontend_ip: Ipv4Addr::new(127, 0, 0, 2),
            ports: 30000..=30003,
            backends: vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 3)],
            source_ip: Some(Ipv4Addr::new(127, 0, 0, 5)),
            header: ProxyHeader::V2,
        };
        let cfg = spec.config_text().unwrap();
        assert!(cfg.contains("bind 127.0.0.2:30000-30003\n"), "{cfg}");
        assert!(cfg.contains("source 127.0.0.5\n"), "{cfg}");
        assert!(cfg.contains("server gw0 127.0.0.1 send-proxy-v2\n"), "{cfg}");
        assert!(cfg.contains("server gw1 127.0.0.3 send-proxy-v2\n"), "{cfg}");
        assert!(!cfg.contains("daemon"), "{cfg}");
    }
}
