//! The ServerPulse agent as a library; the `serverpulse-agent` binary is a thin shell
//! around [`cli::run`].
//!
//! A blocking design with no async runtime: one loop collects, reports, heartbeats and
//! polls for commands on its own schedule. Every step is a function of the injected time
//! ([`runtime::Agent::tick`], [`collector::Collector::collect_once`]) so tests drive it
//! without sleeping.

pub mod backoff;
pub mod cli;
pub mod coalesce;
pub mod collect;
pub mod collector;
pub mod config;
pub mod dbus;
pub mod logging;
pub mod logwatch;
pub mod report;
pub mod runtime;
pub mod sd_notify;
pub mod services;
pub mod spool;
pub mod state;
pub mod tailer;
pub mod thresholds;
pub mod transport;
