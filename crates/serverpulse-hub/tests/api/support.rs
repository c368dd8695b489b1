//! `spawn_app()`: the real hub on 127.0.0.1:0 over a fresh SQLite file, with a manual
//! clock; plus helpers to drive it over HTTP and to read the database behind it.

use std::ffi::OsStr;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, Uri};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use serverpulse_domain::Role;
use serverpulse_hub::app::{AppState, router};
use serverpulse_hub::auth::Admin;
use serverpulse_hub::clock::ManualClock;
use serverpulse_hub::config::Settings;
use serverpulse_store_sqlite::SqliteStore;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, Row, SqlitePool};
use tempfile::TempDir;

/// 2025-06-21T20:30:00Z, the time in PROTOCOL.md's examples.
pub const T0: i64 = 1_750_537_800_000;

pub struct TestHub {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: ManualClock,
    pub state: AppState,
    pub dir: TempDir,
    db: SqlitePool,
}

pub async fn spawn_app() -> TestHub {
    spawn_with(Settings::defaults()).await
}

pub async fn spawn_with(settings: Settings) -> TestHub {
    let (hub, writer) = spawn_paused(settings).await;
    tokio::spawn(writer.run());
    hub
}

/// The hub with its ingest writer not running: reports queue until the test steps it.
pub async fn spawn_paused(mut settings: Settings) -> (TestHub, serverpulse_hub::ingest::Writer) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_path = dir.path().join("serverpulse.db");
    let clock = ManualClock::new(T0);
    let store = SqliteStore::open(&db_path, T0).await.expect("open store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    settings.public_url = format!("http://{address}");
    let (state, writer) = AppState::with_paused_writer(Arc::new(store), Arc::new(clock.clone()), settings);
    let app = router(state.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    let db = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&db_path).read_only(true))
        .await
        .expect("open db for reading");
    (TestHub { base: format!("http://{address}"), client: reqwest::Client::new(), clock, state, dir, db }, writer)
}

/// The whole hub as `serverpulse serve` runs it (background tasks, client addresses,
/// the wall clock) on 127.0.0.1:0 over a fresh SQLite file: for browsers and live feeds.
pub struct LiveHub {
    pub base: String,
    /// The running hub's state (users, tokens), as the serving process holds it.
    pub state: AppState,
    /// Holds the database while the hub runs.
    _dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for LiveHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn spawn_live() -> LiveHub {
    spawn_live_with(|_| ()).await
}

/// [`spawn_live`], with its settings changed by `configure` first.
pub async fn spawn_live_with(configure: impl FnOnce(&mut Settings)) -> LiveHub {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = serverpulse_hub::clock::SystemClock;
    let store = SqliteStore::open(&dir.path().join("serverpulse.db"), serverpulse_hub::clock::Clock::now_ms(&clock))
        .await
        .expect("open store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let mut settings = Settings::defaults();
    settings.public_url = format!("http://{address}");
    settings.sweep_interval = std::time::Duration::from_secs(1);
    configure(&mut settings);
    let state = AppState::new(Arc::new(store), Arc::new(clock), settings);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = state.clone();
    tokio::spawn(async move {
        serverpulse_hub::app::serve(listener, serving, async {
            let _ = stopped.await;
        })
        .await;
    });
    LiveHub { base: format!("http://{address}"), state, _dir: dir, stop: Some(stop) }
}

/// Waits (up to 20 s) until `url` answers 200: a server process the test started is up.
pub async fn wait_until_up(url: &str) {
    // reqwest here has no TLS provider of its own: the hub's, whatever test runs first.
    serverpulse_hub::notifier::install_crypto_provider();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if reqwest::get(url).await.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{url} did not come up");
}

/// A response reduced to what tests look at.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        assert_eq!(self.body["success"], json!(true), "body: {}", self.body);
        self.body
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        self.body
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

impl TestHub {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends raw bytes with optional bearer token and extra headers.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("non-JSON answer {status}: {}", String::from_utf8_lossy(&bytes)));
        Answer { status, body }
    }

    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let headers: &[(&str, &str)] = if body.is_some() { &[("content-type", "application/json")] } else { &[] };
        self.send_raw(method, path, token, headers, body.map(|b| b.to_string().into_bytes())).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.send(Method::POST, path, token, Some(body)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send(Method::GET, path, token, None).await
    }

    /// A user with `role` and an API token for it.
    pub async fn token_for(&self, role: Role) -> String {
        let admin = Admin::console();
        let email = format!("{}-{}@example.test", role.as_str(), uuid_like());
        serverpulse_hub::admin::add_user(&self.state, &admin, &email, role, None).await.expect("add user");
        serverpulse_hub::admin::create_token(&self.state, &admin, &email, "test").await.expect("create token").1
    }

