-- How far back each kind of history is complete: retention deleted everything older.
-- `width` 0 is the raw samples, else a rollup tier's bucket width. A bucket is only
-- recomputed from a source whose horizon it does not predate, so a late report can
-- never shrink a summary whose raw samples are gone.
CREATE TABLE retention_horizons (
    width   INTEGER PRIMARY KEY,
    horizon INTEGER NOT NULL
);
