//! The storage contract suite against a fresh SQLite file per test.

use serverpulse_store_sqlite::SqliteStore;

async fn fresh_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        SqliteStore::open(&dir.path().join("contract.db"), serverpulse_store::contract::T0).await.expect("open");
    (dir, store)
}

serverpulse_store::contract_suite!(fresh_store());

/// A fresh store holding one server, `name`, with its agent: for the migration tests,
/// which then put the database back as an earlier hub left it.
async fn store_with_one_agent(name: &str) -> (tempfile::TempDir, SqliteStore, serverpulse_store::ServerId) {
    use serverpulse_store::{AgentCredentials, NewServer, ProvisionedAgent};
    let (dir, store) = fresh_store().await;
    let token = serverpulse_domain::Secret::generate().expect("secret").digest();
    let server = NewServer { name: name.into(), ip: "10.1.1.2".parse().expect("ip") };
    let credentials = AgentCredentials { agent_id: name.into(), token };
    let ids = store
        .provision_agents_in_bulk(
            &[ProvisionedAgent { server, credentials, profile: None }],
            serverpulse_store::contract::T0,
        )
        .await
        .expect("provision");
    (dir, store, ids[0])
}

/// Agents provisioned in bulk with their profile are as registered: their hostname,
/// version and profile kept; without one, as a server added and never registered.
#[tokio::test]
async fn agents_provisioned_in_bulk_keep_their_profiles() {
    use serverpulse_store::{AgentCredentials, AgentProfile, NewServer, ProvisionedAgent, Store};
    let (_dir, store) = fresh_store().await;
    let agent = |name: &str, profile: Option<AgentProfile>| ProvisionedAgent {
        server: NewServer { name: name.into(), ip: "10.1.1.3".parse().expect("ip") },
        credentials: AgentCredentials {
            agent_id: format!("{name}-agent"),
            token: serverpulse_domain::Secret::generate().expect("secret").digest(),
        },
        profile,
    };
    let profile = AgentProfile {
        hostname: "web-02.example".into(),
        agent_version: Some("0.9.1".into()),
        system_info: serde_json::json!({"system_info": {"arch": "x86_64"}}),
    };
    let ids = store
        .provision_agents_in_bulk(
            &[agent("with", Some(profile)), agent("without", None)],
            serverpulse_store::contract::T0,
        )
        .await
        .expect("provision");
    let with = store.get_server(ids[0]).await.expect("server");
    assert_eq!((with.hostname.as_deref(), with.agent_version.as_deref()), (Some("web-02.example"), Some("0.9.1")));
    assert_eq!(with.agent_config.value(), serde_json::json!({"system_info": {"arch": "x86_64"}}));
    let without = store.get_server(ids[1]).await.expect("server");
    assert_eq!((without.hostname, without.agent_version), (None, None));
    assert_eq!(without.agent_config.value(), serde_json::json!({}));
}

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
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Buckets closed while their rows are pending wait in them (the default) or go
        /// out with the next batch (`at_once`).
        #[test]
        fn rollups_equal_a_recomputation((samples, batches) in chart_histories(), at_once in any::<bool>()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (_dir, store) = super::fresh_store().await;
                if at_once {
                    store.spread_closes_over(std::time::Duration::ZERO);
                }
                charts_agree_with_the_samples(&store, "prop", &samples, &batches).await;
            });
        }
    }
}

