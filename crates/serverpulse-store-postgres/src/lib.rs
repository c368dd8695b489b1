//! The PostgreSQL backend of the ServerPulse store, for fleets past one machine.
//!
//! Same tables, same contract suite, same history format as the SQLite backend (the
//! shaping of history and the reading of rows are shared through `serverpulse-store`);
//! what differs is the SQL dialect, and that several hub replicas may write at once:
//! writes that read before they write (ingest, compaction, summaries) take a
//! per-server transaction lock, so replicas serialise on a server, never on the fleet.

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

pub use store::PgStore;
