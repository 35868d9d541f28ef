//! The `switchyard` command line: `run` a gateway, `check` a config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, GatewayConfig};
use crate::gateway::Gateway;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A Kafka gateway: routes clients to Kafka clusters through one stable endpoint"
)]
pub struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "GATEWAY_LOG_JSON")]
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
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
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
    }
    out
}

fn status(admin: Option<String>) -> ExitCode {
    match crate::admin::status::render(&admin.unwrap_or_else(crate::admin::status::default_admin_url)) {
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
    let config = match arg.load() {
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
    runtime.block_on(serve(config))
}

async fn serve(config: GatewayConfig) -> ExitCode {
    let gateway = match Gateway::start(&config).await {
        Ok(gateway) => gateway,
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(config = %config.source, listeners = gateway.listening().len(), "switchyard gateway started");
    let signal = wait_for_stop_signal().await;
    tracing::info!("{signal} received: no longer accepting, draining in-flight requests");
    if gateway.shutdown().await {
        tracing::info!("all connections drained, exiting");
    } else {
        tracing::warn!("drain timeout reached with connections still open, exiting");
    }
    ExitCode::SUCCESS
}

async fn wait_for_stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler can be installed");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
