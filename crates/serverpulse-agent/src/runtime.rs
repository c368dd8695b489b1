//! The agent's life: register, then collect → send (or spool), heartbeat and fetch
//! commands, each on its own schedule, without losing a report to a hub outage.
//!
//! [`Agent::tick`] does whatever is due at `now` and says when to wake next; the `run`
//! command only sleeps in between. A report goes straight to the hub while the hub
//! answers and the spool is empty; otherwise it is appended (fsynced) to the spool and
//! removed only once the hub acknowledged it (stored or already stored), so an outage, a
//! restart or a crash while spooling loses nothing the spool's cap can hold. The one
//! window left is the report being sent at the instant the agent process dies.

use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;

use serde_json::{Value, json};
use serverpulse_proto::command::{CommandType, WireCommand, signing_payload};
use serverpulse_proto::responses::AgentConfig;
use serverpulse_proto::time::format_timestamp;

use crate::backoff::Backoff;
use crate::collector::Collector;
use crate::config::Config;
use crate::logwatch::LogWatch;
use crate::report::{self, ServiceState};
use crate::services::{self, ServiceSource};
use crate::spool::Spool;
use crate::state::{AgentState, StateFile};
use crate::thresholds::Thresholds;
use crate::transport::{Credentials, Hub, TransportError};

/// Reports per replay batch.
pub const BATCH: usize = 50;
/// Commands are fetched when the hub signals them, and at least this often.
pub const COMMAND_POLL_MS: i64 = 5 * 60 * 1000;
/// Seqs reserved per state-file write.
pub const SEQ_BLOCK: u64 = 1_000;
/// Alerts per request.
pub const ALERT_BATCH: usize = 100;
/// Cap of the alert spool (alerts are small; a flood is summarised before it gets here).
pub const ALERT_SPOOL_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Collect(#[from] crate::collect::CollectError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// When each activity is next due (Unix ms).
#[derive(Debug, Clone, Copy, Default)]
struct Schedule {
    register: i64,
    collect: i64,
    send: i64,
    heartbeat: i64,
    commands: i64,
}

pub struct Agent {
    /// What runs: the file's configuration with the hub's per-server settings over it.
    config: Config,
    /// The configuration file as read (the base the hub's settings are laid over).
    file_config: Config,
    config_path: Option<PathBuf>,
    state_file: StateFile,
    state: AgentState,
    /// The seq the next report gets; `state.next_seq` is the end of the reserved block.
    next_seq: u64,
    hub: Hub,
    collector: Collector,
    spool: Spool,
    service_source: Box<dyn ServiceSource>,
    units: Vec<String>,
    /// Alerts raised here and not yet accepted by the hub (durable, like reports).
    alerts: Spool,
    thresholds: Thresholds,
    logs: LogWatch,
    collection_ms: i64,
    heartbeat_ms: i64,
    schedule: Schedule,
    backoff: Backoff,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("hub", &self.hub.base()).field("state", &self.state).finish_non_exhaustive()
    }
}

