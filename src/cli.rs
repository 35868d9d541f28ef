//! The `switchyard` command line: `run` a gateway, `check` a config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::admin::client;
use crate::config::watch::ConfigWatch;
use crate::config::{self, GatewayConfig};
use crate::config::{CatchUpPolicy, FenceMode, SwitchoverRequest};
use crate::gateway::{Gateway, Listeners};
use crate::switchover::DEFAULT_CATCH_UP_TIMEOUT;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A Kafka gateway: routes clients to Kafka clusters through one stable endpoint"
)]
pub struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "GATEWAY_LOG_JSON", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gateway and serve until SIGTERM or Ctrl-C.
    Run(ConfigArg),
    /// Validate a config and print the routes and their port maps, without starting anything.
    Check(ConfigArg),
    /// Show a running gateway's routes and domains, from its admin API.
    Status {
        /// The admin API's base URL; defaults to http://$GATEWAY_ADMIN_ADDRESS, else http://127.0.0.1:9190.
        #[arg(long)]
        admin: Option<String>,
    },
    /// Move every client of a route to another streaming domain, live (token: $GATEWAY_ADMIN_TOKEN).
    Switchover(SwitchoverCommand),
    /// Print a SCRAM verifier for a swap route's client JAAS file; the password is read from
    /// standard input (its first line), never from the command line.
    ScramVerifier(ScramVerifierCommand),
}

#[derive(Debug, clap::Args)]
pub struct ScramVerifierCommand {
    /// The client user the verifier is for.
    #[arg(long)]
    user: String,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, default_value = "SCRAM-SHA-256", value_parser = ["SCRAM-SHA-256", "SCRAM-SHA-512"])]
    mechanism: String,
    /// PBKDF2 iterations (Kafka allows 4096 to 16384).
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(4096..=16384))]
    iterations: u32,
}

