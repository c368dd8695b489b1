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

/// Compaction moves samples between rows and chunks (and a replay moves them back):
/// a reader never sees a sample twice or misses one, since each read is one snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_each_sample_once_while_compaction_moves_it() {
    use serverpulse_store::{AgentCredentials, NewServer, Store};
    let (_dir, store) = fresh_store().await;
    let token = serverpulse_domain::Secret::generate().unwrap().digest();
    let agent = (
        NewServer { name: "moving".into(), ip: "10.1.1.2".parse().unwrap() },
        AgentCredentials { agent_id: "moving".into(), token },
    );
    let id = store.provision_agents_in_bulk(&[agent], serverpulse_store::contract::T0).await.unwrap()[0];
    let (hour, t0) = (3_600_000, serverpulse_store::contract::T0);
    let start = t0 - t0 % 86_400_000;
    let reports: Vec<_> = (0..240u64)
        .map(|i| {
            let at = start + i as i64 * 30_000;
            let doc = serde_json::json!({"seq": i, "timestamp": serverpulse_proto::time::format_timestamp(at),
                "metrics": {"cpu_usage": 5.0, "memory_usage": 20.0, "disk_usage": 30.0, "network_rx": i * 1_000,
                    "uptime": 100_000}});
            serverpulse_proto::report::decode_report(&doc, "", at).unwrap()
        })
        .collect();
    store.store_reports(id, &reports, start).await.unwrap();
    let store = std::sync::Arc::new(store);
    let mover = {
        let (store, replay) = (store.clone(), reports[5].clone());
        tokio::spawn(async move {
            for _ in 0..40 {
                store.compact_history(start + 2 * hour).await.unwrap();
                // A replay of a compacted report reopens its chunk: the samples are rows again.
                assert_eq!(store.store_reports(id, std::slice::from_ref(&replay), start).await.unwrap().stored, 0);
            }
        })
    };
    let mut reads = 0;
    while !mover.is_finished() {
        let history = store.metrics_history(id, start, start + 2 * hour, 1_000).await.unwrap();
        assert_eq!(history.len(), 240, "read {reads}");
        let chart = store.chart(id, start - 1, start + 2 * hour, 60_000).await.unwrap();
        assert_eq!(chart.iter().map(|b| b.samples).sum::<u32>(), 240, "read {reads}");
        reads += 1;
    }
    mover.await.unwrap();
    assert!(reads > 10, "the reads overlapped the moves ({reads})");
}
