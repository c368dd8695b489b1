-- What ingest needs to know of a server's stored history at its newest end, beside its
-- row: a report later than all of it then needs no probe of the history of its own.
-- The counters in the newest figures (beside `last_uptime`: the neighbour a later
-- report's rates are measured against), the greatest `seq` ever stored, and where the
-- latest compacted chunk ends (compaction keeps it; a chunk reaching past the newest
-- figures means the newest sample may have moved into it).
ALTER TABLE servers ADD COLUMN last_network_rx BIGINT;
ALTER TABLE servers ADD COLUMN last_network_tx BIGINT;
ALTER TABLE servers ADD COLUMN last_disk_io_read BIGINT;
ALTER TABLE servers ADD COLUMN last_disk_io_write BIGINT;
ALTER TABLE servers ADD COLUMN max_seq BIGINT;
ALTER TABLE servers ADD COLUMN chunked_until BIGINT;
UPDATE servers SET last_network_rx = (last_metrics::jsonb ->> 'network_rx')::bigint,
    last_network_tx = (last_metrics::jsonb ->> 'network_tx')::bigint,
    last_disk_io_read = (last_metrics::jsonb ->> 'disk_io_read')::bigint,
    last_disk_io_write = (last_metrics::jsonb ->> 'disk_io_write')::bigint
WHERE last_metrics IS NOT NULL;
UPDATE servers SET max_seq = (SELECT max(p.seq) FROM performance_logs p WHERE p.server_id = servers.id),
    chunked_until = (SELECT max(c.until) FROM history_chunks c WHERE c.server_id = servers.id);
