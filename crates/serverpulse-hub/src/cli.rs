//! The `serverpulse` command line: serve the hub, or manage its inventory, users and
//! tokens directly in its database. Whoever can run this against the data directory is
//! an administrator, so these commands act with the console's admin capability.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use serverpulse_domain::Role;
use serverpulse_proto::time::format_timestamp;
use serverpulse_store::Store;
use serverpulse_store_postgres::PgStore;
use serverpulse_store_sqlite::SqliteStore;

use crate::admin;
use crate::app::{self, AppState};
use crate::auth::Admin;
use crate::clock::{Clock, SystemClock};
use crate::config::{self, ConfigValues, DatabaseLocation, HubConfig};
use crate::error::ApiError;
use crate::routes::alerts::{BacktestRequest, run_backtest};

#[derive(Debug, Parser)]
#[command(name = "serverpulse", version, about = "ServerPulse hub: self-hosted server monitoring")]
pub struct Cli {
    /// YAML configuration file.
    #[arg(long, global = true, env = "SERVERPULSE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding the embedded database (default ./serverpulse-data).
    #[arg(long, global = true, env = "SERVERPULSE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL (sqlite:…); overrides --data-dir.
    #[arg(long, global = true, env = "SERVERPULSE_DATABASE_URL")]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub.
    Serve(ServeArgs),
    /// First run: embedded database in ./serverpulse-data, an admin, this machine added, then serve.
    Quickstart(ServeArgs),
    /// Manage monitored servers.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Alert rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Apply database migrations and exit.
    Migrate,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// How many times a rule would have fired over a server's stored history.
    Backtest {
        /// A stored rule's id…
        #[arg(long, conflicts_with = "rule_file", required_unless_present = "rule_file")]
        rule_id: Option<i64>,
        /// …or a rule as JSON (as for POST /api/v1/rules), from a file.
        #[arg(long)]
        rule_file: Option<PathBuf>,
        #[arg(long)]
        server: i64,
        /// How far back, in days (default 7).
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8000).
    #[arg(long, env = "SERVERPULSE_LISTEN")]
    pub listen: Option<String>,
    /// How agents and people reach this hub (for install commands).
    #[arg(long, env = "SERVERPULSE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds between agent heartbeats (default 60).
    #[arg(long, env = "SERVERPULSE_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<u32>,
    /// Seconds between metric collections (default 30).
    #[arg(long, env = "SERVERPULSE_COLLECTION_INTERVAL")]
    pub collection_interval: Option<u32>,
    /// Seconds of silence before an agent is disconnected (default 3 × heartbeat).
    #[arg(long, env = "SERVERPULSE_OFFLINE_AFTER")]
    pub offline_after: Option<u32>,
    /// Largest request body in bytes, before and after gzip (default 10 MiB).
    #[arg(long, env = "SERVERPULSE_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Log filter, e.g. `info` or `serverpulse_hub=debug` (default info).
    #[arg(long, env = "SERVERPULSE_LOG")]
    pub log: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Add a server; prints its id, a one-time enrollment token and the install command.
    Add {
        #[arg(long)]
        name: String,
        /// The address its agent registers from.
        #[arg(long)]
        ip: String,
        /// Also issue agent credentials now, for agents configured by hand.
        #[arg(long)]
        with_credentials: bool,
        #[arg(long)]
        json: bool,
    },
    /// List servers with their agent status.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a server and its history.
    Remove { id: i64 },
    /// Mint another enrollment token for a server.
    Enroll {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from stdin with --password-stdin, else generated and printed.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        json: bool,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user (shown once).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "cli")]
        name: String,
        #[arg(long)]
        json: bool,
    },
}

fn parse_role(word: &str) -> Result<Role, String> {
    Role::parse(word).ok_or_else(|| "expected admin, operator or viewer".to_owned())
}

