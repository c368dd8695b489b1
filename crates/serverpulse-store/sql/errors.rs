//! The database's errors as store errors (the same for every backend: sqlx classifies
//! them): a broken unique constraint is a conflict, a broken foreign key a missing row.

use serverpulse_store::StoreError;

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
