//! What ServerPulse's load runs share: deterministic agent-like series and the
//! measurements taken of a process from outside (CPU, PSS, fsyncs). The
//! `serverpulse-bench` binary drives a real hub with them; the hub's cargo benches use
//! the same series, so their figures describe the same data.

pub mod measure;
pub mod series;