/// Migration 0014 on a database an earlier hub left (every sample merged into every
/// tier, no bucket open, the uptime only inside the newest figures): each server's
/// newest bucket opens, hourly charts still count each sample once, and the uptime
/// stands beside the figures.
#[tokio::test]
async fn the_server_tracking_migration_counts_each_sample_once_and_keeps_the_uptime() {
    use serverpulse_store::Store;
    let (dir, store, server) = store_with_one_agent("migrated").await;
    let path = dir.path().join("contract.db");
    let t0 = serverpulse_store::contract::T0;
    let hour = t0 - t0 % 3_600_000;
    let report = |seq: u64, at: i64| {
        let doc = serde_json::json!({"timestamp": serverpulse_proto::time::format_timestamp(at), "seq": seq,
            "metrics": {"cpu_usage": 10.0 * seq as f64, "memory_usage": 20.0, "disk_usage": 30.0, "uptime": seq}});
        serverpulse_proto::report::decode_report(&doc, "", at).unwrap()
    };
    let reports = [report(1, hour + 60_000), report(2, hour + 120_000), report(3, hour + 420_000)];
    store.store_reports(server, &reports, t0).await.unwrap();
    // As the chart route does: the server's dirty buckets first.
    let hourly = |store: SqliteStore| async move {
        store.refresh_rollups(Some(server)).await.unwrap();
        let chart = store.chart(server, hour, hour + 3_600_000, 3_600_000).await.unwrap();
        store.close().await;
        chart.iter().map(|b| (b.samples, b.bands[0].max)).collect::<Vec<_>>()
    };
    assert_eq!(hourly(store).await, [(3, Some(30.0))]);

    // As an earlier hub left it: nothing open, every bucket in the coarser tiers.
    let raw = sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path)).await.unwrap();
    sqlx::raw_sql(
        "UPDATE servers SET rollup_open = NULL, units_digest = NULL, last_uptime = NULL; \
         INSERT INTO rollup_dirty (server_id, start) SELECT server_id, start FROM rollups WHERE width = 300000",
    )
    .execute(&raw)
    .await
    .unwrap();
    let earlier = SqliteStore::open(&path, t0).await.unwrap();
    earlier.refresh_rollups(None).await.unwrap();
    earlier.close().await;
    // Then the migration's statements (the columns exist already).
    let migration = include_str!("../migrations/0014_server_tracking.sql");
    let statements: String =
        migration.lines().filter(|line| !line.starts_with("ALTER TABLE")).collect::<Vec<_>>().join("\n");
    sqlx::raw_sql(sqlx::AssertSqlSafe(statements)).execute(&raw).await.unwrap();
    raw.close().await;
    let migrated = SqliteStore::open(&path, t0).await.unwrap();
    assert_eq!(hourly(migrated).await, [(3, Some(30.0))], "the open bucket counted once");
    // The newest bucket is open: a sample appended to it, then one closing it.
    let migrated = SqliteStore::open(&path, t0).await.unwrap();
    let outcome =
        migrated.store_reports(server, &[report(4, hour + 480_000), report(5, hour + 3_600_000)], t0).await.unwrap();
    assert_eq!(outcome.previous_uptime, Some(3), "the newest figures' uptime, taken out of them");
    assert_eq!(hourly(migrated).await, [(4, Some(40.0))], "closed into the hour once");
}

/// Migration 0015 on a database whose newest samples' seqs were compacted before the
/// greatest seq was tracked: the migration finds none among the rows, so a chunk put
/// back must raise it, or a later report repeating one of its seqs would be taken as
/// new without a probe.
#[tokio::test]
async fn the_history_ends_migration_keeps_reopened_seqs_known() {
    use serverpulse_store::Store;
    let (dir, store, server) = store_with_one_agent("ends").await;
    let path = dir.path().join("contract.db");
    let t0 = serverpulse_store::contract::T0;
    let hour = t0 - t0 % 3_600_000;
    let report = |seq: Option<u64>, at: i64| {
        let mut doc = serde_json::json!({"timestamp": serverpulse_proto::time::format_timestamp(at),
            "metrics": {"cpu_usage": 10.0, "memory_usage": 20.0, "disk_usage": 30.0, "network_rx": 1_000}});
        if let Some(seq) = seq {
            doc["seq"] = seq.into();
        }
        serverpulse_proto::report::decode_report(&doc, "", at).unwrap()
    };
    let first = [
        report(Some(1), hour + 60_000),
        report(Some(2), hour + 120_000),
        report(Some(3), hour + 420_000),
        report(None, hour + 3_660_000),
    ];
    store.store_reports(server, &first, t0).await.unwrap();
    assert_eq!(store.compact_history(hour + 3_600_001).await.unwrap().samples, 3);
    store.close().await;

    // As an earlier hub left it, then the migration's statements (the columns exist).
    let raw = sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path)).await.unwrap();
    sqlx::raw_sql(
        "UPDATE servers SET last_network_rx = NULL, last_network_tx = NULL, last_disk_io_read = NULL, \
         last_disk_io_write = NULL, max_seq = NULL, chunked_until = NULL",
    )
    .execute(&raw)
    .await
    .unwrap();
    let migration = include_str!("../migrations/0015_history_ends.sql");
    let statements: String =
        migration.lines().filter(|line| !line.starts_with("ALTER TABLE")).collect::<Vec<_>>().join("\n");
    sqlx::raw_sql(sqlx::AssertSqlSafe(statements)).execute(&raw).await.unwrap();
    let tracked: (Option<i64>, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT max_seq, chunked_until, last_network_rx FROM servers").fetch_one(&raw).await.unwrap();
    assert_eq!(tracked, (None, Some(hour + 3_600_000), Some(1_000)));
    raw.close().await;

    let migrated = SqliteStore::open(&path, t0).await.unwrap();
    // A report inside the compacted hour, without a seq, puts the chunk back.
    migrated.store_reports(server, &[report(None, hour + 180_000)], t0).await.unwrap();
    let again = migrated.store_reports(server, &[report(Some(3), hour + 3_720_000)], t0).await.unwrap();
    assert_eq!((again.stored, again.duplicate_seqs), (0, vec![3]), "seq 3 is a row again, and known");
}

