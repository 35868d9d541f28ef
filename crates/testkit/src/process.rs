//! Child processes that cannot outlive the test that started them.
//!
//! Brokers, tools and the gateway are real processes. A panicking or killed test must not leave
//! JVMs behind, so every child here:
//! - runs in its own process group, so signals reach anything it forks;
//! - gets `PR_SET_PDEATHSIG(SIGKILL)`, so the kernel kills it when the test process dies;
//! - is stopped when its owner is dropped.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process. Test
//! harnesses run each test on its own thread, and a cluster shared between tests must survive the
//! thread that created it, so all children are forked from one long-lived spawner thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::poll::{poll_until, try_poll_until};

/// How long `Drop` waits after SIGTERM before it sends SIGKILL.
const DROP_GRACE: Duration = Duration::from_secs(10);
/// How long a [`ServerProcess`] may take to get ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a [`ServerProcess`]'s log goes into messages.
const LOG_TAIL_LINES: usize = 60;

/// A running child process that is stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    exit: Option<ExitStatus>,
    log_path: Option<PathBuf>,
}

impl ChildGuard {
    /// Spawns `cmd` as-is (the caller chooses its stdio).
    pub fn spawn(mut cmd: Command) -> Result<Self> {
        let program = format!("{:?}", cmd.get_program());
        prepare(&mut cmd);
        let child = spawn_on_spawner_thread(cmd).with_context(|| format!("spawning {program}"))?;
        Ok(Self { child, exit: None, log_path: None })
    }

    /// Spawns `cmd` with stdin closed and stdout+stderr appended to `log_path`.
    pub fn spawn_logged(mut cmd: Command, log_path: &Path) -> Result<Self> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("opening log {}", log_path.display()))?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let mut guard = Self::spawn(cmd)?;
        guard.log_path = Some(log_path.to_path_buf());
        Ok(guard)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited (reaps it without blocking).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll_until(timeout, || self.try_status()).ok()
    }

    /// Sends SIGTERM to the process group and waits up to `timeout`; `None` if it is still running.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal_group(libc::SIGTERM);
        self.wait_timeout(timeout)
    }

    /// Sends SIGKILL to the process group and reaps the process.
    pub fn kill(&mut self) {
        self.signal_group(libc::SIGKILL);
        if self.exit.is_none() {
            self.exit = self.child.wait().ok();
        }
    }

    /// Where stdout+stderr go, for processes started with [`ChildGuard::spawn_logged`].
    pub fn log_path(&self) -> Option<&Path> {
        self.log_path.as_deref()
    }

    /// Everything the process has logged so far (empty if it has no log file).
    pub fn log_contents(&self) -> String {
        self.log_path.as_deref().map(read_lossy).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_contents(), lines)
    }

    fn signal_group(&mut self, signal: libc::c_int) {
        // Once reaped, the pid may belong to someone else: never signal it again.
        if self.try_status().is_some() {
            return;
        }
        // The child leads its own group (process_group(0)), so pgid == pid.
        unsafe { libc::killpg(self.child.id() as libc::pid_t, signal) };
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.terminate(DROP_GRACE).is_none() {
            self.kill();
        }
    }
}

/// A server started from a config file, such as the gateway or HAProxy, which are the
/// [`GatewayProcess`](crate::GatewayProcess) and [`HaproxyProcess`](crate::HaproxyProcess)
/// wrappers around it: they add how to start each, and deref to this for the rest.
///
/// The config file and the server's log live in a private temporary directory, removed with it.
/// Waiting for the server to get ready fails as soon as it exits, with its log in the error.
/// Dropping it kills the server at once (no SIGTERM grace): a test that is done with a server has
/// no use for a clean shutdown, and tests that check one call [`ServerProcess::terminate`].
#[derive(Debug)]
pub struct ServerProcess {
    name: &'static str,
    child: ChildGuard,
    config_path: PathBuf,
    _dir: TempDir,
}

