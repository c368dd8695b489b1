-- Each report's document packed (LZ4, see `serverpulse_store::packed`): ~60 % of its
-- text's size (1.5 KB for the agent's 2.5 KB), and so are the rows ingest writes.
-- Where it is set, `raw` is empty;
-- rows written before keep their text in `raw`, and this NULL.
ALTER TABLE performance_logs ADD COLUMN raw_packed BLOB;
