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
    use serverpulse_store::contract::{ChartSample, charts_agree_with_the_samples};

    fn history() -> impl Strategy<Value = (Vec<ChartSample>, Vec<Vec<usize>>)> {
        // Two days on a 15-second grid, so samples often sit exactly on bucket edges.
        let offset = (0i64..11_520).prop_map(|k| k * 15_000);
        let sample = (offset, 0.0f64..100.0, prop::option::of(0.0f64..16.0), 0u64..1_000_000_000);
        prop::collection::vec(sample, 1..120)
            .prop_flat_map(|raw| {
                let n = raw.len();
                (Just(raw), Just((0..n).collect::<Vec<usize>>()).prop_shuffle(), 1usize..8)
            })
            .prop_map(|(raw, order, chunk)| {
                // Distinct times: a sample's time is its identity in agent time.
                let mut seen = std::collections::BTreeSet::new();
                let samples: Vec<ChartSample> = raw
                    .into_iter()
                    .map(|(offset_ms, cpu, load, network_rx)| {
                        let mut offset_ms = offset_ms;
                        while !seen.insert(offset_ms) {
                            offset_ms += 1;
                        }
                        ChartSample { offset_ms, cpu, load, network_rx }
                    })
                    .collect();
                let batches = order.chunks(chunk).map(<[usize]>::to_vec).collect();
                (samples, batches)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn rollups_equal_a_recomputation((samples, batches) in history()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (_dir, store) = super::fresh_store().await;
                charts_agree_with_the_samples(&store, "prop", &samples, &batches).await;
            });
        }
    }
}
