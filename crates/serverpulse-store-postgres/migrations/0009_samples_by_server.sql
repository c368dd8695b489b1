-- The store finds a server's samples through `samples_by_server` (server, agent time,
-- row id, `seq`). On SQLite that is a table whose entries the one writer writes a
-- server's bucket at a time. Hubs sharing this database write every sample's entry with
-- it, which is what the index `performance_logs_time` already is: the same relation, read
-- from there.
CREATE VIEW samples_by_server AS SELECT server_id, agent_time, id, seq FROM performance_logs;
