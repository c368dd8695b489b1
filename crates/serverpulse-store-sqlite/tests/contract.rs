//! The storage contract suite against a fresh SQLite file per test.

use serverpulse_store_sqlite::SqliteStore;

async fn fresh_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        SqliteStore::open(&dir.path().join("contract.db"), serverpulse_store::contract::T0).await.expect("open");
    (dir, store)
}

serverpulse_store::contract_suite!(fresh_store());

/// Reopening applies no migration twice and keeps the data.
#[tokio::test]
async fn reopening_keeps_data() {
    use serverpulse_store::Store;
    let (dir, store) = fresh_store().await;
    let path = dir.path().join("contract.db");
    let secret = serverpulse_domain::Secret::generate().unwrap();
    store
        .create_server(
            serverpulse_store::NewServer { name: "keep".into(), ip: "10.1.1.1".parse().unwrap() },
            serverpulse_store::EnrollmentGrant { token: secret.digest(), expires_at: 1 },
            0,
        )
        .await
        .unwrap();
    store.close().await;
    let again = SqliteStore::open(&path, 1).await.unwrap();
    assert_eq!(again.list_servers().await.unwrap()[0].name, "keep");
}

mod properties {
    //! Rollups against a recomputation from the samples, over generated histories and
    //! arrival orders (the backend-neutral check lives in the contract module).

    use proptest::prelude::*;
    use serverpulse_store::contract::{chart_histories, charts_agree_with_the_samples};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn rollups_equal_a_recomputation((samples, batches) in chart_histories()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (_dir, store) = super::fresh_store().await;
                charts_agree_with_the_samples(&store, "prop", &samples, &batches).await;
            });
        }
    }
}
