//! How SQLite plans the statements whose cost must not grow with the history: checked
//! here, on this backend's own SQLite, because its planner (with no statistics) may pick
//! a loop order that reads a whole table, and only `EXPLAIN QUERY PLAN` shows it.

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use crate::SqliteStore;
    use crate::batched::Shapes;

    /// The plan of `sql` (every parameter NULL): one line per step.
    async fn plan(store: &SqliteStore, sql: &str, parameters: usize) -> Vec<String> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for _ in 0..parameters {
            query = query.bind(Option::<i64>::None);
        }
        let rows = query.fetch_all(&store.writer).await.expect("the statement plans");
        rows.iter().map(|row| row.get::<String, _>("detail")).collect()
    }

    /// A step reading a whole table, other than the statement's own list of values.
    fn full_scans(plan: &[String]) -> Vec<&String> {
        plan.iter()
            .filter(|step| step.starts_with("SCAN") && *step != "SCAN r" && !step.contains("CONSTANT ROW"))
            .collect()
    }

    #[tokio::test]
    async fn the_ingest_probe_reads_by_index_whatever_the_batch() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&dir.path().join("plans.db"), 0).await.expect("the store opens");
        static TEXTS: Shapes = Shapes::new();
        for rows in [1, 2, 64] {
            let sql = TEXTS.text(rows, crate::ingest::around_sql);
            let plan = plan(&store, sql, rows * 6).await;
            // A server's samples are found by `samples_by_server`'s key (`q`, `i`).
            assert!(
                plan.iter().any(|step| step.ends_with("USING PRIMARY KEY (server_id=? AND agent_time<?)")),
                "{plan:#?}"
            );
            assert_eq!(full_scans(&plan), Vec::<&String>::new(), "{rows} reports: {plan:#?}");
        }
    }
}
