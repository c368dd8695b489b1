//! The storage contract suite against PostgreSQL: a fresh database per test on the
//! server named by `SERVERPULSE_TEST_POSTGRES` (a `postgres://` URL whose user may
//! create databases; `.ci/run` starts one on 127.0.0.1). Without it the checks are
//! skipped with a note, except under CI, where a missing server is a failure.

use serverpulse_store_postgres::PgStore;

/// Drops the test's database when the test ends.
struct FreshDatabase {
    admin_url: String,
    name: String,
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // The test's runtime is shutting down: drop from a runtime of our own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}

async fn fresh_store() -> Option<(FreshDatabase, PgStore)> {
    let Ok(admin_url) = std::env::var("SERVERPULSE_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the PostgreSQL contract suite: set SERVERPULSE_TEST_POSTGRES"
        );
        eprintln!("SERVERPULSE_TEST_POSTGRES is not set: skipping the PostgreSQL contract check");
        return None;
    };
    use sqlx::Connection;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "serverpulse_contract_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.expect("connect to SERVERPULSE_TEST_POSTGRES");
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.expect("drop old");
    let sql = format!("CREATE DATABASE {name}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.expect("create database");
    let url = database_url(&admin_url, &name);
    let store = PgStore::open_url(&url, serverpulse_store::contract::T0).await.expect("open");
    Some((FreshDatabase { admin_url, name }, store))
}

/// `url` with its database replaced by `name`.
fn database_url(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

serverpulse_store::contract_suite!(optional fresh_store());

mod properties {
    //! Rollups against a recomputation from the samples (the check is the contract
    //! module's; the SQLite backend runs it too).

    use proptest::prelude::*;
    use serverpulse_store::contract::{chart_histories, charts_agree_with_the_samples};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        #[test]
        fn rollups_equal_a_recomputation((samples, batches) in chart_histories()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let Some((_database, store)) = super::fresh_store().await else { return };
                charts_agree_with_the_samples(&store, "prop", &samples, &batches).await;
            });
        }
    }
}
