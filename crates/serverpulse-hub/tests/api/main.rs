//! Integration tests of the hub: the real router on 127.0.0.1:0, driven over HTTP,
//! with the SQLite file behind it read back directly. One test binary for the crate.

// Test helpers panic on purpose when the hub misbehaves.
#![allow(clippy::unwrap_used)]

mod agent_dialect_a;
mod agent_dialect_b;
mod alerting;
mod bad_input;
mod browser;
mod cli;
mod connections;
mod dashboard;
mod export;
mod ingest;
mod notifications;
mod pipeline;
mod registration;
mod replicas;
mod rest;
mod roles;
mod support;
mod sweeper;
