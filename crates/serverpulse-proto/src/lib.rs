//! The ServerPulse agent protocol, version 1 (`shared/PROTOCOL.md`), as Rust values.
//!
//! Agents already in the field speak two dialects of the same API (the documented
//! single-file agent, "A", and the modular agent, "B"). This crate is the one place that
//! knows both: it turns a JSON document into typed, validated values whose invariants
//! (percent in 0–100, finite numbers, known severities) hold by construction, and it owns
//! the response shapes the hub sends back. It does no IO, so the hub and the agent share it.

pub mod alert;
pub mod body_text;
pub mod command;
pub mod fields;
pub mod gzip;
pub mod heartbeat;
pub mod register;
pub mod report;
pub mod responses;
pub mod service;
pub mod settings;
pub mod time;

pub use fields::ValidationError;