    /// Adds a server over REST; returns (server id, enrollment token).
    pub async fn add_server(&self, admin_token: &str, name: &str, ip: &str) -> (i64, String) {
        let answer = self.post("/api/v1/servers", Some(admin_token), json!({"name": name, "ip": ip})).await.expect(201);
        (answer["server"]["id"].as_i64().expect("id"), answer["enrollment_token"].as_str().expect("token").to_owned())
    }

    /// Adds a server and registers a dialect-A agent for it by IP; returns (server id, agent id, token).
    pub async fn registered_agent(&self, admin_token: &str, ip: &str) -> (i64, String, String) {
        let (id, _) = self.add_server(admin_token, &format!("srv-{ip}"), ip).await;
        let body = self
            .post(
                "/api/v1/agents/register",
                None,
                json!({"server_ip": ip, "hostname": format!("host-{ip}"), "agent_version": "1.0.0",
                       "system_info": {"os": "Debian 12", "kernel": "6.1.0", "arch": "x86_64"}}),
            )
            .await
            .ok();
        (
            id,
            body["agent_id"].as_str().expect("agent id").to_owned(),
            body["auth_token"].as_str().expect("token").to_owned(),
        )
    }

    pub async fn scalar_i64(&self, sql: &'static str, bind: i64) -> i64 {
        sqlx::query(sql).bind(bind).fetch_one(&self.db).await.expect("query").try_get(0).expect("column")
    }

    pub async fn rows(&self, sql: &'static str, bind: i64) -> Vec<sqlx::sqlite::SqliteRow> {
        sqlx::query(sql).bind(bind).fetch_all(&self.db).await.expect("query")
    }

    /// Every row of every table, quoted: equal snapshots mean nothing was written.
    pub async fn snapshot(&self) -> String {
        let tables: Vec<String> = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(&self.db)
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
        let mut out = String::new();
        for table in tables {
            let columns: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info(?)")
                .bind(&table)
                .fetch_all(&self.db)
                .await
                .expect("columns")
                .iter()
                .map(|r| format!("quote(\"{}\")", r.get::<String, _>(0)))
                .collect();
            let sql = format!("SELECT {} FROM \"{table}\" ORDER BY 1", columns.join("||','||"));
            for row in sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.db).await.expect("rows") {
                out.push_str(&table);
                out.push(':');
                out.push_str(&row.get::<String, _>(0));
                out.push('\n');
            }
        }
        out
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone, Default)]
pub struct Receiver(Arc<Mutex<Vec<Received>>>);

/// Something on 127.0.0.1 notifications go to (webhooks, chats): records every request.
impl Receiver {
    /// Serves on 127.0.0.1:0; paths under `/fail` answer 500.
    pub async fn start() -> (Self, SocketAddr) {
        let receiver = Self::default();
        let app = axum::Router::new().fallback(record).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, address)
    }

    pub fn at(&self, path: &str) -> Vec<Received> {
        self.0.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }
}

async fn record(Extract(receiver): Extract<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let path = uri.path().to_owned();
    let failing = path.starts_with("/fail");
    receiver.0.lock().unwrap().push(Received { path, headers, body });
    if failing { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
}

/// The real `serverpulse serve` process, killed (SIGKILL) when dropped.
pub struct HubProcess {
    pub child: Child,
    pub base: String,
}

impl HubProcess {
    /// On a data directory (the embedded SQLite database).
    pub fn on_data_dir(data: &Path, port: u16) -> Self {
        Self::serve(port, &["--data-dir".as_ref(), data.as_os_str()])
    }

    /// `serverpulse <args> serve --listen 127.0.0.1:<port>`, logging warnings only.
    pub fn serve(port: u16, args: &[&OsStr]) -> Self {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_serverpulse")), port, args)
    }

    /// As [`HubProcess::serve`], started with a soft limit of `soft` open files.
    pub fn serve_with_open_files(port: u16, args: &[&OsStr], soft: u32) -> Self {
        let mut shell = Command::new("sh");
        shell.args(["-c", &format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_serverpulse")]);
        Self::spawn(shell, port, args)
    }

    fn spawn(mut command: Command, port: u16, args: &[&OsStr]) -> Self {
        let child = command
            .args(args)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("SERVERPULSE_CONFIG")
            .env_remove("SERVERPULSE_DATABASE_URL")
            .env("SERVERPULSE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the hub");
        Self { child, base: format!("http://127.0.0.1:{port}") }
    }

    pub async fn wait_ready(&self) {
        wait_until_up(&format!("{}/api/v1/health", self.base)).await;
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 nothing listens on right now.
pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    probe.local_addr().expect("address").port()
}