/// The database file at `path`, read as it stands on disk (beside the store).
async fn read_only(path: &std::path::Path) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path).read_only(true);
    sqlx::SqlitePool::connect_with(options).await.expect("the database file opens read-only")
}

/// Ingest leaves server rows behind the reports it takes (see
/// `serverpulse_store::write_back`) and writes them out on close. A store that stops
/// without closing (a crash, a kill) leaves them behind in the file: the next open
/// rebuilds them from the samples, so that the newest figures, the greatest `seq` and
/// the open bucket say everything that was stored.
#[tokio::test]
async fn rows_a_crash_left_behind_are_rebuilt_from_the_samples() {
    use serverpulse_store::Store;
    let (dir, store, server) = store_with_one_agent("crashed").await;
    let path = dir.path().join("contract.db");
    let t0 = serverpulse_store::contract::T0;
    let bucket = t0 - t0 % 300_000;
    let report = |seq: u64, at: i64| {
        let doc = serde_json::json!({"timestamp": serverpulse_proto::time::format_timestamp(at), "seq": seq,
            "metrics": {"cpu_usage": 10.0 * seq as f64, "memory_usage": 20.0, "disk_usage": 30.0,
                        "uptime": 100 + seq, "network_rx": 1_000 * seq}});
        serverpulse_proto::report::decode_report(&doc, "", at).unwrap()
    };
    // One report a batch, 30 s apart, all in one 5-minute bucket.
    for seq in 1..=5u64 {
        let at = bucket + (seq as i64 - 1) * 30_000;
        store.store_reports(server, &[report(seq, at)], at + 1_000).await.unwrap();
    }
    let row_in_file = |path: std::path::PathBuf| async move {
        let raw = read_only(&path).await;
        let row: (Option<i64>, Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT last_metrics_at, max_seq, agent_last_contact FROM servers WHERE id = ?")
                .bind(server)
                .fetch_one(&raw)
                .await
                .unwrap();
        raw.close().await;
        row
    };
    let count_in_file = |path: std::path::PathBuf, table: &'static str| async move {
        let raw = read_only(&path).await;
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE server_id = ?");
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(server).fetch_one(&raw).await.unwrap();
        raw.close().await;
        count
    };
    let newest = bucket + 120_000;
    assert!(row_in_file(path.clone()).await.0 < Some(newest), "the row is behind in the file");
    assert_eq!(store.get_server(server).await.unwrap().last_metrics_at, Some(newest), "but not as read");
    // So are the samples' entries, but every sample is read.
    assert_eq!(count_in_file(path.clone(), "performance_logs").await, 5);
    assert!(count_in_file(path.clone(), "samples_by_server").await < 5, "entries behind in the file");
    let read = store.metrics_history(server, bucket, bucket + 299_999, 10).await.unwrap();
    assert_eq!(read.iter().map(|s| s.seq).collect::<Vec<_>>(), (1..=5).map(Some).collect::<Vec<_>>());
    let raw_chart = store.chart(server, bucket, bucket + 299_999, 30_000).await.unwrap();
    assert_eq!(raw_chart.iter().map(|b| b.samples).sum::<u32>(), 5, "{raw_chart:?}");
    drop(store);

    let reopened = SqliteStore::open(&path, t0).await.unwrap();
    assert_eq!(row_in_file(path.clone()).await, (Some(newest), Some(5), Some(newest + 1_000)), "rebuilt");
    assert_eq!(count_in_file(path.clone(), "samples_by_server").await, 5, "entries rebuilt");
    let row = reopened.get_server(server).await.unwrap();
    let figures = row.last_metrics.expect("newest figures");
    assert_eq!((figures.cpu_usage, figures.uptime, figures.network_rx), (Some(50.0), Some(105), Some(5_000)));
    // A replayed seq is known; the next report is rated against the newest one.
    let replay = reopened.store_reports(server, &[report(4, newest + 30_000)], newest + 31_000).await.unwrap();
    assert_eq!((replay.stored, replay.duplicate_seqs), (0, vec![4]));
    let next = reopened.store_reports(server, &[report(6, bucket + 300_000)], bucket + 301_000).await.unwrap();
    assert_eq!(next.previous_uptime, Some(105));
    let history = reopened.metrics_history(server, bucket, bucket + 300_000, 10).await.unwrap();
    let rate = history.iter().find(|s| s.seq == Some(6)).and_then(|s| s.network_rx_rate);
    assert_eq!(rate, Some(1_000.0 / 180.0), "against the sample at 2 minutes, 3 minutes before");
    // The bucket the rebuilt row had open closed with all five of its samples.
    reopened.refresh_rollups(Some(server)).await.unwrap();
    let chart = reopened.chart(server, bucket, bucket + 599_999, 300_000).await.unwrap();
    assert_eq!(chart.iter().map(|b| (b.start, b.samples)).collect::<Vec<_>>(), [(bucket, 5), (bucket + 300_000, 1)]);
    // Removing the server removes its samples and their entries, pending ones included
    // (nothing cascades to them).
    let later = bucket + 330_000;
    reopened.store_reports(server, &[report(7, later)], later + 1_000).await.unwrap();
    reopened.delete_server(server, later + 2_000).await.unwrap();
    reopened.close().await;
    assert_eq!(count_in_file(path.clone(), "performance_logs").await, 0);
    assert_eq!(count_in_file(path.clone(), "samples_by_server").await, 0);
}

