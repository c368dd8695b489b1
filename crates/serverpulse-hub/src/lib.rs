//! The ServerPulse hub as a library: the `serverpulse` binary is a thin shell around
//! [`cli::run`], and the integration tests start the same [`app`] on `127.0.0.1:0`.
//!
//! Data flows one way: decode and authenticate ([`body`], [`auth`]) → validate
//! (`serverpulse-proto`) → store atomically (`serverpulse-store`) → answer. Background
//! work ([`sweeper`]) runs as single-step functions driven by a [`clock::Clock`]. The
//! dashboard ([`web`]) renders pages from the same store and stays current through
//! [`live`].

pub mod admin;
pub mod alerting;
pub mod app;
pub mod auth;
pub mod background;
pub mod body;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod delivery;
pub mod error;
pub mod export;
pub mod ingest;
pub mod leadership;
pub mod live;
pub mod notifier;
pub mod openapi;
pub mod passwords;
pub mod retention;
pub mod routes;
pub mod summaries;
pub mod sweeper;
pub mod web;
