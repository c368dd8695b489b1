//! The real hub, in-process on 127.0.0.1, on a tokio runtime of its own so the blocking
//! agent can talk to it from the test thread; stoppable and restartable on one port.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use serverpulse_hub::app::AppState;
use serverpulse_hub::clock::SystemClock;
use serverpulse_hub::config::Settings;
use serverpulse_store_sqlite::SqliteStore;

/// A hub running on a tokio runtime of its own, stoppable and restartable on one port.
pub struct TestHub {
    pub runtime: tokio::runtime::Runtime,
    db: std::path::PathBuf,
    address: SocketAddr,
    tune: fn(&mut Settings),
    state: Option<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestHub {
    /// Starts a hub over the database file `db`; `tune` adjusts its settings.
    pub fn start(db: &Path, tune: fn(&mut Settings)) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = probe.local_addr().unwrap();
        drop(probe);
        let mut hub = Self { runtime, db: db.to_owned(), address, tune, state: None, stop: None, task: None };
        hub.resume();
        hub
    }

    pub fn resume(&mut self) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (db, address, tune) = (self.db.clone(), self.address, self.tune);
        let state = self.runtime.block_on(async move {
            let store = SqliteStore::open(&db, 0).await.unwrap();
            let mut settings = Settings::defaults();
            settings.public_url = format!("http://{address}");
            tune(&mut settings);
            AppState::new(Arc::new(store), Arc::new(SystemClock), settings)
        });
        let listener = self.runtime.block_on(tokio::net::TcpListener::bind(address)).unwrap();
        let serving = state.clone();
        self.task = Some(self.runtime.spawn(async move {
            serverpulse_hub::app::serve(listener, serving, async {
                let _ = stopped.await;
            })
            .await;
        }));
        self.state = Some(state);
        self.stop = Some(stop);
    }

    pub fn pause(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.runtime.block_on(self.task.take().unwrap()).unwrap();
    }

    pub fn state(&self) -> &AppState {
        self.state.as_ref().unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Calls the REST API with an API token; panics unless the answer is 2xx JSON.
    pub fn api(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}{path}", self.url());
        let bearer = format!("Bearer {token}");
        let mut response = match (method, body) {
            (method @ ("POST" | "PUT"), Some(body)) => {
                let request = if method == "PUT" { agent.put(&url) } else { agent.post(&url) };
                request
                    .header("Authorization", &bearer)
                    .content_type("application/json")
                    .send(body.to_string())
                    .unwrap()
            }
            ("GET", None) => agent.get(&url).header("Authorization", &bearer).call().unwrap(),
            ("DELETE", None) => agent.delete(&url).header("Authorization", &bearer).call().unwrap(),
            (method, body) => panic!("unsupported call {method} with body {body:?}"),
        };
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        assert!((200..300).contains(&status), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }
}
