//! The `serverpulse-agent` command line.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::json;
use serverpulse_proto::time::format_timestamp;

use crate::collector::Collector;
use crate::config::{self, Config};
use crate::report;
use crate::runtime::Agent;
use crate::services::{self, Systemd};
use crate::transport::Credentials;

#[derive(Debug, Parser)]
#[command(name = "serverpulse-agent", version, about = "ServerPulse agent: reports this server to a ServerPulse hub")]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "SERVERPULSE_AGENT_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (as the systemd service does).
    Run,
    /// Collect once and print what would be reported.
    Collect {
        #[arg(long)]
        json: bool,
    },
    /// Print the state of the watched services.
    CheckServices {
        #[arg(long)]
        json: bool,
    },
    /// Check that the hub answers, and that it accepts this agent's credentials.
    TestConnection,
    /// Send an `info` alert to the hub to check the alert path end to end.
    SendTestAlert,
    /// Check the configuration file; errors name file, line and column.
    ValidateConfig,
    /// Open a maintenance window for this server: the hub records alerts but notifies
    /// nobody, e.g. `maintenance 30m "kernel upgrade"` (durations: 45m, 2h, 1h30m, 1d).
    Maintenance {
        duration: String,
        /// Why (shown in the hub's log).
        #[arg(default_value = "")]
        comment: String,
    },
    /// Register with the hub now (credentials go to the state file).
    Register {
        /// Hub URL, overriding `server.endpoint`.
        #[arg(long)]
        endpoint: Option<String>,
        /// One-time enrollment token from `serverpulse server add`.
        #[arg(long)]
        enrollment_token: Option<String>,
    },
}

/// `45m`, `2h`, `1h30m`, `1d` → minutes (1 minute to 7 days).
pub fn parse_minutes(text: &str) -> Option<u32> {
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        total += n * match c {
            'm' => 1,
            'h' => 60,
            'd' => 1440,
            _ => return None,
        };
    }
    if !number.is_empty() {
        return None;
    }
    u32::try_from(total).ok().filter(|m| (1..=7 * 1440).contains(m))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(config::load(path)?)
}

fn agent(config: Config, path: Option<PathBuf>) -> anyhow::Result<Agent> {
    Ok(Agent::new(config, path, Collector::host(), Box::new(Systemd::default()))?)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::ValidateConfig => {
            let config = load(&cli.config)?;
            println!("{}: OK (hub {})", cli.config.display(), config.server.endpoint.as_str());
            Ok(())
        }
        Command::Collect { json } => collect(json),
        Command::CheckServices { json } => {
            let configured = match config::load(&cli.config) {
                Ok(config) => config.monitoring.services,
                Err(_) => Vec::new(),
            };
            let mut source = Systemd::default();
            let units = services::watched_units(&configured, &mut source);
            let states = services::check(&units, &mut source);
            let via = if source.on_bus() { "systemd D-Bus API" } else { "systemctl" };
            eprintln!("unit states read with {via}");
            if json {
                println!("{}", serde_json::to_string(&states)?);
            } else {
                for s in states {
                    println!("{:<24} {:<10} {}", s.name, s.status, s.sub_state.unwrap_or_default());
                }
            }
            Ok(())
        }
        Command::TestConnection => {
            let config = load(&cli.config)?;
            let agent = agent(config, None)?;
            let health = agent.hub().health().with_context(|| format!("reaching {}", agent.hub().base()))?;
            println!("hub {} answers: {} (version {})", agent.hub().base(), health.status, health.version);
            match credentials(&agent) {
                Some(credentials) => {
                    let body = json!({"timestamp": format_timestamp(now_ms()), "status": "online"});
                    agent.hub().heartbeat(&credentials, &body).context("sending a heartbeat")?;
                    println!("credentials of agent {} accepted", credentials.agent_id);
                }
                None => println!("not registered yet (run `serverpulse-agent register`)"),
            }
            Ok(())
        }
        Command::SendTestAlert => {
            let config = load(&cli.config)?;
            let agent = agent(config, None)?;
            let Some(credentials) = credentials(&agent) else {
                bail!("not registered yet (run `serverpulse-agent register`)");
            };
            let alert = json!({"alerts": [{"type": "test", "severity": "info",
                "message": "test alert from serverpulse-agent", "timestamp": format_timestamp(now_ms())}]});
            agent.hub().alerts(&credentials, &alert).context("sending the test alert")?;
            println!("test alert sent to {}", agent.hub().base());
            Ok(())
        }
        Command::Maintenance { duration, comment } => {
            let minutes = parse_minutes(&duration).ok_or_else(|| {
                anyhow::anyhow!("{duration:?} is not a duration (e.g. 45m, 2h, 1h30m, 1d; from 1 minute to 7 days)")
            })?;
            let config = load(&cli.config)?;
            let agent = agent(config, None)?;
            let Some(credentials) = credentials(&agent) else {
                bail!("not registered yet (run `serverpulse-agent register`)");
            };
            let body = json!({"duration_minutes": minutes, "comment": comment});
            let opened = agent.hub().maintenance(&credentials, &body).context("opening the maintenance window")?;
            println!(
                "maintenance until {} (silence {}): alerts are recorded, nobody is notified",
                format_timestamp(opened.ends_at),
                opened.silence_id
            );
            Ok(())
        }
        Command::Register { endpoint, enrollment_token } => {
            let mut config = load_or_minimal(&cli.config, endpoint.as_deref())?;
            if let Some(token) = enrollment_token {
                config.server.enrollment_token = Some(credential(&token)?);
            }
            crate::logging::init(config.logging.level.as_str(), None);
            let mut agent = agent(config, None)?;
            agent.try_register(now_ms())?;
            match credentials(&agent) {
                Some(c) => {
                    println!("registered as agent {} (server {})", c.agent_id, agent.state().server_id.unwrap_or(0));
                    Ok(())
                }
                None => bail!("registration failed (see the message above)"),
            }
        }
        Command::Run => run_forever(&cli.config),
    }
}

