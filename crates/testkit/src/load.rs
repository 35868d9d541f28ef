//! Support for hostile-load tests: the gateway under an address-space limit, its memory as the
//! kernel accounts it, and client sockets from a chosen loopback source address.
//!
//! - [`start_gateway_with_address_space_limit`] runs the gateway as `sh -c 'ulimit -v <KiB>;
//!   exec "$0" "$@"' <binary> run --config <file>`. Linux overcommits, so memory reserved for a
//!   size a peer merely claims costs no pages and an RSS check alone would pass; under `ulimit
//!   -v` such a reservation fails inside the gateway instead (and kills it), whatever the
//!   kernel's overcommit policy.
//! - [`memory_use`], [`reset_peak_rss`] and [`RssSampler`] read `/proc/<pid>/status` (`VmRSS`,
//!   `VmHWM`, `VmSize`).
//! - [`connect_from`] binds a client socket to a source address before connecting, so that an
//!   attacker on `127.0.0.2` and well-behaved clients on `127.0.0.1` count against different
//!   per-client limits.
//! - [`ensure_open_files`] raises the test process's descriptor limit for connection floods.
//!
//! Every wait here has a deadline, and the sampler thread stops at a hard time limit even if
//! its owner forgets it.

use std::fs;
use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::gateway::start_gateway_command;
use crate::process::ServerProcess;

/// A sampler that is never finished stops by itself after this long.
const SAMPLER_MAX_RUN: Duration = Duration::from_secs(600);
/// `IP_BIND_ADDRESS_NO_PORT` (Linux 4.2+, not in the `libc` crate): pick the source port at
/// connect time, as an unbound socket does, rather than at bind time.
const IP_BIND_ADDRESS_NO_PORT: libc::c_int = 24;

/// Starts `<binary> run --config <file>` (with `config_yaml` written to `<file>`) through
/// `sh -c 'ulimit -v <address_space_kib>; exec "$0" "$@"'`, so the gateway runs with that
/// address-space limit (`RLIMIT_AS`); `RUST_LOG=info` unless `RUST_LOG` is set. Waits up to 30 s
/// until every address in `wait_for` accepts connections, then checks that the limit is in force
/// on the gateway process itself (`/proc/<pid>/limits`).
///
/// Returns the [`ServerProcess`] ([`GatewayProcess`](crate::GatewayProcess) derefs to the same):
/// its pid is the gateway's, since the shell `exec`s it.
pub fn start_gateway_with_address_space_limit(
    binary: &Path,
    config_yaml: &str,
    wait_for: &[SocketAddr],
    address_space_kib: u64,
) -> Result<ServerProcess> {
    let server = start_gateway_command(config_yaml, wait_for, |config_path| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -v {address_space_kib} && exec \"$0\" \"$@\""))
            .arg(binary)
            .arg("run")
            .arg("--config")
            .arg(config_path);
        cmd
    })?;
    let limit = address_space_limit(server.pid())?;
    ensure!(
        limit == Some(address_space_kib * 1024),
        "the gateway (pid {}) runs with an address-space limit of {limit:?} bytes, not {address_space_kib} KiB",
        server.pid()
    );
    Ok(server)
}

/// The soft `RLIMIT_AS` of process `pid` in bytes (`None`: unlimited), from `/proc/<pid>/limits`.
pub fn address_space_limit(pid: u32) -> Result<Option<u64>> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let line = limits.lines().find(|line| line.starts_with("Max address space")).context("no `Max address space`")?;
    let soft = line.split_whitespace().nth(3).context("malformed `Max address space` line")?;
    if soft == "unlimited" {
        return Ok(None);
    }
    Ok(Some(soft.parse().with_context(|| format!("bad address-space limit {soft:?}"))?))
}

/// A process's memory as `/proc/<pid>/status` reports it, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident (since start or [`reset_peak_rss`]).
    pub peak_rss_kib: u64,
    /// `VmSize`: address space mapped now, what `ulimit -v` bounds.
    pub virtual_kib: u64,
}

