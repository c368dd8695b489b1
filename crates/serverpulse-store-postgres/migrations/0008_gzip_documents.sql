-- How `raw_packed` is packed (see `serverpulse_store::packed`): NULL, LZ4 of the
-- document's text (every row before this migration); 1, the gzip request body that
-- carried the report alone, as the agent sent it (~1 KB for the agent's 2.5 KB).
ALTER TABLE performance_logs ADD COLUMN raw_packing BIGINT;
