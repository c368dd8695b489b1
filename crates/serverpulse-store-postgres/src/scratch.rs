//! Throwaway databases for tests (feature `scratch`): each test gets an empty database
//! of its own on the PostgreSQL server named by `SERVERPULSE_TEST_POSTGRES` (a
//! `postgres://` URL whose user may create databases; `.ci/run` starts such a server on
//! 127.0.0.1), dropped when the test ends.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

/// The variable naming the test server.
pub const SERVER_VARIABLE: &str = "SERVERPULSE_TEST_POSTGRES";

/// An empty database, dropped with this value.
#[derive(Debug)]
pub struct ScratchDatabase {
    server_url: String,
    name: String,
}

impl ScratchDatabase {
    /// Creates `serverpulse_<purpose>_<pid>_<n>`. `None` (with a note) when no test
    /// server is configured — except under CI (`CI` set), where that is a failure.
    pub async fn create(purpose: &str) -> Option<Self> {
        let Ok(server_url) = std::env::var(SERVER_VARIABLE) else {
            assert!(std::env::var_os("CI").is_none(), "CI must run the PostgreSQL tests: set {SERVER_VARIABLE}");
            eprintln!("{SERVER_VARIABLE} is not set: skipping a PostgreSQL test");
            return None;
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let purpose: String = purpose.chars().filter(char::is_ascii_alphanumeric).collect();
        let name = format!("serverpulse_{purpose}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = sqlx::PgConnection::connect(&server_url).await.expect("connect to the PostgreSQL test server");
        for sql in [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name}")] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.expect("create a scratch database");
        }
        let _ = admin.close().await;
        Some(Self { server_url, name })
    }

    /// The database's URL: the server's, with this database.
    pub fn url(&self) -> String {
        let url = self.server_url.as_str();
        let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
        let authority_end = base.find("://").map_or(0, |i| i + 3);
        let base = match base[authority_end..].find('/') {
            Some(slash) => &base[..authority_end + slash],
            None => base,
        };
        match query {
            Some(query) => format!("{base}/{}?{query}", self.name),
            None => format!("{base}/{}", self.name),
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        // The test's runtime may be shutting down: drop from a thread and runtime of our own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}
