-- One per-server index on the samples where there were two. Every report landing in
-- its server's history wrote an entry in each, and in a real fleet's arrival order each
-- entry is a page of its own, read, logged and checkpointed (docs/benchmarks.md,
-- sixteenth session): the `(server_id, seq)` index cost ~15 µs a report. Its two uses
-- are kept by the time index with `seq` as a third column:
-- - finding a stored `seq` (a replayed report): a scan of the server's entries, which
--   holds `seq`, so no sample row is read unless it matches; a report with a `seq`
--   above the server's greatest (`servers.max_seq`, every live agent's next report)
--   needs no probe at all;
-- - each `seq` once per server: only this hub's writer stores samples in this file,
--   and it stores no `seq` it found stored or met earlier in the same batch (the
--   contract suite's `reports_with_a_known_seq_are_stored_once` and the kill -9 load
--   test check it). PostgreSQL, shared by replicas, keeps its unique index.
DROP INDEX performance_logs_seq;
DROP INDEX performance_logs_time;
CREATE INDEX performance_logs_time ON performance_logs (server_id, agent_time, seq);
