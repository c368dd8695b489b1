-- Each report's document packed (LZ4, see `serverpulse_store::packed`): a third of its
-- text's size, so that the rows ingest writes are. Where it is set, `raw` is empty;
-- rows written before keep their text in `raw`, and this NULL.
ALTER TABLE performance_logs ADD COLUMN raw_packed BLOB;
