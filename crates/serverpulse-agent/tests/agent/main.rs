//! Integration tests of the agent: fixture `/proc` trees, the folder of invalid
//! configurations, and the agent against the real hub on 127.0.0.1. One test binary.

// Test helpers panic on purpose when something misbehaves.
#![allow(clippy::unwrap_used)]

mod configs;
mod end_to_end;
mod fixture;
mod hub;
mod install;
mod network;
mod process;
mod systemd_bus;
mod two_snapshots;