fn credential(text: &str) -> anyhow::Result<config::Credential> {
    serde_json::from_value(json!(text)).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The configuration file, or — for `register --endpoint` on a fresh host — the defaults
/// around the given endpoint.
fn load_or_minimal(path: &std::path::Path, endpoint: Option<&str>) -> anyhow::Result<Config> {
    let mut config = match (config::load(path), endpoint) {
        (Ok(config), _) => config,
        (Err(config::ConfigError::Read { .. }), Some(endpoint)) => {
            config::parse("--endpoint", &format!("server:\n  endpoint: {}\n", json!(endpoint)))?
        }
        (Err(e), _) => return Err(e.into()),
    };
    if let Some(endpoint) = endpoint {
        config.server.endpoint =
            serde_json::from_value(json!(endpoint)).map_err(|e| anyhow::anyhow!("--endpoint: {e}"))?;
    }
    Ok(config)
}

fn credentials(agent: &Agent) -> Option<Credentials> {
    agent
        .state()
        .credentials_for(agent.hub().base())
        .map(|(id, token)| Credentials { agent_id: id.to_owned(), token: token.to_owned() })
}

fn collect(json: bool) -> anyhow::Result<()> {
    let mut collector = Collector::host();
    collector.prime(now_ms())?;
    std::thread::sleep(Duration::from_secs(1));
    let collection = collector.collect_once(now_ms())?;
    let mut source = Systemd::default();
    let units = services::watched_units(&[], &mut source);
    let states = services::check(&units, &mut source);
    let document = report::document(0, &collection, &states);
    if json {
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        let f = &collection.flat;
        println!("cpu        {:.1} %", f.cpu_usage);
        println!("memory     {:.1} %", f.memory_usage);
        match f.disk_usage {
            Some(disk) => println!("disk /     {disk:.1} %"),
            None => println!("disk /     not measurable"),
        }
        println!("load 1m    {:.2}", f.load_average);
        println!("uptime     {} s", f.uptime);
        println!("network    rx {} B  tx {} B since boot", f.network_rx, f.network_tx);
        println!("disk I/O   read {} B  written {} B since boot", f.disk_io_read, f.disk_io_write);
        println!("processes  {}", collection.detail.processes.total);
    }
    Ok(())
}

/// The service loop: tick, sleep until the next thing is due, stop on SIGTERM/SIGINT,
/// reload on SIGHUP, tell systemd when ready and feed its watchdog.
fn run_forever(path: &std::path::Path) -> anyhow::Result<()> {
    let config = load(path)?;
    crate::logging::init(config.logging.level.as_str(), config.logging.file.as_deref());
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))?;
    let mut agent = agent(config, Some(path.to_owned()))?;
    log::info!("serverpulse-agent {} reporting to {}", env!("CARGO_PKG_VERSION"), agent.hub().base());
    crate::sd_notify::notify("READY=1");
    while !stop.load(Ordering::Relaxed) {
        if reload.swap(false, Ordering::Relaxed)
            && let Err(e) = agent.reload()
        {
            log::error!("reload failed, keeping the running configuration: {e}");
        }
        let next = match agent.tick(now_ms()) {
            Ok(next) => next,
            Err(e) => {
                log::error!("{e}");
                now_ms() + 5_000
            }
        };
        crate::sd_notify::notify("WATCHDOG=1");
        while !stop.load(Ordering::Relaxed) && !reload.load(Ordering::Relaxed) && now_ms() < next {
            let left = (next - now_ms()).clamp(1, 1_000) as u64;
            std::thread::sleep(Duration::from_millis(left));
        }
    }
    crate::sd_notify::notify("STOPPING=1");
    log::info!("stopping; {} report(s) wait in the spool", agent.spool().len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_durations() {
        assert_eq!(parse_minutes("30m"), Some(30));
        assert_eq!(parse_minutes("1h30m"), Some(90));
        assert_eq!(parse_minutes("2h"), Some(120));
        assert_eq!(parse_minutes("1d"), Some(1440));
        for bad in ["", "30", "0m", "8d", "1x", "h"] {
            assert_eq!(parse_minutes(bad), None, "{bad:?}");
        }
    }
}
