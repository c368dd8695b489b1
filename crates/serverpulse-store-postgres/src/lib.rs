//! The PostgreSQL backend of the ServerPulse store, for fleets past one machine and
//! several hub replicas on one database.
//!
//! The store itself (every `Store` method, in SQL) is shared with the SQLite backend:
//! its modules live in `serverpulse-store/sql/` and are compiled here against this
//! crate's [`dialect`]. What differs is the dialect, and that several hub
//! replicas may write at once: writers that read before they write (ingest, compaction,
//! summaries) take a per-server transaction lock, so replicas serialise on a server,
//! never on the fleet. This crate adds the connection pool and its own migrations.

mod dialect;
mod migrate;
mod open;
#[cfg(feature = "scratch")]
pub mod scratch;

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

/// The PostgreSQL store. Cheap to clone (a pool handle).
pub type PgStore = SqlStore;