impl ServerProcess {
    /// Writes `config` to `config_file` in a new temporary directory, then spawns the command
    /// that `command` builds for that file's path, with stdin closed and stdout and stderr
    /// appended to `<name>.log` next to it.
    pub fn start(
        name: &'static str,
        config_file: &str,
        config: &str,
        command: impl FnOnce(&Path) -> Result<Command>,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix(&format!("switchyard-{name}-")).tempdir()?;
        let config_path = dir.path().join(config_file);
        fs::write(&config_path, config)?;
        let cmd = command(&config_path)?;
        let program = PathBuf::from(cmd.get_program());
        let child = ChildGuard::spawn_logged(cmd, &dir.path().join(format!("{name}.log")))
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Self { name, child, config_path, _dir: dir })
    }

    /// Polls `ready` until it returns true, for up to 30 s. Fails at once if the server exits
    /// first; the error says it was not `ready_means` (for example "listening on …") and carries
    /// the config and the end of the log.
    pub fn wait_until_ready(&mut self, ready_means: &str, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
        let (name, child) = (self.name, &mut self.child);
        let result = try_poll_until(START_TIMEOUT, || {
            if let Some(status) = child.try_status() {
                bail!("{name} exited during startup ({status})");
            }
            Ok(ready()?.then_some(()))
        });
        result.map_err(|e| {
            anyhow!(
                "{name} not {ready_means}: {e:#}\n--- {} ---\n{}\n--- {name} log ---\n{}",
                self.config_path.display(),
                read_lossy(&self.config_path),
                self.log_tail()
            )
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Everything the server has written to stdout and stderr so far.
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

    /// The config file the server was started with (a test may rewrite it to check reloads).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.child.kill();
    }
}

/// The captured result of a finished command.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    /// Fails (with both streams in the message) unless the command exited with status 0.
    pub fn ensure_success(self, what: &str) -> Result<Self> {
        if !self.status.success() {
            bail!("{what} failed ({}):\n{}", self.status, self.describe());
        }
        Ok(self)
    }

    /// stdout and stderr, labelled, for error messages.
    pub fn describe(&self) -> String {
        format!("--- stdout ---\n{}\n--- stderr ---\n{}", self.stdout.trim_end(), self.stderr.trim_end())
    }

    /// stdout split into lines.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lines().map(str::to_owned).collect()
    }
}

/// A child whose stdout and stderr are captured in (unnamed) temporary files, so it can run in the
/// background and be collected later. Killed if dropped before [`CapturedChild::wait`].
#[derive(Debug)]
pub struct CapturedChild {
    guard: ChildGuard,
    stdout: File,
    stderr: File,
    description: String,
}

impl CapturedChild {
    /// Spawns `cmd`; `stdin` (if any) is written by a helper thread and then closed.
    pub fn spawn(cmd: Command, stdin: Option<Vec<u8>>) -> Result<Self> {
        match stdin {
            // A child that exits early closes the pipe; the write error is then irrelevant.
            Some(data) => Self::spawn_fed(cmd, move |mut pipe| drop(pipe.write_all(&data))),
            None => Self::spawn_with(cmd, Stdio::null()).map(|(child, _)| child),
        }
    }

    /// Spawns `cmd` with its stdin written by `feed` on a helper thread, at its own pace; the
    /// pipe closes when `feed` returns.
    pub fn spawn_fed(cmd: Command, feed: impl FnOnce(ChildStdin) + Send + 'static) -> Result<Self> {
        let (child, pipe) = Self::spawn_with(cmd, Stdio::piped())?;
        if let Some(pipe) = pipe {
            std::thread::spawn(move || feed(pipe));
        }
        Ok(child)
    }

    fn spawn_with(mut cmd: Command, stdin: Stdio) -> Result<(Self, Option<ChildStdin>)> {
        let description = describe_command(&cmd);
        let stdout = tempfile::tempfile()?;
        let stderr = tempfile::tempfile()?;
        cmd.stdout(stdout.try_clone()?).stderr(stderr.try_clone()?).stdin(stdin);
        let mut guard = ChildGuard::spawn(cmd)?;
        let pipe = guard.child.stdin.take();
        Ok((Self { guard, stdout, stderr, description }, pipe))
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Waits up to `timeout` for the command to exit. Past it, the process group is killed and
    /// the error carries everything the command printed.
    pub fn wait(mut self, timeout: Duration) -> Result<CommandOutput> {
        let status = self.guard.wait_timeout(timeout);
        if status.is_none() {
            self.guard.kill();
        }
        let output = CommandOutput {
            status: self.guard.try_status().context("child not reaped")?,
            stdout: read_from_start(&mut self.stdout)?,
            stderr: read_from_start(&mut self.stderr)?,
        };
        if status.is_none() {
            bail!("`{}` timed out after {timeout:?}:\n{}", self.description, output.describe());
        }
        Ok(output)
    }
}

/// One line a [`TimedChild`] printed, stamped when the test read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedLine {
    /// When the line was read (Unix milliseconds).
    pub epoch_millis: u64,
    pub text: String,
}

