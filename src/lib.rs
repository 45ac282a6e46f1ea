//! keypulse: license telemetry into growth decisions.
//!
//! The layout, from the inside out:
//! - [`core`]: the pure fold (events → state → report and notifications), no I/O;
//! - [`replay`]: the file adapter behind `keypulse replay`;
//! - [`config`]: `keypulse.toml` plus environment overrides, validated;
//! - [`sim`]: the customer-base simulator behind `keypulse simulate` and the demo;
//! - [`dashboard`]: the built-in dashboard's embedded pages and their routes.

pub mod config;
pub mod core;
pub mod dashboard;
pub mod replay;
pub mod sim;
pub mod sink;
