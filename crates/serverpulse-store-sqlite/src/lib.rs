//! The embedded SQLite backend of the ServerPulse store, the default.
//!
//! One file in WAL mode with `synchronous=FULL`, so a transaction that returned is on
//! disk. Writes go through a pool of exactly one connection (SQLite has one writer
//! anyway; queueing in the pool avoids `SQLITE_BUSY` lock upgrades), reads through a
//! small pool of their own that WAL lets run beside the writer.

mod alerting;
mod charts;
mod compaction;
mod migrate;
mod notifications;
mod retention;
mod rollups;
mod rows;
mod store;
mod users;

pub use store::SqliteStore;
