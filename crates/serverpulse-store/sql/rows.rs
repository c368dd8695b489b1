//! Reading rows back into store records: a row of the backend's database as
//! [`Columns`] (how a flag is read is the dialect's: an integer in SQLite, a boolean in
//! PostgreSQL), the shared decoders for the backend's own row type, and the mapping of
//! errors.

pub(crate) use crate::errors::{conflict_if_unique, db, missing_if_foreign_key};
use serverpulse_store::StoreResult;
pub(crate) use serverpulse_store::rows::{Columns, digest, from_json, to_json};
use sqlx::Row;

use crate::dialect::DbRow;

/// A row, read column by column.
pub(crate) struct Cols<'r>(pub(crate) &'r DbRow);

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
        crate::dialect::flag(self.0, column)
    }
    fn opt_bytes(&self, column: &str) -> StoreResult<Option<Vec<u8>>> {
        self.0.try_get(column).map_err(db)
    }
}

serverpulse_store::row_decoders!(DbRow, Cols);
