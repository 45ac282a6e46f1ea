//! keypulse: license telemetry into growth decisions.
//!
//! The layout, from the inside out:
//! - [`core`]: the pure fold (events → state → report and notifications), no I/O; its own
//!   crate `keypulse-core` (files in `src/core/`), re-exported here as `keypulse::core`;
//! - [`replay`]: the file adapter behind `keypulse replay`;
//! - [`backtest`]: `keypulse backtest`, one log folded under two configurations;
//! - [`config`]: `keypulse.toml` plus environment overrides, validated;
//! - [`kafka`]: the group consumer, the fold workers and the dead-letter producer;
//! - [`metrics`]: the Prometheus families;
//! - [`app_state`]: what HTTP and the service share: the served snapshot, worker queries;
//! - [`http`]: the axum routes;
//! - [`service`]: the wiring of `keypulse run`;
//! - [`sink`]: the seam between the fold's decisions and their delivery;
//! - [`email`]: rendering, transports, the outbox and its durable decision log;
//! - [`sim`]: the customer-base simulator behind `keypulse simulate` and the demo;
//! - [`dashboard`]: the built-in dashboard's embedded pages and their routes;
//! - [`group`]: one answer from any instance: members, peers, the group-wide report.

pub mod app_state;
pub mod backtest;
pub mod config;
pub use keypulse_core as core;
pub mod dashboard;
pub mod demo;
pub mod email;
pub mod group;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod replay;
pub mod service;
pub mod sim;
pub mod sink;
