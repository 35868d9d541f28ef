//! The Switchyard gateway binary as a child process.
//!
//! End-to-end tests run the real binary (not the library in-process) so that config loading,
//! signal handling and listener setup are covered exactly as deployed, and so that a crash shows
//! up as a dead process with a log rather than a poisoned test.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::poll::try_poll_until;
use crate::process::ChildGuard;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const LOG_TAIL_LINES: usize = 60;

/// A running gateway; killed when dropped.
#[derive(Debug)]
pub struct GatewayProcess {
    child: ChildGuard,
    config_path: PathBuf,
    _dir: TempDir,
}

impl GatewayProcess {
    /// Writes `config_yaml` to a temporary file, runs `<binary> run --config <file>` with
    /// `RUST_LOG=info` (unless `RUST_LOG` is already set) and waits up to 30 s until every
    /// address in `wait_for` accepts TCP connections.
    pub fn start(binary: &Path, config_yaml: &str, wait_for: &[SocketAddr]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("switchyard-gateway-").tempdir()?;
        let config_path = dir.path().join("switchyard.yaml");
        fs::write(&config_path, config_yaml)?;
        let mut cmd = Command::new(binary);
        cmd.arg("run").arg("--config").arg(&config_path);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = ChildGuard::spawn_logged(cmd, &dir.path().join("gateway.log"))
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut gateway = Self { child, config_path, _dir: dir };
        gateway.wait_for_listeners(wait_for)?;
        Ok(gateway)
    }

    fn wait_for_listeners(&mut self, addrs: &[SocketAddr]) -> Result<()> {
        let child = &mut self.child;
        let result = try_poll_until(START_TIMEOUT, || {
            if let Some(status) = child.try_status() {
                bail!("gateway exited during startup ({status})");
            }
            Ok(addrs.iter().all(|addr| TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).is_ok()).then_some(()))
        });
        result
            .map_err(|e| anyhow!("gateway not listening on {addrs:?}: {e:#}\n--- gateway log ---\n{}", self.log_tail()))
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Everything the gateway has written to stdout and stderr so far.
    pub fn log_contents(&self) -> String {
        self.child.log_contents()
    }

    /// The last lines of the log, for assertion messages.
    pub fn log_tail(&self) -> String {
        self.child.log_tail(LOG_TAIL_LINES)
    }

    /// Sends SIGTERM and waits up to `timeout`; `None` if it is still running.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.terminate(timeout)
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// The YAML file the gateway was started with (it may be rewritten to test reloads).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.child.kill();
    }
}
