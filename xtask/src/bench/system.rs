//! What the benchmark reads off the machine and the gateway: file-descriptor limits, a
//! process's CPU time and memory from `/proc`, the gateway's Prometheus metrics, and a
//! description of the machine for the report.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Raises this process's `RLIMIT_NOFILE` towards `wanted` (the hard limit too, when allowed: we
/// may be root). Children inherit it, so call it before starting Kafka and the gateway. Returns
/// the soft limit in force afterwards.
pub fn raise_nofile_limit(wanted: u64) -> Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        bail!("getrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
    }
    if limit.rlim_cur >= wanted {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit { rlim_cur: wanted, rlim_max: limit.rlim_max.max(wanted) };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return Ok(wanted);
    }
    // Not allowed to raise the hard limit: go as far as it allows.
    let soft_only = libc::rlimit { rlim_cur: limit.rlim_max.min(wanted), rlim_max: limit.rlim_max };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft_only) } != 0 {
        bail!("setrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
    }
    Ok(soft_only.rlim_cur)
}

/// Clock ticks per second, the unit of `utime` and `stime` in `/proc/<pid>/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// User plus system CPU time of a process (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; fields after it are plain numbers.
    let after_name = stat.rsplit_once(')').context("no ')' in /proc/<pid>/stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) as f64 / clock_ticks_per_second() as f64)
}

/// CPU time of the whole machine and of this process's tree, for telling how much of the
/// machine other processes used while the bench ran (on a shared machine, figures taken while
/// something else is busy say little).
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: std::time::Instant,
    /// Busy jiffies of all CPUs (user, nice, system, irq, softirq, steal).
    machine_busy: u64,
    /// Jiffies of this process, its reaped children, and every live descendant.
    ours: u64,
}

impl CpuSample {
    pub fn take() -> CpuSample {
        CpuSample { at: std::time::Instant::now(), machine_busy: machine_busy_jiffies(), ours: tree_jiffies() }
    }

    /// The share of the machine's CPU capacity (all cores) that processes outside the bench's
    /// tree used since `earlier`, 0..1.
    pub fn foreign_share_since(&self, earlier: &CpuSample) -> f64 {
        let elapsed = self.at.duration_since(earlier.at).as_secs_f64();
        let capacity = elapsed
            * clock_ticks_per_second() as f64
            * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        if capacity <= 0.0 {
            return 0.0;
        }
        let busy = self.machine_busy.saturating_sub(earlier.machine_busy) as f64;
        let ours = self.ours.saturating_sub(earlier.ours) as f64;
        ((busy - ours) / capacity).clamp(0.0, 1.0)
    }
}

fn machine_busy_jiffies() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else { return 0 };
    let f: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum()
}

/// `(ppid, utime + stime + cutime + cstime)` of a process.
fn process_times(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let times: u64 = (11..=14).filter_map(|i| f.get(i)?.parse::<u64>().ok()).sum();
    Some((ppid, times))
}

/// CPU jiffies of this process (reaped children included) and of every live descendant.
fn tree_jiffies() -> u64 {
    let me = std::process::id();
    let mut all: Vec<(u32, u32, u64)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some((ppid, times)) = process_times(pid) {
                all.push((pid, ppid, times));
            }
        }
    }
    let mut total = 0;
    let mut frontier = vec![me];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid, times) in &all {
            if pid == parent {
                total += times;
            }
            if ppid == parent {
                frontier.push(pid);
            }
        }
    }
    total
}

/// Waits (up to `timeout`) until other processes use under `max_share` of the machine over a
/// 10 s window. Returns the last share seen.
pub fn wait_for_quiet_machine(max_share: f64, timeout: Duration) -> f64 {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let before = CpuSample::take();
        std::thread::sleep(Duration::from_secs(10));
        let share = CpuSample::take().foreign_share_since(&before);
        if share < max_share || std::time::Instant::now() >= deadline {
            return share;
        }
        println!("    other processes use {:.0}% of the machine's CPU; waiting", share * 100.0);
    }
}

/// A `TcpExt` counter of `/proc/net/netstat` (e.g. `ListenOverflows`), machine-wide.
pub fn tcp_ext_counter(name: &str) -> Option<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let index = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(index)?.parse().ok()
}

/// A `Vm*` line of `/proc/<pid>/status` (e.g. `VmRSS`, `VmHWM`), in KiB.
pub fn vm_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// `GET /metrics` from the gateway's admin server.
pub fn scrape_metrics(admin: SocketAddr) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&admin, Duration::from_secs(5))
        .with_context(|| format!("connecting to the admin server at {admin}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("no HTTP header end in the /metrics answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET /metrics answered {}", head.lines().next().unwrap_or_default());
    }
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Ok(dechunk(body));
    }
    Ok(body.to_owned())
}

/// The body of a chunked HTTP answer.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The sum of every sample of the series `name` (all label sets) in a Prometheus text page.
pub fn metric_sum(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let series_name = series.split('{').next()?;
            (series_name == name).then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// The machine the benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub date_utc: String,
    pub java: String,
    pub rustc: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()))
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu_model,
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
            date_utc: command_line("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]),
            java: command_line("java", &["-version"]),
            rustc: command_line("rustc", &["--version"]),
        }
    }
}

/// The first line a command prints (stdout, else stderr), or "unknown".
fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text).lines().next().map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_over_labels() {
        let page = "# HELP switchyard_bytes Bytes\n# TYPE switchyard_bytes counter\n\
                    switchyard_bytes_total{route=\"main\",direction=\"client_to_broker\"} 100\n\
                    switchyard_bytes_total{route=\"main\",direction=\"broker_to_client\"} 23\n\
                    switchyard_bytes_totally 7\n";
        assert_eq!(metric_sum(page, "switchyard_bytes_total"), 123.0);
    }

    #[test]
    fn reads_own_cpu_and_memory() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(vm_kib(pid, "VmRSS").unwrap() > 0);
        assert!(vm_kib(pid, "VmHWM").unwrap() > 0);
        assert!(tcp_ext_counter("ListenOverflows").is_some());
    }

    #[test]
    fn samples_cpu() {
        let before = CpuSample::take();
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {}
        let share = CpuSample::take().foreign_share_since(&before);
        assert!((0.0..=1.0).contains(&share));
    }

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world");
    }
}