/// Reads [`MemoryUse`] of process `pid`.
pub fn memory_use(pid: u32) -> Result<MemoryUse> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("process {pid} is gone"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status.lines().find(|line| line.starts_with(name)).with_context(|| format!("no {name}"))?;
        line.split_whitespace()
            .nth(1)
            .with_context(|| format!("bad {name}"))?
            .parse()
            .with_context(|| format!("bad {name}"))
    };
    Ok(MemoryUse { rss_kib: field("VmRSS:")?, peak_rss_kib: field("VmHWM:")?, virtual_kib: field("VmSize:")? })
}

/// Resets `VmHWM` of process `pid` to its current RSS (`echo 5 > /proc/<pid>/clear_refs`), so the
/// next [`memory_use`] reports the peak since now. Fails where the kernel does not allow it.
pub fn reset_peak_rss(pid: u32) -> Result<()> {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").with_context(|| format!("resetting VmHWM of process {pid}"))
}

/// What an [`RssSampler`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RssSamples {
    /// Readings taken.
    pub count: usize,
    /// The largest `VmRSS` read, in KiB.
    pub peak_rss_kib: u64,
    /// The largest `VmSize` read, in KiB.
    pub peak_virtual_kib: u64,
}

/// Reads a process's `VmRSS` and `VmSize` every `interval` on a thread of its own, until
/// [`RssSampler::finish`] (or drop, or a hard limit of ten minutes).
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<RssSamples>>,
}

impl RssSampler {
    pub fn start(pid: u32, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = RssSamples::default();
            while !stopped.load(Ordering::Relaxed) && started.elapsed() < SAMPLER_MAX_RUN {
                if let Ok(now) = memory_use(pid) {
                    samples.count += 1;
                    samples.peak_rss_kib = samples.peak_rss_kib.max(now.rss_kib);
                    samples.peak_virtual_kib = samples.peak_virtual_kib.max(now.virtual_kib);
                }
                std::thread::sleep(interval);
            }
            samples
        });
        Self { stop, thread: Some(thread) }
    }

    /// Stops sampling and returns what was seen.
    pub fn finish(mut self) -> RssSamples {
        self.stop_thread()
    }

    fn stop_thread(&mut self) -> RssSamples {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|thread| thread.join().ok()).unwrap_or_default()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// A blocking TCP connection to `destination` from `source` (port chosen by the kernel),
/// connected within `timeout`. IPv4 only: loopback tests use `127.0.0.x` sources to be told
/// apart by per-client limits.
pub fn connect_from(source: IpAddr, destination: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let (IpAddr::V4(source), SocketAddr::V4(destination)) = (source, destination) else {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "connect_from supports IPv4 only"));
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket syscalls on a descriptor this function owns (closed by `OwnedFd` on
    // every path), with pointers to live, correctly sized values.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        // Best effort: without it the port is picked at bind time, which only matters for floods.
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let from = sockaddr(source, 0);
        if libc::bind(fd.as_raw_fd(), (&from as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let to = sockaddr(*destination.ip(), destination.port());
        if libc::connect(fd.as_raw_fd(), (&to as *const libc::sockaddr_in).cast(), len) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
            let mut poll = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
            let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            match libc::poll(&mut poll, 1, millis) {
                0 => return Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect to {destination}"))),
                n if n < 0 => return Err(io::Error::last_os_error()),
                _ => {}
            }
            let mut error: libc::c_int = 0;
            let mut error_len = mem::size_of::<libc::c_int>() as libc::socklen_t;
            if libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut error as *mut libc::c_int).cast(),
                &mut error_len,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if error != 0 {
                return Err(io::Error::from_raw_os_error(error));
            }
        }
        let stream = TcpStream::from(fd);
        stream.set_nonblocking(false)?;
        Ok(stream)
    }
}

/// Makes sure this process may open at least `wanted` file descriptors, raising the soft limit
/// (up to the hard one) if needed; returns the soft limit in force.
pub fn ensure_open_files(wanted: u64) -> Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a pointer to a live rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error().into());
        }
        if limit.rlim_cur >= wanted {
            return Ok(limit.rlim_cur);
        }
        if limit.rlim_max < wanted {
            bail!("this test needs {wanted} open files but the hard limit is {} (raise `ulimit -n`)", limit.rlim_max);
        }
        limit.rlim_cur = wanted;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(io::Error::last_os_error().into());
        }
    }
    Ok(wanted)
}
