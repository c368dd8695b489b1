//! The storage contract suite against PostgreSQL: a fresh database per test on the
//! server named by `SERVERPULSE_TEST_POSTGRES` (see [`ScratchDatabase`]). Without it the
//! checks are skipped with a note, except under CI, where a missing server is a failure.

use serverpulse_store_postgres::PgStore;
use serverpulse_store_postgres::scratch::ScratchDatabase;

async fn fresh_store() -> Option<(ScratchDatabase, PgStore)> {
    let database = ScratchDatabase::create("contract").await?;
    let store = PgStore::open_url(&database.url(), serverpulse_store::contract::T0).await.expect("open");
    Some((database, store))
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

/// Two hubs on one database: exactly one leads; when its session ends, the other takes
/// over; and what one broadcasts, the other receives.
#[tokio::test]
async fn one_hub_leads_and_broadcasts_reach_the_others() {
    use serverpulse_store::Store;
    let Some((database, first)) = fresh_store().await else { return };
    let second = PgStore::open_url(&database.url(), serverpulse_store::contract::T0).await.expect("second hub");
    assert!(first.is_shared());
    assert!(first.lead().await.expect("lead"), "the first to ask leads");
    assert!(first.lead().await.expect("lead"), "and keeps leading");
    assert!(!second.lead().await.expect("lead"), "one leader at a time");

    let (heard, mut hearing) = tokio::sync::mpsc::unbounded_channel();
    let follower = {
        let second = second.clone();
        tokio::spawn(async move {
            let deliver = move |payload: String| {
                let _ = heard.send(payload);
            };
            second.follow_broadcasts(&deliver).await
        })
    };
    // Following starts asynchronously: broadcast until the first one arrives.
    let received = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            first.broadcast("{\"hello\":1}").await.expect("broadcast");
            tokio::select! {
                payload = hearing.recv() => return payload,
                () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            }
        }
    })
    .await
    .expect("a broadcast arrives");
    assert_eq!(received.as_deref(), Some("{\"hello\":1}"));
    follower.abort();

    first.close().await; // the leader's sessions end, as when its process dies
    let took_over = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !second.lead().await.expect("lead") {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(took_over.is_ok(), "the other hub leads once the leader is gone");
    second.close().await;
}
