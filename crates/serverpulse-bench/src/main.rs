//! `serverpulse-bench load`: N simulated agents against a real `serverpulse serve` process
//! on 127.0.0.1, and then against the floor (a process that only parses the same
//! reports). First every agent reports once, as fast as the target answers (a fleet's
//! first contact, timed); then each reports every interval, the agent k-th in the
//! fleet's arrival order at k/N of it, for the measured window: throughput, latency,
//! errors, and from outside the target process its CPU, peak PSS and fsyncs per second.
//! In that phase each report opens a connection of its own, from the agent's own
//! loopback address, and leaves it open as an agent's pool does (the target closes it
//! when it likes): a target holds what a real fleet's connections cost it.
//! `--shared-connections` sends them over a pool of kept-alive connections instead.
//! The other phases always share connections: they measure how fast the target
//! answers, not what connecting costs.
//! Last, saturation: the target pinned to core 1 and this generator to core 0
//! (`taskset`), every agent reports round after round as fast as the target answers —
//! sustained throughput on one core, and CPU per report. The window ends with the target
//! stopped, and its stop counts: a hub folds on its way out the reports it appended but
//! has not folded yet, work deferred past the window. The ratio to the floor takes
//! the floor's throughput on a whole core (scaled up by its CPU share when the generator
//! cannot keep it busy, which only lowers the ratio).
//!
//! The arrival order ([`arrival_order`]) is fixed and unrelated to server ids, as a real
//! fleet's is; `--in-id-order` sends by server id instead, as runs before 2026-12-07 did.
//!
//! The agents are provisioned straight into a fresh SQLite database (one transaction)
//! before the hub starts; the run's data directory lives under `target/` (a real disk).
//! Nothing but loopback is ever contacted.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use serverpulse_bench::measure::{FsyncCounter, cpu_seconds, pss_bytes, quantile};
use serverpulse_bench::series::{Series, arrival_order};
use serverpulse_domain::Secret;
use serverpulse_proto::register::RegisterRequest;
use serverpulse_proto::responses::AgentConfig;
use serverpulse_proto::settings::AgentSettings;
use serverpulse_store::{AgentCredentials, AgentProfile, NewServer, ProvisionedAgent};
use serverpulse_store_postgres::PgStore;
use serverpulse_store_sqlite::SqliteStore;

mod writer;

#[derive(Debug, Parser)]
#[command(name = "serverpulse-bench", about = "Load runs against a real ServerPulse hub on loopback")]
enum Cli {
    /// Simulated agents against `serverpulse serve`, then against the parse-only floor.
    Load(LoadArgs),
    /// The floor: answers agent reports after only reading and decoding them.
    Floor {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// The ingest writer's transaction alone: a fleet's reports stored round after
    /// round straight into a fresh SQLite file, CPU per report per round.
    Writer {
        /// Servers, one report each per round.
        #[arg(long, default_value_t = 20_000)]
        servers: usize,
        /// Reports per transaction.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long, default_value_t = 21)]
        rounds: u64,
        /// Seconds of agent time between one server's reports.
        #[arg(long, default_value_t = 30)]
        interval: u64,
        /// Store each round's reports by server id instead of in the fleet's arrival order.
        #[arg(long)]
        in_id_order: bool,
    },
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 1_000)]
    agents: usize,
    /// Seconds between one agent's reports.
    #[arg(long, default_value_t = 30)]
    interval: u64,
    /// Seconds measured, after every agent has reported once (as fast as the target takes it).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Requests in flight at most (the rest wait, and count as late).
    #[arg(long, default_value_t = 4_096)]
    concurrency: usize,
    /// The hub binary (default: `serverpulse` beside this one).
    #[arg(long)]
    hub: Option<PathBuf>,
    /// Seconds of the last phase: reports as fast as the target answers them, the target
    /// pinned to one core and this generator to the other (0 skips it).
    #[arg(long, default_value_t = 20)]
    saturate: u64,
    /// Skip the floor run.
    #[arg(long)]
    no_floor: bool,
    /// Seconds of the floor's scheduled phase (default: `--duration`); its saturation
    /// lasts `--saturate` whatever this is. A floor defers no work, so a long hub run
    /// need not wait as long again for it.
    #[arg(long)]
    floor_duration: Option<u64>,
    /// In the scheduled phase, reports share `--concurrency` kept-alive connections
    /// (as runs before the nineteenth session did) instead of each opening its own
    /// and leaving it open, as an agent does: its pool keeps it for a next report
    /// 30 s later, by which time the hub has closed it.
    #[arg(long)]
    shared_connections: bool,
    /// In the scheduled phase, agents send their reports alone, without the heartbeats
    /// (every 60 s) and command polls (every 5 minutes) an agent sends besides, as
    /// runs before the twentieth session did.
    #[arg(long)]
    reports_only: bool,
    /// Agents report in server-id order instead of the fleet's arrival order.
    #[arg(long)]
    in_id_order: bool,
    /// Run the hub on this empty PostgreSQL database (`postgres://…`) instead of a fresh
    /// SQLite file.
    #[arg(long)]
    database_url: Option<String>,
}