/// A report opening a later bucket leaves the bucket it closes in its server's pending
/// row (see `serverpulse_store::write_back`) until it is due: no tier in the file holds
/// it meanwhile, yet every chart counts it, once; due, it goes out with a later batch
/// into every tier, and charts stay the same.
#[tokio::test]
async fn a_bucket_closed_while_its_row_is_pending_waits_there_until_due() {
    use serverpulse_store::Store;
    let (dir, store, server) = store_with_one_agent("moving").await;
    let path = dir.path().join("contract.db");
    let bucket = next_bucket();
    for (seq, at) in [(1, bucket), (2, bucket + 60_000), (3, bucket + 120_000)] {
        store.store_reports(server, &[cpu_report(seq, at)], at + 1_000).await.unwrap();
    }
    // The row moves on: the bucket closes into its pending row.
    store.store_reports(server, &[cpu_report(4, bucket + 300_000)], bucket + 301_000).await.unwrap();
    assert_eq!(tiers_in_file(&path, server).await, vec![], "no tier holds the closed bucket yet");
    let charts = |store: SqliteStore| async move {
        let mut all = Vec::new();
        for step in [300_000, 3_600_000, 86_400_000] {
            let from = bucket - bucket % step;
            let chart = store.chart(server, from, from + step.max(600_000), step).await.unwrap();
            all.push(chart.iter().map(|b| (b.start, b.samples, b.bands[0].max, b.bands[0].last)).collect::<Vec<_>>());
        }
        all
    };
    let waiting = charts(store.clone()).await;
    let hour = bucket - bucket % 3_600_000;
    assert_eq!(waiting[0], [(bucket, 3, Some(30.0), Some(30.0)), (bucket + 300_000, 1, Some(40.0), Some(40.0))]);
    // The hour and the day hold both buckets (the boundary may fall on an hour's).
    let coarse: u32 = waiting[1].iter().map(|b| b.1).sum();
    assert_eq!((coarse, waiting[2].iter().map(|b| b.1).sum::<u32>()), (4, 4), "{waiting:?}");
    if bucket + 300_000 < hour + 3_600_000 {
        assert_eq!(waiting[1], [(hour, 4, Some(40.0), Some(40.0))]);
    }

    // Due: written out with the next batch (another report in the open bucket).
    store.spread_closes_over(std::time::Duration::ZERO);
    store.store_reports(server, &[cpu_report(5, bucket + 330_000)], bucket + 331_000).await.unwrap();
    store.store_reports(server, &[cpu_report(6, bucket + 360_000)], bucket + 361_000).await.unwrap();
    let tiers = tiers_in_file(&path, server).await;
    assert_eq!(tiers.iter().filter(|(width, ..)| *width == 300_000).collect::<Vec<_>>(), [&(300_000, bucket, 3)]);
    assert_eq!(tiers.iter().filter(|(width, ..)| *width > 300_000).map(|t| t.2).collect::<Vec<_>>(), [3, 3]);
    let written = charts(store.clone()).await;
    assert_eq!(written[0], [(bucket, 3, Some(30.0), Some(30.0)), (bucket + 300_000, 3, Some(60.0), Some(60.0))]);
    store.close().await;
}

