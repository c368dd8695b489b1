-- Samples past the detail window, compacted: one chunk per server and hour of agent
-- time, its columns encoded as `serverpulse_store::chunk` describes (the reports as
-- received are not kept). A block's samples are either all here or all still in
-- performance_logs, never split: a report landing in a compacted block reopens it.
-- Compacted blocks have no 5-minute summaries; a chart derives them from the chunk.
-- A rowid table, not WITHOUT ROWID: there a chunk of more than about 1 KB would spill
-- into an overflow page of its own, mostly empty.
CREATE TABLE history_chunks (
    server_id INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    start     INTEGER NOT NULL,   -- a multiple of one hour, Unix ms (agent time)
    samples   INTEGER NOT NULL,
    data      BLOB    NOT NULL,
    PRIMARY KEY (server_id, start)
);
