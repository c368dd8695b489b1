-- What ingest needs to know of a server's stored history at its newest end, beside its
-- row: a report later than all of it then needs no probe of the history of its own.
-- The counters in the newest figures (beside `last_uptime`: the neighbour a later
-- report's rates are measured against), the greatest `seq` ever stored, and where the
-- latest compacted chunk ends (compaction keeps it; a chunk reaching past the newest
-- figures means the newest sample may have moved into it).
ALTER TABLE servers ADD COLUMN last_network_rx INTEGER;
ALTER TABLE servers ADD COLUMN last_network_tx INTEGER;
ALTER TABLE servers ADD COLUMN last_disk_io_read INTEGER;
ALTER TABLE servers ADD COLUMN last_disk_io_write INTEGER;
ALTER TABLE servers ADD COLUMN max_seq INTEGER;
ALTER TABLE servers ADD COLUMN chunked_until INTEGER;
UPDATE servers SET last_network_rx = json_extract(last_metrics, '$.network_rx'),
    last_network_tx = json_extract(last_metrics, '$.network_tx'),
    last_disk_io_read = json_extract(last_metrics, '$.disk_io_read'),
    last_disk_io_write = json_extract(last_metrics, '$.disk_io_write')
WHERE last_metrics IS NOT NULL;
UPDATE servers SET max_seq = (SELECT max(p.seq) FROM performance_logs p WHERE p.server_id = servers.id),
    chunked_until = (SELECT max(c.until) FROM history_chunks c WHERE c.server_id = servers.id);
