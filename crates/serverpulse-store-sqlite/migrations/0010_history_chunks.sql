-- Samples past the detail window, compacted: one chunk per server and day of agent
-- time, its columns encoded as `serverpulse_store::chunk` describes (the reports as
-- received are not kept). Whole hours move in as they age, so a chunk covers its day
-- from `start` up to `until`; the day's later samples are still in performance_logs. A
-- report landing before `until` reopens the chunk (its samples become rows again), so a
-- sample is never in both places. Compacted hours have no 5-minute summaries; a chart
-- derives them from the chunk. A rowid table, not WITHOUT ROWID: there a chunk of more
-- than about 1 KB would spill into an overflow page of its own, mostly empty.
CREATE TABLE history_chunks (
    server_id INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    start     INTEGER NOT NULL,   -- a multiple of one day, Unix ms (agent time)
    until     INTEGER NOT NULL,   -- end of the compacted span (exclusive), a whole hour
    samples   INTEGER NOT NULL,
    data      BLOB    NOT NULL,
    PRIMARY KEY (server_id, start)
);