#[derive(Debug, clap::Args)]
pub struct SwitchoverCommand {
    /// The route to switch.
    #[arg(long)]
    route: String,
    /// The destination streaming domain.
    #[arg(long)]
    to: String,
    /// Run the pre-flight checks only and print the report.
    #[arg(long)]
    dry_run: bool,
    /// Wait for replication before the cut: none, offsets (offset-preserving tools) or records
    /// (MirrorMaker 2). Defaults to the route's configured policy.
    #[arg(long, value_parser = ["none", "offsets", "records"])]
    catch_up: Option<String>,
    /// With --catch-up records: how many records the destination may lack per topic.
    #[arg(long, default_value_t = 0)]
    max_lag: i64,
    /// Give up (and unfence on the source) if replication has not caught up by then.
    #[arg(long)]
    catch_up_timeout_ms: Option<u64>,
    /// What the fence does with requests: hold (clients pause) or error (clients get a
    /// retriable error and retry). Defaults to the route's configured mode.
    #[arg(long, value_enum)]
    fence: Option<FenceMode>,
    /// The admin API's base URL; defaults to http://$GATEWAY_ADMIN_ADDRESS, else http://127.0.0.1:9190.
    #[arg(long)]
    admin: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The YAML config file; defaults to $GATEWAY_CONFIG_FILE, else the built-in local default.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    fn load(&self) -> Result<GatewayConfig, config::ConfigError> {
        config::load(config::resolve_path(self.config.clone()).as_deref())
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    match cli.command {
        Command::Check(arg) => check(&arg),
        Command::Run(arg) => run(&arg),
        Command::Status { admin } => status(admin),
        Command::Switchover(command) => switchover(command),
        Command::ScramVerifier(command) => scram_verifier(&command),
    }
}

/// `switchyard scram-verifier`: a `user_<name>="<verifier>"` option for a `ScramLoginModule`.
fn scram_verifier(command: &ScramVerifierCommand) -> ExitCode {
    use crate::protocol::scram::{ScramHash, ScramVerifier};
    let mut password = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut password) {
        eprintln!("error: cannot read the password from standard input: {e}");
        return ExitCode::FAILURE;
    }
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("error: no password on standard input (e.g. `printf '%s' \"$PW\" | switchyard scram-verifier --user alice`)");
        return ExitCode::FAILURE;
    }
    let hash = ScramHash::from_mechanism(&command.mechanism).unwrap_or(ScramHash::Sha256);
    let mut salt = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut salt) {
        eprintln!("error: no random source for the salt: {e}");
        return ExitCode::FAILURE;
    }
    let verifier = ScramVerifier::derive(hash, password, &salt, command.iterations);
    println!("user_{}=\"{}\"", command.user, verifier.to_kafka_string());
    ExitCode::SUCCESS
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colours);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn check(arg: &ConfigArg) -> ExitCode {
    match arg.load() {
        Ok(config) => {
            print!("{}", describe(&config));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The human-readable summary `check` prints.
pub fn describe(config: &GatewayConfig) -> String {
    let mut out = format!("config {} is valid\n", config.source);
    for route in &config.routes {
        let (first, last) = route.port_map.port_span();
        out += &format!(
            "\nroute {}\n  endpoint        {} (listening on {}, ports {first}-{last})\n  domain          {}\n  upstream        {}\n  port map        node id -> port\n",
            route.name,
            route.endpoint,
            route.bind_ip,
            route.domain,
            route.upstream_bootstrap.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        );
        for range in route.port_map.ranges() {
            let first_port = route.port_map.port_for(range.start).unwrap_or_default();
            let last_port = route.port_map.port_for(range.end).unwrap_or_default();
            out += &format!(
                "    range {:<10} nodes {}-{} -> ports {first_port}-{last_port}\n",
                range.name, range.start, range.end
            );
        }
        let timeout = route
            .catch_up_timeout
            .map_or_else(|| format!("{DEFAULT_CATCH_UP_TIMEOUT:?} (default)"), |t| format!("{t:?}"));
        out += &format!("  switchover      catch-up {}, timeout {timeout}, fence {}\n", route.catch_up, route.fence);
    }
    if config.reload.watch {
        out += &format!("\nreload: the file is watched every {:?}\n", config.reload.interval);
    }
    out
}

fn switchover(command: SwitchoverCommand) -> ExitCode {
    let catch_up = command.catch_up.as_deref().map(|policy| match policy {
        "offsets" => CatchUpPolicy::Offsets,
        "records" => CatchUpPolicy::Records { max_lag: command.max_lag },
        _ => CatchUpPolicy::None,
    });
    let request = SwitchoverRequest {
        to: command.to,
        dry_run: command.dry_run,
        catch_up,
        catch_up_timeout_ms: command.catch_up_timeout_ms,
        fence: command.fence,
        topics: None,
        group_offsets: None,
    };
    match client::switchover(&command.admin.unwrap_or_else(client::default_admin_url), &command.route, &request) {
        Ok((ok, report)) => {
            print!("{report}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn status(admin: Option<String>) -> ExitCode {
    match client::status(&admin.unwrap_or_else(client::default_admin_url)) {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(arg: &ConfigArg) -> ExitCode {
    let path = config::resolve_path(arg.config.clone());
    let config = match config::load(path.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(config, path));
    // A metadata probe of an unreachable cluster may still be blocked in librdkafka: do not
    // hold the exit for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

async fn serve(config: GatewayConfig, path: Option<PathBuf>) -> ExitCode {
    // Handlers first: once the ports are bound, a SIGHUP or SIGTERM must not find the default
    // action (terminate) still in place.
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = async { Gateway::start(&config, Listeners::bind(&config).await?).await };
    let gateway = match started.await {
        Ok(gateway) => gateway,
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(config = %config.source, listeners = gateway.listening().len(), "switchyard gateway started");
    let mut watch = watch_config(&config, path.as_deref());
    loop {
        let signal = tokio::select! {
            signal = signals.next() => signal,
            () = file_changed(&mut watch) => Signal::Reload("config file changed"),
        };
        match signal {
            Signal::Reload(cause) => reload(&gateway, path.as_deref(), cause).await,
            Signal::Stop(name) => {
                tracing::info!("{name} received: no longer accepting, draining in-flight requests");
                break;
            }
        }
    }
    if gateway.shutdown().await {
        tracing::info!("all connections drained, exiting");
    } else {
        tracing::warn!("drain timeout reached with connections still open, exiting");
    }
    ExitCode::SUCCESS
}

/// SIGHUP, or an edit seen by the watch: read the config file again and apply what can be
/// applied live.
async fn reload(gateway: &Gateway, path: Option<&Path>, cause: &str) {
    let Some(path) = path else {
        tracing::warn!("{cause} ignored: the gateway runs on the built-in default config, there is no file to reload");
        return;
    };
    match config::load(Some(path)) {
        Ok(edited) => {
            tracing::info!("{cause}: reloading {}", path.display());
            gateway.reload(&edited).await;
        }
        Err(e) => tracing::error!("{cause}: config not reloaded, the running one stays in force: {e}"),
    }
}

/// The watch on the config file, when `reload.watch` asks for one.
fn watch_config(config: &GatewayConfig, path: Option<&Path>) -> Option<ConfigWatch> {
    if !config.reload.watch {
        return None;
    }
    let Some(path) = path else {
        tracing::warn!(
            "reload.watch ignored: the gateway runs on the built-in default config, there is no file to watch"
        );
        return None;
    };
    tracing::info!("watching {} for edits every {:?}", path.display(), config.reload.interval);
    Some(ConfigWatch::new(path, config.reload.interval))
}

/// Resolves when the watched file changed; never without a watch.
async fn file_changed(watch: &mut Option<ConfigWatch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

enum Signal {
    /// Why the config is read again.
    Reload(&'static str),
    Stop(&'static str),
}

struct Signals {
    term: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals { term: signal(SignalKind::terminate())?, hangup: signal(SignalKind::hangup())? })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop("SIGTERM"),
            _ = tokio::signal::ctrl_c() => Signal::Stop("SIGINT"),
            _ = self.hangup.recv() => Signal::Reload("SIGHUP"),
        }
    }
}
