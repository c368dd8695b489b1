//! The embedded SQLite backend of the ServerPulse store, the default.
//!
//! One file in WAL mode with `synchronous=FULL`, so a transaction that returned is on
//! disk. Writes go through a pool of exactly one connection (SQLite has one writer
//! anyway; queueing in the pool avoids `SQLITE_BUSY` lock upgrades), reads through a
//! small pool of their own that WAL lets run beside the writer.
//!
//! The store itself (every `Store` method, in SQL) is shared with the PostgreSQL
//! backend: its modules live in `serverpulse-store/sql/` and are compiled here against
//! this crate's [`dialect`] (what SQLite does differently, down to how a flag column
//! reads). This crate adds the connection setup and its own migrations.

mod dialect;
mod migrate;
mod open;
mod plans;
mod rebuild;

#[path = "../../serverpulse-store/sql/alerting.rs"]
mod alerting;
#[path = "../../serverpulse-store/sql/batched.rs"]
mod batched;
#[path = "../../serverpulse-store/sql/charts.rs"]
mod charts;
#[path = "../../serverpulse-store/sql/compaction.rs"]
mod compaction;
#[path = "../../serverpulse-store/sql/contacts.rs"]
mod contacts;
#[path = "../../serverpulse-store/sql/errors.rs"]
mod errors;
#[path = "../../serverpulse-store/sql/ingest.rs"]
mod ingest;
#[path = "../../serverpulse-store/sql/notifications.rs"]
mod notifications;
#[path = "../../serverpulse-store/sql/retention.rs"]
mod retention;
#[path = "../../serverpulse-store/sql/rollups.rs"]
mod rollups;
#[path = "../../serverpulse-store/sql/rows.rs"]
mod rows;
#[path = "../../serverpulse-store/sql/samples_by_server.rs"]
mod samples_by_server;
#[path = "../../serverpulse-store/sql/store.rs"]
mod store;
#[path = "../../serverpulse-store/sql/users.rs"]
mod users;
#[path = "../../serverpulse-store/sql/written_back.rs"]
mod written_back;

pub(crate) use store::SqlStore;

/// The SQLite store. Cheap to clone (two pool handles).
pub type SqliteStore = SqlStore;
