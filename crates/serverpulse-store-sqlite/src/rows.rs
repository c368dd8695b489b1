//! Reading SQLite rows back into store records: the [`Columns`] of a row (flags are
//! integers here), and SQLite's errors as store errors. The decoders themselves are
//! shared by every backend.

pub(crate) use serverpulse_store::rows::{Columns, digest, from_json, to_json};
use serverpulse_store::{StoreError, StoreResult};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

pub(crate) fn db(error: sqlx::Error) -> StoreError {
    if let Some(db) = error.as_database_error()
        && db.is_unique_violation()
    {
        return StoreError::Conflict(db.message().to_owned());
    }
    StoreError::Backend(error.to_string())
}

/// A write that broke a UNIQUE constraint is a conflict (`message` says which); other
/// failures stay backend errors.
pub(crate) fn conflict_if_unique(error: sqlx::Error, message: &str) -> StoreError {
    match &error {
        sqlx::Error::Database(e) if e.message().contains("UNIQUE") => StoreError::Conflict(message.to_owned()),
        _ => db(error),
    }
}

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
