-- A server's samples are found through a table of their own, `samples_by_server`,
-- instead of an index on `performance_logs`. An index entry is written with its sample,
-- and in a real fleet's arrival order each report's entry lands on a page of its own,
-- read, logged and checkpointed: the last random page a report dirtied
-- (docs/benchmarks.md, seventeenth session). An entry of this table is written when its
-- server's row is (`serverpulse_store::write_back`): a server's ~10 entries of a 5-minute
-- bucket together, on one page. In between they are in the writer's memory, and every
-- read of a server's samples takes them from there too.
--
-- `performance_logs` is rebuilt without its reference to `servers`: deleting a server
-- would have searched the whole table for its samples, with no index to find them by.
-- Deleting a server deletes them through `samples_by_server` instead.
CREATE TABLE performance_logs_new (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id          INTEGER NOT NULL,
    seq                INTEGER,
    agent_time         INTEGER NOT NULL,
    received_at        INTEGER NOT NULL,
    cpu_usage          REAL,
    ram_usage          REAL,
    disk_usage         REAL,
    load_average       REAL,
    uptime             INTEGER,
    response_time      REAL,
    network_rx         INTEGER,
    network_tx         INTEGER,
    disk_io_read       INTEGER,
    disk_io_write      INTEGER,
    network_rx_rate    REAL,
    network_tx_rate    REAL,
    disk_io_read_rate  REAL,
    disk_io_write_rate REAL,
    raw                TEXT    NOT NULL,
    raw_packed         BLOB,
    raw_packing        INTEGER
);
INSERT INTO performance_logs_new SELECT id, server_id, seq, agent_time, received_at, cpu_usage, ram_usage,
    disk_usage, load_average, uptime, response_time, network_rx, network_tx, disk_io_read, disk_io_write,
    network_rx_rate, network_tx_rate, disk_io_read_rate, disk_io_write_rate, raw, raw_packed, raw_packing
FROM performance_logs;
-- Ids stay unused once used, as before.
UPDATE sqlite_sequence SET seq = (SELECT o.seq FROM sqlite_sequence o WHERE o.name = 'performance_logs')
WHERE name = 'performance_logs_new'
  AND seq < (SELECT o.seq FROM sqlite_sequence o WHERE o.name = 'performance_logs');
DROP TABLE performance_logs;
ALTER TABLE performance_logs_new RENAME TO performance_logs;

-- Each sample's entry: its server, agent time and `seq`, and its row id. In agent time,
-- among equal times in arrival order (ids grow with arrival).
CREATE TABLE samples_by_server (
    server_id  INTEGER NOT NULL,
    agent_time INTEGER NOT NULL,
    id         INTEGER NOT NULL,
    seq        INTEGER,
    PRIMARY KEY (server_id, agent_time, id)
) WITHOUT ROWID;
INSERT INTO samples_by_server (server_id, agent_time, id, seq)
SELECT server_id, agent_time, id, seq FROM performance_logs;

-- Every sample with an id up to `through` has its entry in `samples_by_server`: after a
-- crash, the entries the writer held are rebuilt from the samples after it.
CREATE TABLE samples_indexed (through INTEGER NOT NULL);
INSERT INTO samples_indexed (through) SELECT COALESCE(MAX(id), 0) FROM performance_logs;
