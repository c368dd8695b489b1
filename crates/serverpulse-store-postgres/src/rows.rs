//! Reading PostgreSQL rows back into store records: the [`Columns`] of a row (flags are
//! booleans here), and PostgreSQL's errors as store errors. The decoders themselves are
//! shared by every backend.

pub(crate) use serverpulse_store::rows::{Columns, digest, from_json, to_json};
use serverpulse_store::{StoreError, StoreResult};
use sqlx::Row;
use sqlx::postgres::PgRow;

pub(crate) fn db(error: sqlx::Error) -> StoreError {
    if let Some(db) = error.as_database_error()
        && db.is_unique_violation()
    {
        return StoreError::Conflict(db.message().to_owned());
    }
    StoreError::Backend(error.to_string())
}

/// A write that broke a unique constraint is a conflict (`message` says which); other
/// failures stay backend errors.
pub(crate) fn conflict_if_unique(error: sqlx::Error, message: &str) -> StoreError {
    match error.as_database_error() {
        Some(e) if e.is_unique_violation() => StoreError::Conflict(message.to_owned()),
        _ => db(error),
    }
}

/// A write naming a row that does not exist (a foreign key) is `NotFound`.
pub(crate) fn missing_if_foreign_key(error: sqlx::Error) -> StoreError {
    match error.as_database_error() {
        Some(e) if e.is_foreign_key_violation() => StoreError::NotFound,
        _ => db(error),
    }
}

/// A PostgreSQL row, read column by column.
pub(crate) struct Cols<'r>(pub(crate) &'r PgRow);

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
        self.0.try_get(column).map_err(db)
    }
}

serverpulse_store::row_decoders!(PgRow, Cols);