impl Cli {
    fn values(&self, serve: Option<&ServeArgs>) -> anyhow::Result<(ConfigValues, String)> {
        let file = match &self.config {
            Some(path) => config::load_file(path)?,
            None => ConfigValues::default(),
        };
        let serve = serve.map_or_else(ServeArgs::default, |s| ServeArgs {
            listen: s.listen.clone(),
            public_url: s.public_url.clone(),
            heartbeat_interval: s.heartbeat_interval,
            collection_interval: s.collection_interval,
            offline_after: s.offline_after,
            body_limit: s.body_limit,
            log: s.log.clone(),
        });
        let flags = ConfigValues {
            listen: serve.listen,
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            public_url: serve.public_url,
            heartbeat_interval: serve.heartbeat_interval,
            collection_interval: serve.collection_interval,
            offline_after: serve.offline_after,
            sweep_interval: None,
            body_limit: serve.body_limit,
            enrollment_ttl: None,
            command_ttl: None,
            agent_binary: None,
            ingest_queue: None,
            ingest_max_wait: None,
            ingest_commit_interval: None,
            retention: None,
            export: None,
            log: serve.log,
        };
        let origin = match &self.config {
            Some(path) => format!("{} (or its flag/env override)", path.display()),
            None => "command line/environment".to_owned(),
        };
        Ok((flags.or(file), origin))
    }
}

/// The configured database, opened.
#[derive(Debug, Clone)]
pub enum OpenedStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl OpenedStore {
    pub fn shared(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// Closes the connections (SQLite checkpoints its log).
    pub async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}

/// Opens the configured database, creating the data directory (owner-only) if needed.
pub async fn open_store(config: &HubConfig, now: i64) -> anyhow::Result<OpenedStore> {
    match &config.database {
        DatabaseLocation::SqliteFile(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_private_dir(dir)?;
            }
            let store = SqliteStore::open(path, now).await;
            Ok(OpenedStore::Sqlite(store.with_context(|| format!("opening the database {}", path.display()))?))
        }
        DatabaseLocation::SqliteUrl(url) => {
            let store = SqliteStore::open_url(url, now).await;
            Ok(OpenedStore::Sqlite(store.with_context(|| "opening the database from database_url".to_owned())?))
        }
        // The URL may hold a password: it is never part of the message.
        DatabaseLocation::PostgresUrl(url) => {
            let store = PgStore::open_url(url, now).await;
            Ok(OpenedStore::Postgres(
                store.with_context(|| "opening the PostgreSQL database of database_url".to_owned())?,
            ))
        }
    }
}

fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))
}

/// Initialises logging to stderr (stdout stays for command output).
pub fn init_logging(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Runs one command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let serve_args = match &cli.command {
        Command::Serve(args) | Command::Quickstart(args) => Some(args),
        _ => None,
    };
    let (mut values, origin) = cli.values(serve_args)?;
    if matches!(cli.command, Command::Quickstart(_)) && values.database_url.is_none() && values.data_dir.is_none() {
        values.data_dir = Some(PathBuf::from(config::DEFAULT_DATA_DIR));
    }
    let config = config::resolve(values, &origin)?;
    init_logging(&config.log);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = open_store(&config, clock.now_ms()).await?;
    let state = AppState::new(store.shared(), clock, config.settings.clone());
    let admin = Admin::console();
    let outcome = match cli.command {
        Command::Serve(_) => serve(&config, state).await,
        Command::Quickstart(_) => quickstart(&config, state, &admin).await,
        Command::Server(command) => server_command(&state, &admin, command).await,
        Command::User(command) => user_command(&state, &admin, command).await,
        Command::Token(TokenCommand::Create { email, name, json }) => {
            let (token, secret) = admin::create_token(&state, &admin, &email, &name).await.map_err(api)?;
            if json {
                println!("{}", json!({"id": token.id, "name": token.name, "token": secret}));
            } else {
                println!("API token {:?} for {email} (shown once):\n{secret}", token.name);
            }
            Ok(())
        }
        Command::Rules(RulesCommand::Backtest { rule_id, rule_file, server, days, json }) => {
            let rule = match rule_file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                    Some(serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?)
                }
                None => None,
            };
            let to = state.now();
            let from = to - i64::from(days) * 86_400_000;
            let request = BacktestRequest { rule, rule_id, server, from: Some(from), to: Some(to) };
            let result = run_backtest(&state, request).await.map_err(api)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                println!(
                    "{}: {} episode(s) over {} samples of server {server} in the last {days} day(s)",
                    result.rule.name, result.fired, result.samples
                );
                for e in &result.episodes {
                    let end = e.resolved_at.map_or_else(|| "still firing".to_owned(), format_timestamp);
                    let subject = if e.subject.is_empty() { String::new() } else { format!(" [{}]", e.subject) };
                    println!(
                        "  {} → {}  {}{subject}, peak {} (held since {})",
                        format_timestamp(e.fired_at),
                        end,
                        e.level.as_str(),
                        e.peak,
                        format_timestamp(e.started_at)
                    );
                }
            }
            Ok(())
        }
        Command::Migrate => {
            println!("database is up to date");
            Ok(())
        }
    };
    store.close().await;
    outcome
}