/// A hub that stops without writing out a row that moved on (a crash, a kill) leaves
/// its closed bucket in no tier; the next open closes it from its raw samples, and the
/// row's open bucket is the newest sample's.
#[tokio::test]
async fn a_bucket_closed_while_its_row_was_pending_is_closed_after_a_crash() {
    use serverpulse_store::Store;
    let (dir, store, server) = store_with_one_agent("crashed-moving").await;
    let path = dir.path().join("contract.db");
    let t0 = serverpulse_store::contract::T0;
    let bucket = next_bucket();
    for (seq, at) in [(1, bucket), (2, bucket + 60_000), (3, bucket + 300_000), (4, bucket + 330_000)] {
        store.store_reports(server, &[cpu_report(seq, at)], at + 1_000).await.unwrap();
    }
    assert_eq!(tiers_in_file(&path, server).await, vec![], "the closed bucket waits in memory");
    drop(store);

    let reopened = SqliteStore::open(&path, t0).await.unwrap();
    let tiers = tiers_in_file(&path, server).await;
    assert_eq!(tiers.iter().map(|t| t.2).collect::<Vec<_>>(), [2, 2, 2], "closed from its samples: {tiers:?}");
    let chart = reopened.chart(server, bucket, bucket + 600_000, 300_000).await.unwrap();
    assert_eq!(chart.iter().map(|b| (b.start, b.samples)).collect::<Vec<_>>(), [(bucket, 2), (bucket + 300_000, 2)]);
    // The open bucket is the newest one: a report in it is not counted twice, the
    // next one closes it.
    reopened.store_reports(server, &[cpu_report(5, bucket + 360_000)], bucket + 361_000).await.unwrap();
    reopened.store_reports(server, &[cpu_report(6, bucket + 600_000)], bucket + 601_000).await.unwrap();
    reopened.close().await;
    let tiers = tiers_in_file(&path, server).await;
    let fives: Vec<(i64, i64)> = tiers.iter().filter(|t| t.0 == 300_000).map(|t| (t.1, t.2)).collect();
    assert_eq!(fives, [(bucket, 2), (bucket + 300_000, 3)]);
}

/// The start of a 5-minute bucket after `T0` (samples in it are newer than any other).
fn next_bucket() -> i64 {
    let t0 = serverpulse_store::contract::T0;
    t0 - t0 % 300_000 + 300_000
}

/// A report at `at` whose CPU figure is 10 × its `seq`.
fn cpu_report(seq: u64, at: i64) -> serverpulse_proto::report::Report {
    let doc = serde_json::json!({"timestamp": serverpulse_proto::time::format_timestamp(at), "seq": seq,
        "metrics": {"cpu_usage": 10.0 * seq as f64, "memory_usage": 20.0, "disk_usage": 30.0}});
    serverpulse_proto::report::decode_report(&doc, "", at).expect("a valid report")
}

/// The summaries of `server` in the file at `path` as it stands: (width, start, samples).
async fn tiers_in_file(path: &std::path::Path, server: serverpulse_store::ServerId) -> Vec<(i64, i64, i64)> {
    let raw = read_only(path).await;
    let rows = sqlx::query_as("SELECT width, start, samples FROM rollups WHERE server_id = ? ORDER BY width, start")
        .bind(server)
        .fetch_all(&raw)
        .await
        .expect("the summaries read");
    raw.close().await;
    rows
}
