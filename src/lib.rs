//! keypulse: license telemetry into growth decisions.
//!
//! The layout, from the inside out:
//! - [`core`]: the pure fold (events → state → report and notifications), no I/O;
//! - [`replay`]: the file adapter behind `keypulse replay`;
//! - [`config`]: `keypulse.toml` plus environment overrides, validated;
//! - [`kafka`]: the group consumer, the fold workers and the dead-letter producer;
//! - [`metrics`]: the Prometheus families;
//! - [`http`]: the axum routes;
//! - [`service`]: the wiring of `keypulse run`;
//! - [`sink`]: where the fold's decisions go (the email adapter's seam).

pub mod config;
pub mod core;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod replay;
pub mod service;
pub mod sink;