fn api(error: ApiError) -> anyhow::Error {
    match error {
        ApiError::Invalid(problem) => anyhow::anyhow!("{}", problem.summary()),
        other => anyhow::anyhow!("{other}"),
    }
}

async fn serve(config: &HubConfig, state: AppState) -> anyhow::Result<()> {
    crate::connections::raise_open_files_limit();
    let listener =
        crate::connections::listen(config.listen).with_context(|| format!("listening on {}", config.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, version = env!("CARGO_PKG_VERSION"), "ServerPulse hub listening");
    app::serve(listener, state, app::shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

async fn quickstart(config: &HubConfig, state: AppState, admin: &Admin) -> anyhow::Result<()> {
    let base = state.settings.public_url.clone();
    if state.store.list_users().await?.is_empty() {
        let email = "admin@localhost";
        let (_, password) = admin::add_user(&state, admin, email, Role::Admin, None).await.map_err(api)?;
        let (_, token) = admin::create_token(&state, admin, email, "quickstart").await.map_err(api)?;
        println!("Created the administrator (shown once, keep them safe):");
        println!("  e-mail:    {email}");
        println!("  password:  {}", password.unwrap_or_default());
        println!("  API token: {token}");
    } else {
        println!("Users exist already; add more with `serverpulse user add`.");
    }
    let agent_dir = quickstart_agent_dir(config);
    let agent_config = agent_dir.join("config.yml");
    if state.store.list_servers().await?.is_empty() {
        let name = local_hostname();
        let added = admin::add_server(&state, admin, &name, "127.0.0.1".parse()?).await.map_err(api)?;
        println!("Added this machine as server {} ({name}, 127.0.0.1).", added.server.id);
        create_private_dir(&agent_dir)?;
        std::fs::write(&agent_config, local_agent_config(&base, &added.enrollment.enrollment_token, &agent_dir))
            .with_context(|| format!("writing {}", agent_config.display()))?;
    }
    println!("Dashboard: {base}/  (sign in with the administrator's e-mail and password)");
    println!("ServerPulse hub at {base}  (API {base}/api/v1, OpenAPI {base}/api/openapi.json)");
    let agent = start_local_agent(&state.settings.agent_binary, &agent_config);
    let served = serve(config, state).await;
    if let Some(mut child) = agent {
        // SIGTERM lets the agent finish its current step; its spool keeps the rest.
        let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
    }
    served
}

/// Where quickstart keeps the local agent's configuration and state.
fn quickstart_agent_dir(config: &HubConfig) -> PathBuf {
    match &config.database {
        DatabaseLocation::SqliteFile(path) => path.parent().unwrap_or(std::path::Path::new(".")).join("agent"),
        DatabaseLocation::SqliteUrl(_) | DatabaseLocation::PostgresUrl(_) => {
            PathBuf::from(config::DEFAULT_DATA_DIR).join("agent")
        }
    }
}

fn local_agent_config(hub: &str, enrollment_token: &str, state_dir: &std::path::Path) -> String {
    format!(
        "# The agent quickstart runs for this machine.\nserver:\n  endpoint: {}\n  enrollment_token: {}\nstorage:\n  state_dir: {}\n",
        json!(hub),
        json!(enrollment_token),
        json!(state_dir.display().to_string())
    )
}

/// Runs `serverpulse-agent` for this machine, if it was built beside the hub.
fn start_local_agent(binary: &std::path::Path, config: &std::path::Path) -> Option<std::process::Child> {
    if !config.exists() {
        return None;
    }
    if !binary.exists() {
        println!(
            "No agent binary at {}; build it (cargo build --release) to see this machine's metrics.",
            binary.display()
        );
        return None;
    }
    match std::process::Command::new(binary).arg("--config").arg(config).arg("run").spawn() {
        Ok(child) => {
            println!("Started the agent for this machine; its first report arrives within a minute.");
            Some(child)
        }
        Err(e) => {
            println!("Could not start the agent {}: {e}", binary.display());
            None
        }
    }
}

fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "this-machine".to_owned())
}

async fn server_command(state: &AppState, admin: &Admin, command: ServerCommand) -> anyhow::Result<()> {
    match command {
        ServerCommand::Add { name, ip, with_credentials, json } => {
            let ip = admin::parse_ip("ip", &ip).map_err(api)?;
            let added = admin::add_server(state, admin, &name, ip).await.map_err(api)?;
            let credentials = if with_credentials {
                Some(admin::issue_credentials(state, admin, added.server.id).await.map_err(api)?)
            } else {
                None
            };
            if json {
                let mut out = serde_json::to_value(&added)?;
                if let Some(c) = &credentials {
                    out["agent_id"] = json!(c.agent_id);
                    out["auth_token"] = json!(c.auth_token);
                }
                println!("{out}");
            } else {
                println!("Added server {} ({name}, {ip}).", added.server.id);
                println!("Enrollment token (single use, shown once): {}", added.enrollment.enrollment_token);
                println!("Expires: {}", format_timestamp(added.enrollment.expires_at));
                println!("Install the agent on the server with:\n  {}", added.enrollment.install_command);
                if let Some(c) = credentials {
                    println!("Agent credentials (shown once): agent_id {}  auth_token {}", c.agent_id, c.auth_token);
                }
            }
        }
        ServerCommand::List { json } => {
            let servers = state.store.list_servers().await?;
            if json {
                println!("{}", serde_json::to_string(&servers)?);
            } else if servers.is_empty() {
                println!("No servers yet; add one with `serverpulse server add --name NAME --ip IP`.");
            } else {
                println!("{:>5}  {:<24} {:<40} {:<13} LAST CONTACT", "ID", "NAME", "IP", "AGENT");
                for s in servers {
                    let contact = s.agent_last_contact.map_or_else(|| "never".to_owned(), format_timestamp);
                    println!(
                        "{:>5}  {:<24} {:<40} {:<13} {contact}",
                        s.id,
                        s.name,
                        s.ip.to_string(),
                        s.agent_status.as_str()
                    );
                }
            }
        }
        ServerCommand::Remove { id } => {
            admin::remove_server(state, admin, id).await.map_err(api)?;
            println!("Removed server {id}.");
        }
        ServerCommand::Enroll { id, json } => {
            let issued = admin::new_enrollment(state, admin, id).await.map_err(api)?;
            if json {
                println!("{}", serde_json::to_string(&issued)?);
            } else {
                println!("Enrollment token (single use, shown once): {}", issued.enrollment_token);
                println!("Expires: {}", format_timestamp(issued.expires_at));
                println!("Install command:\n  {}", issued.install_command);
            }
        }
    }
    Ok(())
}

async fn user_command(state: &AppState, admin: &Admin, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { email, role, password_stdin, json } => {
            let password = if password_stdin {
                let stdin = std::io::stdin();
                if stdin.is_terminal() {
                    eprintln!("Password: ");
                }
                let mut line = String::new();
                stdin.lock().read_line(&mut line)?;
                let line = line.trim_end_matches(['\r', '\n']).to_owned();
                if line.is_empty() {
                    bail!("no password on stdin");
                }
                Some(line)
            } else {
                None
            };
            let (user, generated) = admin::add_user(state, admin, &email, role, password).await.map_err(api)?;
            if json {
                println!("{}", json!({"id": user.id, "email": user.email, "role": user.role, "password": generated}));
            } else {
                println!("Added user {} ({}) with role {}.", user.id, user.email, user.role);
                if let Some(p) = generated {
                    println!("Generated password (shown once): {p}");
                }
            }
        }
        UserCommand::List { json } => {
            let users = state.store.list_users().await?;
            if json {
                println!("{}", serde_json::to_string(&users)?);
            } else {
                for u in users {
                    println!("{:>5}  {:<40} {}", u.id, u.email, u.role);
                }
            }
        }
    }
    Ok(())
}
