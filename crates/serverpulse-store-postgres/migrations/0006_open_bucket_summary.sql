-- A server's open 5-minute bucket summed up as samples are appended to it (see
-- `OpenSummary`): written as the bucket's 5-minute summary when it closes, instead of
-- reading its raw samples back. NULL (as every server starts) means not known: the
-- bucket is then summed up from its raw samples when it closes.
ALTER TABLE servers ADD COLUMN rollup_open_summary BYTEA;
