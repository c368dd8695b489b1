-- 5-minute buckets that gained samples since their summaries were last computed. Ingest
-- only marks them (one small statement per request); the hub refreshes them every few
-- seconds in one transaction, each bucket once however many reports touched it.
CREATE TABLE rollup_dirty (
    server_id INTEGER NOT NULL,
    start     INTEGER NOT NULL,
    PRIMARY KEY (server_id, start)
) WITHOUT ROWID;