/// What a [`TimedChild`] printed, and how it ended.
#[derive(Debug)]
pub struct TimedOutput {
    /// The exit status if it exited by itself within the wait; `None`: it was still running
    /// and was stopped.
    pub exited: Option<ExitStatus>,
    pub stdout: Vec<TimedLine>,
    pub stderr: Vec<TimedLine>,
}

type Lines = Arc<Mutex<Vec<TimedLine>>>;

/// A child whose stdout and stderr lines are read as they come and stamped with the time, so a
/// drill can tell when a client reported each delivery or record (a client that flushes each
/// line). Stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct TimedChild {
    guard: ChildGuard,
    stdout: Lines,
    stderr: Lines,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl TimedChild {
    /// Spawns `cmd`; `feed` (if any) writes its stdin on a helper thread, at its own pace, and
    /// the pipe closes when it returns. Without `feed`, stdin is closed.
    pub fn spawn(mut cmd: Command, feed: Option<Box<dyn FnOnce(ChildStdin) + Send>>) -> Result<Self> {
        let stdin = if feed.is_some() { Stdio::piped() } else { Stdio::null() };
        cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn(cmd)?;
        if let (Some(feed), Some(pipe)) = (feed, guard.child.stdin.take()) {
            std::thread::spawn(move || feed(pipe));
        }
        let (stdout, stderr) = (Lines::default(), Lines::default());
        let mut readers = Vec::new();
        if let Some(pipe) = guard.child.stdout.take() {
            readers.push(stamp_lines(pipe, Arc::clone(&stdout)));
        }
        if let Some(pipe) = guard.child.stderr.take() {
            readers.push(stamp_lines(pipe, Arc::clone(&stderr)));
        }
        Ok(Self { guard, stdout, stderr, readers })
    }

    /// The stdout lines read so far.
    pub fn stdout(&self) -> Vec<TimedLine> {
        self.stdout.lock().map(|lines| lines.clone()).unwrap_or_default()
    }

    /// The stderr lines read so far.
    pub fn stderr(&self) -> Vec<TimedLine> {
        self.stderr.lock().map(|lines| lines.clone()).unwrap_or_default()
    }

    /// Whether the child has exited.
    pub fn has_exited(&mut self) -> bool {
        self.guard.try_status().is_some()
    }

    /// Waits up to `timeout` for the child to exit by itself; past it, stops it (SIGTERM, 10 s
    /// later SIGKILL). Returns everything it printed.
    pub fn finish(mut self, timeout: Duration) -> TimedOutput {
        let exited = self.guard.wait_timeout(timeout);
        if exited.is_none() && self.guard.terminate(DROP_GRACE).is_none() {
            self.guard.kill();
        }
        // The pipes close with the process group; the readers then reach the end.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        TimedOutput { exited, stdout: self.stdout(), stderr: self.stderr() }
    }
}

/// Reads `pipe` line by line on a helper thread into `lines`, each stamped when it was read.
fn stamp_lines(pipe: impl Read + Send + 'static, lines: Lines) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for text in io::BufReader::new(pipe).lines().map_while(Result::ok) {
            let epoch_millis = unix_millis();
            if let Ok(mut lines) = lines.lock() {
                lines.push(TimedLine { epoch_millis, text });
            }
        }
    })
}

/// Runs `cmd` to completion with an optional stdin and a hard timeout. A non-zero exit is not an
/// error here; see [`CommandOutput::ensure_success`].
pub fn run(cmd: Command, stdin: Option<Vec<u8>>, timeout: Duration) -> Result<CommandOutput> {
    CapturedChild::spawn(cmd, stdin)?.wait(timeout)
}

/// Now, as Unix milliseconds (the clock the Java clients stamp their lines with).
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Reads a file as UTF-8 (lossily); empty if it cannot be read.
pub(crate) fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

fn read_from_start(file: &mut File) -> Result<String> {
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn describe_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

/// Own process group, and death with the parent process.
fn prepare(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: the closure only makes async-signal-safe syscalls (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() != parent {
                return Err(io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Forks `cmd` from a thread that lives as long as the process (see the module docs).
fn spawn_on_spawner_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner.send((cmd, reply_tx)).map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx.recv().map_err(|_| io::Error::other("spawner thread is gone"))?
}
