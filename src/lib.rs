//! keypulse: license telemetry into growth decisions.
//!
//! The layout, from the inside out:
//! - [`core`]: the pure fold (events → state → report and notifications), no I/O;
//! - [`replay`]: the file adapter behind `keypulse replay`;
//! - [`config`]: `keypulse.toml` plus environment overrides, validated.

pub mod config;
pub mod core;
pub mod replay;
pub mod sink;
