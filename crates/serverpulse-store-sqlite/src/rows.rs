//! Reading SQLite rows back into store records: the [`Columns`] of a row (flags are
//! integers here). The decoders themselves, and the mapping of errors, are shared by
//! every backend.

pub(crate) use crate::errors::{conflict_if_unique, db, missing_if_foreign_key};
use serverpulse_store::StoreResult;
pub(crate) use serverpulse_store::rows::{Columns, digest, from_json, to_json};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

/// A SQLite row, read column by column.
pub(crate) struct Cols<'r>(pub(crate) &'r SqliteRow);

impl Columns for Cols<'_> {
    fn text(&self, column: &str) -> StoreResult<String> {
        self.0.try_get(column).map_err(db)
    }
    fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
        self.0.try_get(column).map_err(db)
    }
    fn int(&self, column: &str) -> StoreResult<i64> {
        self.0.try_get(column).map_err(db)
    }
    fn opt_int(&self, column: &str) -> StoreResult<Option<i64>> {
        self.0.try_get(column).map_err(db)
    }
    fn opt_real(&self, column: &str) -> StoreResult<Option<f64>> {
        self.0.try_get(column).map_err(db)
    }
    fn flag(&self, column: &str) -> StoreResult<bool> {
        Ok(self.0.try_get::<i64, _>(column).map_err(db)? != 0)
    }
}

serverpulse_store::row_decoders!(SqliteRow, Cols);