impl Agent {
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        collector: Collector,
        mut service_source: Box<dyn ServiceSource>,
    ) -> Result<Self, AgentError> {
        let state_file = StateFile::in_dir(&config.storage.state_dir);
        let state = state_file.load()?;
        let spool = Spool::open(&config.storage.state_dir.join("spool"), config.storage.spool_max_bytes)?;
        let alerts = Spool::open(&config.storage.state_dir.join("alerts"), ALERT_SPOOL_BYTES)?;
        let hub = Hub::from_config(&config)?;
        let file_config = config;
        // Settings the hub sent before a restart apply at once, without waiting for it.
        let config = match (&state.hub_settings, &state.hub) {
            (Some(settings), Some(base)) if base == hub.base() => file_config.with_hub_settings(settings),
            _ => file_config.clone(),
        };
        let units = services::watched_units(&config.monitoring.services, service_source.as_mut());
        let collection_ms = i64::from(config.collection.interval.0) * 1000;
        let thresholds = Thresholds::from_config(&config.alerts);
        let logs = LogWatch::new(&config.monitoring, &config.storage.state_dir);
        Ok(Self {
            config,
            file_config,
            config_path,
            state_file,
            next_seq: state.next_seq,
            state,
            hub,
            collector,
            spool,
            service_source,
            units,
            alerts,
            thresholds,
            logs,
            collection_ms,
            heartbeat_ms: 60_000,
            schedule: Schedule::default(),
            backoff: Backoff::new(1_000, 300_000),
        })
    }

    pub fn state(&self) -> &AgentState {
        &self.state
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    fn credentials(&self) -> Option<Credentials> {
        self.state
            .credentials_for(self.hub.base())
            .map(|(agent_id, token)| Credentials { agent_id: agent_id.to_owned(), token: token.to_owned() })
    }

    /// Does what is due at `now`; returns when to call again.
    pub fn tick(&mut self, now: i64) -> Result<i64, AgentError> {
        if !self.collector.is_primed() {
            self.collector.prime(now)?;
            self.schedule.collect = now + self.collection_ms;
        }
        if now >= self.schedule.collect {
            self.collect_and_deliver(now)?;
            self.schedule.collect = now + self.collection_ms;
        }
        if self.credentials().is_none() && now >= self.schedule.register {
            self.try_register(now)?;
        }
        if let Some(credentials) = self.credentials() {
            if now >= self.schedule.send && !self.spool.is_empty() {
                self.flush(&credentials, now)?;
            }
            if now >= self.schedule.send {
                self.send_alerts(&credentials, now)?;
            }
            if now >= self.schedule.heartbeat {
                self.heartbeat(&credentials, now);
            }
            if now >= self.schedule.commands {
                self.poll_commands(&credentials, now)?;
            }
        }
        let mut next = self.schedule.collect;
        if self.credentials().is_none() {
            next = next.min(self.schedule.register);
        } else {
            if !self.spool.is_empty() {
                next = next.min(self.schedule.send);
            }
            next = next.min(self.schedule.heartbeat).min(self.schedule.commands);
        }
        Ok(next.max(now + 10))
    }

    /// Collects once and appends the report to the spool (durably).
    /// Collects once and delivers the report: straight to the hub when nothing is
    /// waiting in the spool and the hub is answering, else (or if that send fails) into
    /// the spool, durably, behind the reports already there.
    pub fn collect_and_deliver(&mut self, now: i64) -> Result<(), AgentError> {
        let document = self.collect_report(now)?;
        let direct = self.credentials().filter(|_| self.spool.is_empty() && now >= self.schedule.send);
        if let Some(credentials) = direct {
            match self.hub.send_reports(&credentials, &[document.as_str()]) {
                Ok(accepted) => {
                    if accepted.commands_pending > 0 {
                        self.schedule.commands = now;
                    }
                    self.backoff.reset();
                    return Ok(());
                }
                Err(TransportError::Refused { status, message }) => {
                    log::error!("hub refused a report for good ({status}: {message}); dropping it");
                    return Ok(());
                }
                Err(error) => {
                    self.handle_failure(&error, now);
                    self.schedule.send = now + self.retry_delay_ms(&error);
                }
            }
        }
        self.spool.push(document.as_bytes())?;
        Ok(())
    }

    /// Collects once: the report document, with alerts it raised stored durably first.
    fn collect_report(&mut self, now: i64) -> Result<String, AgentError> {
        let collection = self.collector.collect_once(now)?;
        let services = services::check(&self.units, self.service_source.as_mut());
        let mut raised = self.service_changes(&services, now);
        raised.extend(self.thresholds.observe(&collection.flat, now));
        raised.extend(self.logs.poll(now));
        for alert in &raised {
            self.alerts.push(alert.to_string().as_bytes())?;
        }
        // Lines that raised alerts are only marked read once the alerts are on disk.
        self.logs.commit();
        let seq = self.take_seq()?;
        let unit_states: std::collections::BTreeMap<String, String> =
            services.iter().map(|s| (s.name.clone(), s.status.clone())).collect();
        if unit_states != self.state.services {
            self.state.services = unit_states;
            self.state_file.save(&self.state)?;
        }
        let mut document = report::document(seq, &collection, &services);
        document.spool_dropped = Some(self.spool.dropped()).filter(|d| *d > 0);
        Ok(serde_json::to_string(&document).unwrap_or_default())
    }

    /// The next report `seq`. Seqs are reserved on disk a block at a time, before any
    /// of them is used, so a restart continues above everything possibly sent (leaving a
    /// gap, which the hub does not mind) without a disk write per report.
    fn take_seq(&mut self) -> Result<u64, AgentError> {
        if self.next_seq >= self.state.next_seq {
            self.state.next_seq = self.next_seq + SEQ_BLOCK;
            self.state_file.save(&self.state)?;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    /// A unit that turned `failed` raises a `service_failure` alert at once, with the
    /// unit's last journal lines when the journal is readable.
    fn service_changes(&self, now_states: &[ServiceState], now: i64) -> Vec<Value> {
        let mut raised = Vec::new();
        for state in now_states {
            let before = self.state.services.get(&state.name).cloned();
            if state.status == "failed" && before.as_deref() != Some("failed") {
                log::warn!("service {} failed (was {})", state.name, before.as_deref().unwrap_or("not yet seen"));
                raised.push(json!({
                    "type": "service_failure",
                    "severity": "critical",
                    "message": format!("service {} failed", state.name),
                    "details": {"unit": state.name, "previous": before, "sub_state": state.sub_state,
                                "restarts": state.restarts, "journal": journal_tail(&state.name)},
                    "timestamp": format_timestamp(now),
                }));
            }
        }
        raised
    }

    /// Sends spooled alerts; they stay spooled while the hub is away.
    fn send_alerts(&mut self, credentials: &Credentials, now: i64) -> Result<(), AgentError> {
        while !self.alerts.is_empty() {
            let records = self.alerts.peek(ALERT_BATCH)?;
            let alerts: Vec<Value> = records.iter().filter_map(|r| serde_json::from_slice(r).ok()).collect();
            match self.hub.alerts(credentials, &json!({ "alerts": alerts })) {
                Ok(_) => self.alerts.consume(records.len())?,
                Err(TransportError::Refused { status, message }) => {
                    log::error!("hub refused {} alert(s) ({status}: {message}); dropping them", records.len());
                    self.alerts.consume(records.len())?;
                }
                Err(error) => {
                    self.handle_failure(&error, now);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Alerts waiting for the hub.
    pub fn pending_alerts(&self) -> usize {
        self.alerts.len()
    }

    /// Sends spooled reports in batches until the spool is empty or the hub fails.
    pub fn flush(&mut self, credentials: &Credentials, now: i64) -> Result<(), AgentError> {
        while !self.spool.is_empty() {
            let records = self.spool.peek(BATCH)?;
            let reports: Vec<&str> = records.iter().filter_map(|r| json_text(r)).collect();
            if reports.len() != records.len() {
                // Unparseable records cannot have come from this agent; drop the batch's bad ones.
                log::error!("dropping {} unreadable spooled record(s)", records.len() - reports.len());
            }
            match self.hub.send_reports(credentials, &reports) {
                Ok(accepted) => {
                    if accepted.commands_pending > 0 {
                        self.schedule.commands = now;
                    }
                    log::debug!(
                        "hub stored {} report(s), {} already stored",
                        accepted.stored,
                        accepted.duplicate_seqs.len()
                    );
                    self.spool.consume(records.len())?;
                    self.backoff.reset();
                }
                Err(TransportError::Refused { status, message }) if records.len() > 1 => {
                    log::warn!("hub refused a batch ({status}: {message}); sending one by one");
                    self.send_singly(credentials, records.len())?;
                }
                Err(TransportError::Refused { status, message }) => {
                    log::error!("hub refused a report for good ({status}: {message}); dropping it");
                    self.spool.consume(1)?;
                }
                Err(error) => {
                    self.handle_failure(&error, now);
                    self.schedule.send = now + self.retry_delay_ms(&error);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn send_singly(&mut self, credentials: &Credentials, count: usize) -> Result<(), AgentError> {
        for _ in 0..count {
            let Some(record) = self.spool.peek(1)?.pop() else { break };
            let report = json_text(&record).unwrap_or("null");
            match self.hub.send_reports(credentials, &[report]) {
                Ok(_) => self.spool.consume(1)?,
                Err(TransportError::Refused { status, message }) => {
                    log::error!("hub refused a report for good ({status}: {message}); dropping it");
                    self.spool.consume(1)?;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Ok(())
    }

    /// How long to wait before sending again: the back-off, or longer if the hub asked.
    fn retry_delay_ms(&mut self, error: &TransportError) -> i64 {
        retry_delay(self.backoff.next_delay_ms(), error)
    }

    fn handle_failure(&mut self, error: &TransportError, now: i64) {
        match error {
            TransportError::Unauthorized => {
                log::error!(
                    "the hub at {} no longer accepts this agent's credentials (401): the server may have been \
                     removed or its agent disabled; registering again",
                    self.hub.base()
                );
                self.state.agent_id = None;
                self.state.auth_token = None;
                if let Err(e) = self.state_file.save(&self.state) {
                    log::error!("cannot save agent state: {e}");
                }
                self.schedule.register = now + self.backoff.next_delay_ms();
            }
            other => log::warn!("{other}; reports stay in the spool ({} waiting)", self.spool.len()),
        }
    }

    /// The address the hub most likely knows this server by: the configured override, or
    /// the local address of a route towards the hub (no packet is sent).
    pub fn source_ip(&self) -> Option<IpAddr> {
        if let Some(ip) = self.config.server.server_ip {
            return Some(ip);
        }
        let target = route_target(self.hub.base())?;
        let socket =
            if target.starts_with('[') { UdpSocket::bind("[::]:0") } else { UdpSocket::bind("0.0.0.0:0") }.ok()?;
        socket.connect(target).ok()?;
        socket.local_addr().ok().map(|a| a.ip())
    }

    fn registration_body(&self) -> Value {
        let uname = rustix::system::uname();
        let text = |s: &std::ffi::CStr| s.to_string_lossy().into_owned();
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned()))
            })
            .unwrap_or_else(|| text(uname.sysname()));
        let mut body = json!({
            "hostname": text(uname.nodename()),
            "agent_version": env!("CARGO_PKG_VERSION"),
            "system_info": {"os": os, "kernel": text(uname.release()), "arch": text(uname.machine())},
        });
        if let Some(ip) = self.source_ip() {
            body["server_ip"] = json!(ip.to_string());
        }
        body
    }

    /// Registers by the first way the configuration allows; saves the credentials.
    pub fn try_register(&mut self, now: i64) -> Result<(), AgentError> {
        let body = self.registration_body();
        let provisioned = match (&self.config.server.agent_id, &self.config.server.auth_token) {
            (Some(id), Some(token)) => id.value().zip(token.value()).map(|(i, t)| (i.to_owned(), t.to_owned())),
            _ => None,
        };
        let enrollment = self.config.server.enrollment_token.as_ref().and_then(|t| t.value()).map(str::to_owned);
        let bearer = provisioned.as_ref().map(|(_, t)| t.as_str());
        let result = match self.hub.register(&body, bearer, enrollment.as_deref()) {
            // A spent enrollment token (the agent re-registering after its server was
            // removed and added again, say): the server's address may still match.
            Err(TransportError::Unauthorized) if enrollment.is_some() => {
                log::warn!("the hub refused the enrollment token (used or expired); trying the server address");
                self.hub.register(&body, bearer, None)
            }
            other => other,
        };
        match result {
            Ok(answer) => {
                let token = answer.auth_token.or_else(|| provisioned.map(|(_, t)| t));
                let Some(token) = token else {
                    log::error!("the hub registered this agent without giving it a token; will retry");
                    self.schedule.register = now + self.backoff.next_delay_ms();
                    return Ok(());
                };
                self.state.hub = Some(self.hub.base().to_owned());
                self.state.agent_id = Some(answer.agent_id.clone());
                self.state.auth_token = Some(token);
                self.state.server_id = Some(answer.server_id);
                self.state_file.save(&self.state)?;
                self.apply_hub_config(&answer.config, now)?;
                self.backoff.reset();
                self.schedule.send = now;
                self.schedule.heartbeat = now;
                self.schedule.commands = now;
                log::info!(
                    "registered with {} as agent {} (server {})",
                    self.hub.base(),
                    answer.agent_id,
                    answer.server_id
                );
            }
            Err(error) => {
                let hint = match &error {
                    TransportError::Refused { status: 404, .. } => {
                        " — add this server in the hub first (serverpulse server add), or set server.server_ip"
                    }
                    TransportError::Refused { status: 409, .. } => {
                        " — this server already has an active agent; use an enrollment token"
                    }
                    TransportError::Unauthorized => " — the enrollment token is invalid, used or expired",
                    _ => "",
                };
                log::error!("registration with {} failed: {error}{hint}", self.hub.base());
                self.schedule.register = now + self.backoff.next_delay_ms();
            }
        }
        Ok(())
    }

    /// The revision of the hub's per-server settings this agent runs (0: none).
    pub fn config_version(&self) -> u64 {
        self.state.hub_settings.as_ref().map_or(0, |s| s.config_version)
    }

    /// The configuration in force (file + hub settings).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies what the hub sent. Intervals take effect at once (a shorter interval is
    /// not postponed until the longer one it replaces has run out); a new settings
    /// revision is laid over the file, remembered in the state file, and reported back.
    fn apply_hub_config(&mut self, config: &AgentConfig, now: i64) -> Result<(), AgentError> {
        self.collection_ms = i64::from(config.collection_interval.max(1)) * 1000;
        self.heartbeat_ms = i64::from(config.heartbeat_interval.max(1)) * 1000;
        self.schedule.collect = self.schedule.collect.min(now + self.collection_ms);
        self.schedule.heartbeat = self.schedule.heartbeat.min(now + self.heartbeat_ms);
        if config.config_version != self.config_version() {
            self.state.hub_settings = (config.config_version > 0).then(|| config.clone());
            self.state_file.save(&self.state)?;
            self.run_config(self.file_config.with_hub_settings(config));
            log::info!("applied the hub's settings for this server (revision {})", config.config_version);
        }
        Ok(())
    }

    /// Switches to `config`: watched units, thresholds (keeping ongoing episodes) and
    /// log watching follow it. Log positions were saved after the last poll, so the new
    /// watcher resumes where the old one stopped.
    fn run_config(&mut self, config: Config) {
        self.units = services::watched_units(&config.monitoring.services, self.service_source.as_mut());
        self.thresholds = self.thresholds.reconfigured(&config.alerts);
        if config.monitoring != self.config.monitoring {
            self.logs = LogWatch::new(&config.monitoring, &config.storage.state_dir);
        }
        self.config = config;
    }

    fn heartbeat(&mut self, credentials: &Credentials, now: i64) {
        let body = json!({"agent_id": credentials.agent_id, "timestamp": format_timestamp(now), "status": "online",
                          "config_version": self.config_version()});
        match self.hub.heartbeat(credentials, &body) {
            Ok(answer) => {
                if let Err(e) = self.apply_hub_config(&answer.config, now) {
                    log::error!("cannot apply the hub's settings: {e}");
                }
                self.schedule.heartbeat = now + self.heartbeat_ms;
                if answer.commands_pending > 0 {
                    self.schedule.commands = now;
                }
            }
            Err(error) => {
                self.handle_failure(&error, now);
                self.schedule.heartbeat = now + self.heartbeat_ms.min(self.backoff.next_delay_ms());
            }
        }
    }

    fn poll_commands(&mut self, credentials: &Credentials, now: i64) -> Result<(), AgentError> {
        // The hub says when commands wait (in answers to reports and heartbeats); this
        // slow poll only covers hubs that do not.
        self.schedule.commands = now + COMMAND_POLL_MS;
        let pending = match self.hub.commands(credentials) {
            Ok(pending) => pending.commands,
            Err(error) => {
                self.handle_failure(&error, now);
                return Ok(());
            }
        };
        for command in pending {
            let (status, output, exit_code) = self.execute(credentials, &command, now)?;
            let ack = json!({"command_id": command.id, "status": status, "output": output,
                             "exit_code": exit_code, "timestamp": format_timestamp(now)});
            if let Err(error) = self.hub.ack(credentials, &command.id, &ack) {
                log::warn!("cannot acknowledge command {}: {error}", command.id);
            }
        }
        Ok(())
    }

    /// Runs one command if it is authentic and allowed here.
    fn execute(
        &mut self,
        credentials: &Credentials,
        command: &WireCommand,
        now: i64,
    ) -> Result<(&'static str, String, Option<i32>), AgentError> {
        let digest = serverpulse_domain::TokenDigest::of(&credentials.token);
        let payload =
            signing_payload(&command.id, command.kind, &command.args, &command.issued_at, &command.expires_at);
        if digest.sign(&payload) != command.signature {
            log::error!("command {} has a bad signature; refusing it", command.id);
            return Ok(("rejected", "bad signature".to_owned(), None));
        }
        let allowed = self.config.commands.allowed.iter().any(|c| c.as_str() == command.kind.as_str());
        if !allowed {
            log::warn!(
                "command {} ({}) is not allowed by this host's configuration",
                command.id,
                command.kind.as_str()
            );
            return Ok(("rejected", format!("{} is not allowed on this host", command.kind.as_str()), None));
        }
        log::info!("running command {} ({})", command.id, command.kind.as_str());
        Ok(match command.kind {
            CommandType::CollectNow => {
                self.collect_and_deliver(now)?;
                self.flush(credentials, now)?;
                ("succeeded", "collected and sent".to_owned(), Some(0))
            }
            CommandType::ReloadConfig => match self.reload() {
                Ok(()) => ("succeeded", "configuration reloaded".to_owned(), Some(0)),
                Err(e) => ("failed", e.to_string(), None),
            },
            CommandType::RestartService => {
                let unit = command.args.get("service").and_then(Value::as_str).unwrap_or_default();
                if !self.may_restart(unit) {
                    ("rejected", format!("{unit:?} is not a service this host's configuration watches"), None)
                } else {
                    restart_unit(unit)
                }
            }
            CommandType::RunCheck => {
                let states = services::check(&self.units, self.service_source.as_mut());
                ("succeeded", serde_json::to_string(&states).unwrap_or_default(), Some(0))
            }
        })
    }

    /// Units a `restart_service` command may name: those of the local file (or the
    /// default list) only — settings from the hub widen what is watched, never what the
    /// hub may restart.
    fn may_restart(&self, unit: &str) -> bool {
        let local = &self.file_config.monitoring.services;
        if local.is_empty() {
            services::DEFAULT_UNITS.contains(&unit) && self.units.iter().any(|u| u == unit)
        } else {
            local.iter().any(|u| u == unit)
        }
    }

    /// Re-reads the configuration file (SIGHUP, `reload_config`); the hub's settings stay
    /// laid over it.
    pub fn reload(&mut self) -> Result<(), AgentError> {
        let Some(path) = self.config_path.clone() else { return Ok(()) };
        let file_config = crate::config::load(&path)?;
        self.hub = Hub::from_config(&file_config)?;
        let config = match &self.state.hub_settings {
            Some(settings) => file_config.with_hub_settings(settings),
            None => file_config.clone(),
        };
        self.collection_ms = i64::from(config.collection.interval.0) * 1000;
        self.file_config = file_config;
        self.run_config(config);
        log::info!("configuration reloaded from {}", path.display());
        Ok(())
    }
}

/// A spooled record as JSON text, if it is one (records are checksummed, so anything
/// else did not come from this agent).
fn json_text(record: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(record).ok()?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok().map(|_| text)
}

/// `host:port` of a hub URL, with the scheme's default port (`[v6]:port` for IPv6).
fn route_target(base: &str) -> Option<String> {
    let (scheme, rest) = base.split_once("://")?;
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    Some(match (has_port, scheme) {
        (true, _) => authority.to_owned(),
        (false, "https") => format!("{authority}:443"),
        (false, _) => format!("{authority}:80"),
    })
}

/// The last lines the journal holds for `unit`, if `journalctl` can read them.
fn journal_tail(unit: &str) -> Vec<String> {
    crate::sd_notify::command("journalctl")
        .args(["--unit", unit, "--lines", "20", "--no-pager", "--output", "cat"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn restart_unit(unit: &str) -> (&'static str, String, Option<i32>) {
    match crate::sd_notify::command("systemctl").args(["restart", "--", unit]).output() {
        Ok(out) => {
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            (if out.status.success() { "succeeded" } else { "failed" }, text, out.status.code())
        }
        Err(e) => ("failed", format!("cannot run systemctl: {e}"), None),
    }
}

/// The back-off delay, stretched to what a busy hub asked for in `Retry-After`.
fn retry_delay(backoff_ms: i64, error: &TransportError) -> i64 {
    match error {
        TransportError::Busy { retry_after_ms, .. } => backoff_ms.max(*retry_after_ms),
        _ => backoff_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::{TransportError, retry_delay, route_target};

    #[test]
    fn a_busy_hub_is_left_alone_as_long_as_it_asks() {
        let busy = TransportError::Busy { retry_after_ms: 7_000, message: String::new() };
        assert_eq!(retry_delay(1_000, &busy), 7_000);
        assert_eq!(retry_delay(30_000, &busy), 30_000, "never sooner than the back-off");
        assert_eq!(retry_delay(1_000, &TransportError::Unavailable("down".into())), 1_000);
    }

    #[test]
    fn route_targets_of_hub_urls() {
        assert_eq!(route_target("https://hub.example").as_deref(), Some("hub.example:443"));
        assert_eq!(route_target("http://10.0.0.1:8000").as_deref(), Some("10.0.0.1:8000"));
        assert_eq!(route_target("http://[::1]").as_deref(), Some("[::1]:80"));
        assert_eq!(route_target("https://[2001:db8::5]:8443/hub").as_deref(), Some("[2001:db8::5]:8443"));
        assert_eq!(route_target("nonsense"), None);
    }
}