/// The hub's allocator (see its `main.rs`), standing in for every `malloc` of the
/// process as in the hub: the writer's figures are then the hub's, and the floor
/// allocates as the hub does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    match Cli::parse() {
        Cli::Load(args) => runtime.block_on(load(args)),
        Cli::Floor { listen } => runtime.block_on(floor(listen)),
        Cli::Writer { servers, batch, rounds, interval, in_id_order } => {
            let dir = scratch_dir("writer-run")?;
            let run = writer::WriterRun { servers, batch, rounds, interval, in_id_order };
            runtime.block_on(writer::writer(run, dir.path()))
        }
    }
}

/// A fresh directory for a run's database under `target/` (beside this binary's
/// directory): a real disk, never a tmpfs.
fn scratch_dir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let exe = std::env::current_exe()?;
    let beside = exe.parent().context("the bench binary has no directory")?;
    Ok(tempfile::Builder::new().prefix(prefix).tempdir_in(beside.parent().unwrap_or(beside))?)
}

/// A simulated agent: its server, credentials and profile as provisioned, and its id
/// and token as it sends them.
type SimulatedAgent = (ProvisionedAgent, (String, String));

/// `agents` simulated agents, each registered already (with the profile the hub keeps
/// for an agent of this workspace that registered to report every `interval` seconds),
/// so that their server rows are as wide as a registered fleet's.
fn fleet(agents: usize, interval: u64) -> anyhow::Result<Vec<SimulatedAgent>> {
    // Heartbeats every 60 s: the hub's default (`DEFAULT_HEARTBEAT_SECS`).
    let config = AgentConfig::effective(u32::try_from(interval)?, 60, AgentSettings::default(), 0);
    (0..agents)
        .map(|i| {
            let secret = Secret::generate().context("randomness")?;
            let agent_id = format!("load-agent-{i:06}");
            let ip = format!("10.{}.{}.{}", i / 65_536 % 256, i / 256 % 256, i % 256).parse()?;
            let name = format!("load-{i:06}");
            // What this workspace's agent sends when it registers (see its runtime).
            let request = RegisterRequest {
                server_ip: Some(ip),
                hostname: name.clone(),
                agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
                system_info:
                    json!({"os": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0-28-amd64", "arch": "x86_64"})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                enrollment_token: None,
                claimed_agent_id: None,
                registration_time: None,
            };
            let agent = ProvisionedAgent {
                server: NewServer { name, ip },
                credentials: AgentCredentials { agent_id: agent_id.clone(), token: secret.digest() },
                profile: Some(AgentProfile::registered(&request, &config)),
            };
            Ok((agent, (agent_id, secret.expose().to_owned())))
        })
        .collect()
}

async fn floor(listen: SocketAddr) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route(
            "/api/v1/agents/{agent}/metrics",
            axum::routing::post(|headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                // The same bytes as the hub gets: inflated first when the agent compressed them.
                let gzipped =
                    headers.get("content-encoding").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
                let inflated;
                let body: &[u8] = if gzipped {
                    match serverpulse_proto::gzip::inflate(&body, serverpulse_hub::config::DEFAULT_BODY_LIMIT) {
                        Ok(bytes) => inflated = bytes,
                        Err(e) => {
                            return (axum::http::StatusCode::BAD_REQUEST, axum::Json(json!({"error": e.to_string()})));
                        }
                    }
                    &inflated
                } else {
                    &body
                };
                let Ok(document) = serde_json::from_slice::<Value>(body) else {
                    return (axum::http::StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid JSON"})));
                };
                let now = now_ms();
                match serverpulse_proto::report::decode_metrics_body(document, now) {
                    Ok(body) => (
                        axum::http::StatusCode::OK,
                        axum::Json(json!({"success": true, "stored": body.into_reports().len()})),
                    ),
                    Err(e) => (axum::http::StatusCode::BAD_REQUEST, axum::Json(json!({"error": e.to_string()}))),
                }
            }),
        )
        // An agent's other requests, parsed and answered as briefly.
        .route(
            "/api/v1/agents/{agent}/heartbeat",
            axum::routing::post(|body: axum::body::Bytes| async move {
                match serde_json::from_slice::<Value>(&body) {
                    Ok(_) => (axum::http::StatusCode::OK, axum::Json(json!({"success": true, "commands_pending": 0}))),
                    Err(_) => (axum::http::StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid JSON"}))),
                }
            }),
        )
        .route(
            "/api/v1/agents/{agent}/commands",
            axum::routing::get(|| async { axum::Json(json!({"success": true, "commands": []})) }),
        )
        .route("/api/v1/health", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    // Served as the hub serves its router: the same accept loop and HTTP/1 settings.
    serverpulse_hub::connections::serve(listener, app, std::future::pending()).await;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A server process under measurement; killed when dropped.
struct Target {
    name: &'static str,
    child: Child,
    address: SocketAddr,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_until_up(client: &reqwest::Client, target: &mut Target) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(response) = client.get(format!("http://{}/api/v1/health", target.address)).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if let Some(status) = target.child.try_wait()? {
            bail!("{} exited before answering: {status}", target.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{} did not answer within 60 s", target.name)
}

/// What one phase of a run saw.
#[derive(Debug, Default)]
struct Outcome {
    /// Reports answered with success, each its latency.
    latencies: Vec<Duration>,
    /// Heartbeats and command polls answered with success (the scheduled phase's
    /// other requests), each its latency.
    others: Vec<Duration>,
    /// Failed requests of any kind, by what went wrong.
    errors: BTreeMap<String, u64>,
    /// Sends that had to wait for a free connection.
    late: u64,
    /// Sends due in the window but never made: the target held the sender back.
    unsent: u64,
}

struct Schedule<'a> {
    agents: &'a [(String, String)],
    /// Indexes into `agents`: who reports k-th in each round.
    order: &'a [usize],
    interval: Duration,
    duration: Duration,
    concurrency: usize,
    /// The scheduled phase's reports share `concurrency` kept-alive connections
    /// instead of each opening its own.
    shared_connections: bool,
    /// The scheduled phase sends reports alone: no heartbeats, no command polls.
    reports_only: bool,
}

/// Rounds between one agent's heartbeats (every `DEFAULT_HEARTBEAT_SECS`, which the
/// fleet is provisioned with) and between its command polls (every `COMMAND_POLL_MS`),
/// at `interval` between reports.
fn agent_cadence(interval: Duration) -> (u64, u64) {
    let every = |period: Duration| (period.as_millis() / interval.as_millis().max(1)).max(1) as u64;
    let heartbeat = Duration::from_secs(u64::from(serverpulse_hub::config::DEFAULT_HEARTBEAT_SECS));
    let poll = Duration::from_millis(serverpulse_agent::runtime::COMMAND_POLL_MS.unsigned_abs());
    (every(heartbeat), every(poll))
}

/// How a phase sends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pace {
    /// Every agent once, as fast as the target answers (the first report of a fleet).
    AllOnce,
    /// The k-th agent of the arrival order at `k / N` of each interval, for the
    /// schedule's duration.
    Scheduled,
    /// Round after round of every agent, each report sent once a connection is free,
    /// for the saturation window: the target's sustained throughput.
    Saturated(Duration),
}

/// One phase against the target at `address`; `series` advance (report numbers start
/// at `first_seq`). The scheduled phase opens a connection per report unless the
/// schedule shares them; the others share `client`'s.
async fn run(
    client: &reqwest::Client,
    address: SocketAddr,
    schedule: &Schedule<'_>,
    series: &mut [Series],
    first_seq: u64,
    pace: Pace,
) -> Outcome {
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let permits = Arc::new(tokio::sync::Semaphore::new(schedule.concurrency));
    let n = schedule.agents.len().max(1) as u32;
    let start = tokio::time::Instant::now();
    let end = start + if let Pace::Saturated(window) = pace { window } else { schedule.duration };
    let series_start = now_ms() - first_seq as i64 * schedule.interval.as_millis() as i64;
    let mut tasks = tokio::task::JoinSet::new();
    let mut gzip = serverpulse_agent::transport::Gzip::default();
    let (heartbeat_every, poll_every) = agent_cadence(schedule.interval);
    'rounds: for round in 0u64.. {
        if pace == Pace::AllOnce && round > 0 {
            break;
        }
        for (k, &i) in schedule.order.iter().enumerate() {
            let (agent, token) = &schedule.agents[i];
            if pace == Pace::Scheduled {
                let due = start + schedule.interval * round as u32 + schedule.interval / n * k as u32;
                if due >= end {
                    break 'rounds;
                }
                // A target that cannot keep up holds the sender back; past the window's
                // end what was not sent counts as such instead of stretching the run.
                if tokio::time::Instant::now() >= end {
                    let rounds_left = ((end - due).as_millis() / schedule.interval.as_millis().max(1)) as usize;
                    let unsent = schedule.agents.len() - k + schedule.agents.len() * rounds_left;
                    outcome.lock().map(|mut o| o.unsent += unsent as u64).ok();
                    break 'rounds;
                }
                tokio::time::sleep_until(due).await;
            }
            if matches!(pace, Pace::Saturated(_)) && tokio::time::Instant::now() >= end {
                break 'rounds;
            }
            let permit = match permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    if pace == Pace::Scheduled {
                        outcome.lock().map(|mut o| o.late += 1).ok();
                    }
                    let Ok(permit) = permits.clone().acquire_owned().await else { break 'rounds };
                    permit
                }
            };
            // As the agent sends a report: a gzip-compressed batch of one.
            let at = now_ms();
            let report = series[i].agent_report(first_seq + round, at, series_start).to_string();
            let body = gzip.encode(format!("{{\"reports\":[{report}]}}").as_bytes());
            let mut requests = vec![AgentRequest::report(agent, token, body)];
            // Then, on the same connection, what else the agent's loop has due: its
            // heartbeat and its command poll, each agent on its own phase of them.
            if pace == Pace::Scheduled && !schedule.reports_only {
                let turn = round + i as u64;
                if turn.is_multiple_of(heartbeat_every) {
                    requests.push(AgentRequest::heartbeat(agent, token, at));
                }
                if turn.is_multiple_of(poll_every) {
                    requests.push(AgentRequest::command_poll(agent, token));
                }
            }
            let transport = match pace {
                Pace::Scheduled if !schedule.shared_connections => {
                    Transport::OwnConnection(address, agent_source_address(i))
                }
                _ => Transport::Shared(client.clone(), address),
            };
            let outcome = outcome.clone();
            tasks.spawn(async move {
                let results = transport.send(requests).await;
                drop(permit);
                if let Ok(mut o) = outcome.lock() {
                    for (is_report, result) in results {
                        match result {
                            Ok(elapsed) if is_report => o.latencies.push(elapsed),
                            Ok(elapsed) => o.others.push(elapsed),
                            Err(kind) => *o.errors.entry(kind).or_default() += 1,
                        }
                    }
                }
            });
            while tasks.try_join_next().is_some() {}
        }
    }
    while tasks.join_next().await.is_some() {}
    let mut outcome = std::mem::take(&mut *outcome.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    outcome.latencies.sort();
    outcome.others.sort();
    outcome
}

/// A request as an agent sends it: a report (its body gzip-compressed), a heartbeat
/// or a command poll.
struct AgentRequest {
    method: axum::http::Method,
    path: String,
    token: String,
    /// The body, and whether it is gzip-compressed.
    body: Option<(Vec<u8>, bool)>,
}

impl AgentRequest {
    fn report(agent: &str, token: &str, gzipped: Vec<u8>) -> Self {
        Self {
            method: axum::http::Method::POST,
            path: format!("/api/v1/agents/{agent}/metrics"),
            token: token.to_owned(),
            body: Some((gzipped, true)),
        }
    }

    /// The heartbeat this workspace's agent sends (see its runtime), at `at`.
    fn heartbeat(agent: &str, token: &str, at: i64) -> Self {
        let body = json!({"agent_id": agent, "timestamp": serverpulse_proto::time::format_timestamp(at),
                          "status": "online", "config_version": 0});
        Self {
            method: axum::http::Method::POST,
            path: format!("/api/v1/agents/{agent}/heartbeat"),
            token: token.to_owned(),
            body: Some((body.to_string().into_bytes(), false)),
        }
    }

    fn command_poll(agent: &str, token: &str) -> Self {
        Self {
            method: axum::http::Method::GET,
            path: format!("/api/v1/agents/{agent}/commands"),
            token: token.to_owned(),
            body: None,
        }
    }

    fn is_report(&self) -> bool {
        self.path.ends_with("/metrics")
    }

    fn into_http(self, host: SocketAddr) -> Option<axum::http::Request<axum::body::Body>> {
        let mut builder = axum::http::Request::builder()
            .method(self.method)
            .uri(self.path)
            .header("host", host.to_string())
            .header("authorization", format!("Bearer {}", self.token));
        let body = match self.body {
            Some((bytes, gzipped)) => {
                builder = builder.header("content-type", "application/json");
                if gzipped {
                    builder = builder.header("content-encoding", "gzip");
                }
                axum::body::Body::from(bytes)
            }
            None => axum::body::Body::empty(),
        };
        builder.body(body).ok()
    }
}

/// How long a request may take, as the agent allows.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How an agent's requests reach the target.
enum Transport {
    /// On one of a client's pooled keep-alive connections to this address.
    Shared(reqwest::Client, SocketAddr),
    /// On a connection of its own to the first address from the second, left open
    /// afterwards as an agent's pool leaves it, until the target closes it.
    OwnConnection(SocketAddr, Ipv4Addr),
}

/// What became of one request: whether it was a report, and its latency on a success
/// status, else what went wrong (the status code, `timeout` or `connection`).
type Sent = (bool, Result<Duration, String>);

impl Transport {
    /// Sends `requests` one after the other, as an agent's loop does.
    async fn send(self, requests: Vec<AgentRequest>) -> Vec<Sent> {
        match self {
            Self::Shared(client, address) => {
                let mut results = Vec::with_capacity(requests.len());
                for request in requests {
                    let is_report = request.is_report();
                    let started = Instant::now();
                    results.push((is_report, send_shared(&client, address, request).await.map(|()| started.elapsed())));
                }
                results
            }
            Self::OwnConnection(address, source) => {
                let kinds: Vec<bool> = requests.iter().map(AgentRequest::is_report).collect();
                let results = tokio::time::timeout(REQUEST_TIMEOUT, send_on_own_connection(address, source, requests))
                    .await
                    .unwrap_or_default();
                // What got no answer in time (or whose connection failed) failed.
                let missing = if results.len() < kinds.len() { "timeout or connection" } else { "" };
                kinds
                    .iter()
                    .enumerate()
                    .map(|(k, is_report)| {
                        (*is_report, results.get(k).cloned().unwrap_or_else(|| Err(missing.to_owned())))
                    })
                    .collect()
            }
        }
    }
}

async fn send_shared(client: &reqwest::Client, address: SocketAddr, request: AgentRequest) -> Result<(), String> {
    let mut builder = client
        .request(request.method, format!("http://{address}{}", request.path))
        .bearer_auth(&request.token)
        .timeout(REQUEST_TIMEOUT);
    if let Some((bytes, gzipped)) = request.body {
        builder = builder.header("content-type", "application/json").body(bytes);
        if gzipped {
            builder = builder.header("content-encoding", "gzip");
        }
    }
    let status = match builder.send().await {
        Ok(response) => {
            let status = response.status();
            let _ = response.bytes().await;
            status
        }
        Err(e) if e.is_timeout() => return Err("timeout".to_owned()),
        Err(_) => return Err("connection".to_owned()),
    };
    if status.is_success() { Ok(()) } else { Err(status.as_u16().to_string()) }
}

/// Agent `i`'s own loopback address (in 127.1.0.0 and up), as each agent of a real fleet
/// has its own. From one address the connections a report each would run out of
/// ports: each closed one keeps its port pair in TIME_WAIT for a minute.
fn agent_source_address(i: usize) -> Ipv4Addr {
    let [_, high, middle, low] = (i as u32).to_be_bytes();
    Ipv4Addr::new(127, high.saturating_add(1), middle, low)
}

/// Sends `requests` from `source` on a new connection, one after the other; the
/// connection then stays open until the target closes it (as an agent's pool keeps it
/// for the next report). Each answered request's latency, or its failure status; the
/// list stops short where the connection failed.
async fn send_on_own_connection(
    address: SocketAddr,
    source: Ipv4Addr,
    requests: Vec<AgentRequest>,
) -> Vec<Result<Duration, String>> {
    let mut results = Vec::with_capacity(requests.len());
    let started = Instant::now();
    let connected = async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::from((source, 0))).ok()?;
        let stream = socket.connect(address).await.ok()?;
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()
    };
    let Some((mut sender, connection)) = connected.await else { return results };
    let connection = tokio::spawn(connection);
    let mut since = started;
    for request in requests {
        let Some(request) = request.into_http(address) else { break };
        if sender.ready().await.is_err() {
            break;
        }
        let Ok(response) = sender.send_request(request).await else { break };
        let status = response.status();
        if axum::body::to_bytes(axum::body::Body::new(response.into_body()), usize::MAX).await.is_err() {
            break;
        }
        // A request's latency runs from when it could be sent: the first one's includes
        // connecting, as an agent's does.
        results.push(if status.is_success() { Ok(since.elapsed()) } else { Err(status.as_u16().to_string()) });
        since = Instant::now();
    }
    tokio::spawn(async move {
        // Holding the sender keeps the connection open; it ends when the target closes it.
        let _ = connection.await;
        drop(sender);
    });
    results
}

/// What [`measure`] found of one target: its row in the schedule's table, and in the
/// saturation table when that phase ran.
struct Rows {
    scheduled: String,
    saturated: Option<Saturated>,
}

/// One target's saturation phase, pinned to one core.
struct Saturated {
    reports_per_second: f64,
    /// The target's CPU over the phase, as a share of its one core.
    cpu_share: Option<f64>,
    row: String,
}

/// Pins every thread of process `pid` to `cores` (a `taskset` list such as `1` or
/// `0,1`); threads it starts later inherit that.
fn pin(pid: u32, cores: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", cores, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The saturation phase: the target on core 1 and this generator on core 0, every
/// agent reporting round after round as fast as the target answers.
async fn saturate(
    client: &reqwest::Client,
    target: &mut Target,
    schedule: &Schedule<'_>,
    series: &mut [Series],
    first_seq: u64,
    window: Duration,
) -> Saturated {
    let pid = target.child.id();
    let pinned = pin(pid, "1") && pin(std::process::id(), "0");
    let cpu_start = cpu_seconds(pid);
    let started = Instant::now();
    let outcome = run(client, target.address, schedule, series, first_seq, Pace::Saturated(window)).await;
    pin(std::process::id(), "0,1");
    let (stop, cpu_end) = stop(target).await;
    let seconds = started.elapsed().as_secs_f64().max(1e-3);
    let ok = outcome.latencies.len() as u64;
    let errors: u64 = outcome.errors.values().sum();
    let reports_per_second = ok as f64 / seconds;
    let cpu_share = cpu_start.zip(cpu_end).map(|(a, b)| (b - a) / seconds);
    let (cpu, per_report) = match cpu_share {
        Some(share) if ok > 0 => {
            (format!("{:.0} %", share * 100.0), format!("{:.0} µs", share * seconds / ok as f64 * 1e6))
        }
        _ => ("n/a".to_owned(), "n/a".to_owned()),
    };
    let ms = |q: f64| quantile(&outcome.latencies, q).as_secs_f64() * 1e3;
    let stop = stop.map_or("did not stop within 30 min".to_owned(), |s| format!("{:.1} s", s.as_secs_f64()));
    let row = format!(
        "| {} | {} | {reports_per_second:.0} | {:.1} ms | {:.1} ms | {ok} ok, {errors} failed | {stop} | {cpu} | {per_report} |",
        target.name,
        if pinned { "core 1 (generator on core 0)" } else { "unpinned (taskset failed)" },
        ms(0.5),
        ms(0.99),
    );
    Saturated { reports_per_second, cpu_share, row }
}

/// Stops `target` (SIGTERM) after its saturation window and waits for it to exit:
/// how long that took (`None` past 30 minutes, when it is killed) and its CPU seconds
/// last read before it exited. The stop counts in the window's throughput because a
/// target may defer work past the window — the hub folds the reports it appended but
/// has not folded yet on its way out — and deferred work is work a sustained rate pays.
async fn stop(target: &mut Target) -> (Option<Duration>, Option<f64>) {
    let pid = target.child.id();
    let asked = Instant::now();
    let mut cpu = cpu_seconds(pid);
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    while asked.elapsed() < Duration::from_secs(30 * 60) {
        if matches!(target.child.try_wait(), Ok(Some(_)) | Err(_)) {
            return (Some(asked.elapsed()), cpu);
        }
        cpu = cpu_seconds(pid).or(cpu);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = target.child.kill();
    (None, cpu)
}

/// One target: every agent's first report (timed), then the schedule with the target's
/// CPU, peak PSS and fsyncs measured over it, then (unless skipped) saturation on one core.
async fn measure(client: &reqwest::Client, target: &mut Target, schedule: &Schedule<'_>, saturation: Duration) -> Rows {
    let pid = target.child.id();
    let mut series: Vec<Series> =
        (0..schedule.agents.len()).map(|i| Series::new(i as u64, schedule.interval.as_millis() as i64)).collect();
    let warm_up = Instant::now();
    let first = run(client, target.address, schedule, &mut series, 1, Pace::AllOnce).await;
    let warm_up = warm_up.elapsed().as_secs_f64();
    let first_failed: u64 = first.errors.values().sum();

    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        tokio::spawn(async move {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(pss) = pss_bytes(pid) {
                    peak.fetch_max(pss, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let fsyncs = tokio::task::spawn_blocking(move || FsyncCounter::start(pid)).await.ok().flatten();
    let cpu_start = cpu_seconds(pid);
    let started = Instant::now();
    let outcome = run(client, target.address, schedule, &mut series, 2, Pace::Scheduled).await;
    let seconds = started.elapsed().as_secs_f64().max(1e-3);
    let cpu_end = cpu_seconds(pid);
    let fsyncs = match fsyncs {
        Some(counter) => tokio::task::spawn_blocking(move || counter.stop()).await.ok().flatten(),
        None => None,
    };
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.await;

    let ok = outcome.latencies.len() as u64;
    let errors: u64 = outcome.errors.values().sum();
    let error_list = if outcome.errors.is_empty() {
        "none".to_owned()
    } else {
        outcome.errors.iter().map(|(k, v)| format!("{v} × {k}")).collect::<Vec<_>>().join(", ")
    };
    let ms = |q: f64| quantile(&outcome.latencies, q).as_secs_f64() * 1e3;
    let cpu = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) => format!("{:.0} %", (b - a) / seconds * 100.0),
        _ => "n/a".to_owned(),
    };
    let fsyncs = fsyncs.map_or("n/a".to_owned(), |f| format!("{:.0}", f as f64 / seconds));
    let rounds = schedule.duration.as_millis() / schedule.interval.as_millis().max(1);
    let saturated = if saturation.is_zero() {
        None
    } else {
        Some(saturate(client, target, schedule, &mut series, 3 + rounds as u64, saturation).await)
    };
    let others = match outcome.others.len() {
        0 => "none".to_owned(),
        n => format!("{n} ok, p99 {:.1} ms", quantile(&outcome.others, 0.99).as_secs_f64() * 1e3),
    };
    let scheduled = format!(
        "| {} | {} | {:.1} s ({:.0}/s, {first_failed} failed) | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {ok} ok, {errors} failed ({error_list}), {} late, {} unsent | {others} | {cpu} | {:.0} MB | {fsyncs} |",
        target.name,
        schedule.agents.len(),
        warm_up,
        schedule.agents.len() as f64 / warm_up.max(1e-3),
        (ok + outcome.others.len() as u64 + errors) as f64 / seconds,
        ms(0.5),
        ms(0.99),
        outcome.latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        outcome.late,
        outcome.unsent,
        peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6,
    );
    Rows { scheduled, saturated }
}

/// Where the agents are provisioned: the database the hub will run on.
enum Provisioner {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Provisioner {
    async fn provision(&self, agents: &[ProvisionedAgent]) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(store) => store.provision_agents_in_bulk(agents, now_ms()).await?,
            Self::Postgres(store) => store.provision_agents_in_bulk(agents, now_ms()).await?,
        };
        Ok(())
    }

    async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}

async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let beside = exe.parent().context("the bench binary has no directory")?.to_path_buf();
    let hub_binary = args.hub.clone().unwrap_or_else(|| beside.join("serverpulse"));
    if !hub_binary.exists() {
        bail!("no hub binary at {} (build it: cargo build --release -p serverpulse-hub)", hub_binary.display());
    }
    let data = scratch_dir("load-run")?;

    let provisioning = Instant::now();
    let store = match &args.database_url {
        Some(url) => Provisioner::Postgres(PgStore::open_url(url, now_ms()).await?),
        None => Provisioner::Sqlite(SqliteStore::open(&data.path().join("serverpulse.db"), now_ms()).await?),
    };
    let (provisioned, agents): (Vec<_>, Vec<_>) = fleet(args.agents, args.interval)?.into_iter().unzip();
    for batch in provisioned.chunks(10_000) {
        store.provision(batch).await?;
    }
    store.close().await;
    println!("{} agents provisioned in {:.1} s", args.agents, provisioning.elapsed().as_secs_f64());

    let _ = rustls::crypto::ring::default_provider().install_default();
    // A connection per report, each open until the hub closes it: thousands at a time.
    serverpulse_hub::connections::raise_open_files_limit();
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).timeout(REQUEST_TIMEOUT).build()?;
    let order = arrival_order(agents.len(), args.in_id_order);
    let schedule = Schedule {
        agents: &agents,
        order: &order,
        interval: Duration::from_secs(args.interval),
        duration: Duration::from_secs(args.duration),
        concurrency: args.concurrency,
        shared_connections: args.shared_connections,
        reports_only: args.reports_only,
    };
    let mut lines = Vec::new();

    let address = free_port()?;
    let log = std::fs::File::create(data.path().join("hub.log"))?;
    let database: Vec<std::ffi::OsString> = match &args.database_url {
        Some(url) => vec!["--database-url".into(), url.into()],
        None => vec!["--data-dir".into(), data.path().into()],
    };
    let mut hub = Target {
        name: if args.database_url.is_some() {
            "hub (`serverpulse serve`, PostgreSQL)"
        } else {
            "hub (`serverpulse serve`)"
        },
        child: Command::new(&hub_binary)
            .args(&database)
            .args(["serve", "--listen", &address.to_string(), "--log", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", hub_binary.display()))?,
        address,
    };
    wait_until_up(&client, &mut hub).await?;
    let saturation = Duration::from_secs(args.saturate);
    let hub_rows = measure(&client, &mut hub, &schedule, saturation).await;
    drop(hub);
    lines.push(hub_rows.scheduled);
    let mut saturated: Vec<Saturated> = hub_rows.saturated.into_iter().collect();

    if !args.no_floor {
        let address = free_port()?;
        let mut floor = Target {
            name: "parse-only floor",
            child: Command::new(&exe)
                .args(["floor", "--listen", &address.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
            address,
        };
        wait_until_up(&client, &mut floor).await?;
        let schedule =
            Schedule { duration: Duration::from_secs(args.floor_duration.unwrap_or(args.duration)), ..schedule };
        let floor_rows = measure(&client, &mut floor, &schedule, saturation).await;
        lines.push(floor_rows.scheduled);
        saturated.extend(floor_rows.saturated);
    }
    println!(
        "| target | agents | first report of each | requests/s | p50 | p99 | max | outcome | heartbeats and command polls | CPU (of one core) | peak PSS | fsyncs/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    if !saturated.is_empty() {
        println!("\nsaturated for {} s:\n", args.saturate);
        println!(
            "| target | where | reports/s (window and stop) | p50 | p99 | outcome | stop | CPU (of its core) | CPU per report |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for phase in &saturated {
            println!("{}", phase.row);
        }
    }
    if let [hub, floor] = saturated.as_slice() {
        // The floor's throughput on a whole core: if the generator could not keep its
        // core busy, scaled up by its CPU share (which only lowers the ratio).
        let floor_capacity = floor.reports_per_second / floor.cpu_share.unwrap_or(1.0).clamp(0.05, 1.0);
        println!(
            "\nsustained on one core: hub {:.0} reports/s, floor {:.0}/s on a whole core: {:.2} × the floor",
            hub.reports_per_second,
            floor_capacity,
            hub.reports_per_second / floor_capacity.max(1e-9)
        );
    }
    let size = std::fs::metadata(data.path().join("serverpulse.db")).map(|m| m.len()).unwrap_or(0);
    println!("database after the run: {:.1} MB", size as f64 / 1e6);
    Ok(())
}
