//! The pure, deterministic core: events → state → report and decisions.
//!
//! Nothing in this module does I/O or reads a clock. Time enters only as event
//! timestamps and as the `as_of` / `now` arguments, which is what lets `keypulse replay`
//! and the Kafka service give the same answer, and a partition's state move between
//! instances.
//!
//! It is its own crate (`keypulse-core`, built from these files by
//! `crates/keypulse-core/Cargo.toml`), so that fuzz targets, benches and tools use it
//! without building librdkafka; the service re-exports it as `keypulse::core`.

pub mod codes;
pub mod config;
pub mod country;
pub mod dedup;
pub mod event;
pub mod exclude;
pub mod expiry;
pub mod health;
pub mod movements;
pub mod report;
pub mod sharing;
pub mod signals;
pub mod state;
pub mod time;
pub mod view;
pub mod window;

pub use codes::{NotificationKind, Status};
pub use config::CoreConfig;
pub use event::{
    decode, decode_bounded, Event, EventKind, RejectReason, Rejection, ValidationResult,
};
pub use report::{Aggregate, Report};
pub use signals::Notification;
pub use state::{Applied, Lookahead, PartitionState};
pub use view::CustomerView;
