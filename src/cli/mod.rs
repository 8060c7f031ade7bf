//! The `bahinlink` command line: argument parsing, settings layering, and dispatch to the
//! subcommands. Exit codes: 0 success, 1 failure at run time, 2 bad usage or configuration.

mod admin;
mod demo;
mod loadgen;
mod migrate;
mod seed;
mod serve;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::configuration::{ConfigError, Settings};

/// BahinLink Dispatch: realtime tracking and dispatch daemon for security guard companies.
#[derive(Debug, Parser)]
#[command(name = "bahinlink", version, about, propagate_version = true)]
pub struct Cli {
    /// Settings file layered over the defaults (see config/default.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// PostgreSQL connection string; when absent the config file's database.url, else the
    /// embedded cluster, is used.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (HTTP API, WebSockets, actors).
    Serve {
        /// Listen address, e.g. 127.0.0.1:8080 (overrides server.listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Apply pending schema migrations (or inspect / reset them).
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// Fill an empty database with demo data.
    Seed {
        /// Load the demo data set (Lomé: 3 clients, 12 sites, 60 agents, a week of shifts).
        #[arg(long)]
        demo: bool,
        /// Where to write the agents' device tokens (created, mode 0600; must not exist).
        #[arg(
            long,
            value_name = "FILE",
            default_value = "./data/demo-device-tokens.csv"
        )]
        tokens_file: PathBuf,
    },
    /// Load the daemon with simulated agents and measure throughput and latency.
    /// Runs the daemon on its own embedded PostgreSQL with the demo data and simulated
    /// guards: open the printed URL. Ctrl-C stops everything.
    Demo {
        /// Address to listen on (default: `server.listen`, 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Simulated guards (at most the agents with a shift running now).
        #[arg(long, default_value_t = 60)]
        agents: usize,
        /// Where the demo's cluster, logins and tokens live.
        #[arg(long, value_name = "DIR", default_value = demo::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    Loadgen(loadgen::LoadgenArgs),
    /// Manage administrators.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
}

/// `bahinlink admin <action>`.
#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Create an ADMIN user; prints its id.
    Create {
        /// Login email.
        #[arg(long)]
        email: String,
        /// Password (visible in the process list: prefer --password-stdin).
        #[arg(long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `bahinlink migrate <action>`.
#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// List applied and pending migrations with their checksums.
    Status,
    /// Drop the whole schema and every row in it, then re-apply all migrations.
    Reset {
        /// Confirm that all data in the database is to be destroyed.
        #[arg(long)]
        yes: bool,
    },
}

/// A failure that ends the command, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }

    /// Wraps any error with its source chain as the message.
    pub(crate) fn failed(e: impl std::error::Error) -> Self {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        CliError::Failed(message)
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let settings = Settings::load(cli.config.as_deref(), std::env::vars())?
        .with_database_url(cli.database_url)?;
    crate::telemetry::init(&settings.logging);
    let system = actix_web::rt::System::new();
    match cli.command {
        Command::Serve { listen } => {
            let settings = settings.with_listen(listen.as_deref())?;
            system.block_on(serve::serve(settings))
        }
        Command::Migrate { action } => system.block_on(migrate::migrate(settings, action)),
        Command::Seed { demo, tokens_file } => {
            if !demo {
                return Err(CliError::Usage(
                    "`seed` needs --demo (the only data set there is)".into(),
                ));
            }
            system.block_on(seed::demo(settings, tokens_file))
        }
        Command::Demo {
            listen,
            agents,
            data_dir,
        } => {
            let settings = settings.with_listen(listen.as_deref())?;
            system.block_on(demo::demo(settings, data_dir, agents))
        }
        Command::Loadgen(args) => system.block_on(loadgen::run(settings, args)),
        Command::Admin {
            action:
                AdminAction::Create {
                    email,
                    password,
                    password_stdin,
                },
        } => system.block_on(admin::create(settings, email, password, password_stdin)),
    }
}
