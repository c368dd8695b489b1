-- A server's open 5-minute bucket (the one holding its newest sample, Unix ms, agent
-- time) is summed up in the 5-minute tier only; the hourly and daily tiers take it in
-- when it closes (a later bucket opens, or compaction or retention removes it). Until
-- then charts on those tiers add it themselves.
ALTER TABLE servers ADD COLUMN rollup_open INTEGER;

-- Earlier hubs merged every sample into every tier: each server's newest bucket opens
-- here, and its coarser buckets are recomputed without it (by the next refresh, which
-- a chart of that server runs first).
UPDATE servers SET rollup_open = last_metrics_at - (((last_metrics_at % 300000) + 300000) % 300000)
WHERE last_metrics_at IS NOT NULL;
INSERT INTO rollup_dirty (server_id, start) SELECT id, rollup_open FROM servers
WHERE rollup_open IS NOT NULL ON CONFLICT DO NOTHING;

-- The digest of the watched units the newest report listed, as stored (NULL: unknown).
-- A report with the same digest changes no unit and is not compared unit by unit.
ALTER TABLE servers ADD COLUMN units_digest INTEGER;

-- The uptime in the newest figures, beside them: ingest reads it on every report (to
-- tell a reboot), where taking it out of the figures' JSON cost a parse each time.
ALTER TABLE servers ADD COLUMN last_uptime INTEGER;
UPDATE servers SET last_uptime = json_extract(last_metrics, '$.uptime') WHERE last_metrics IS NOT NULL;
