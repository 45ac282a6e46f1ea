//! The outbox: the [`DecisionSink`](crate::sink::DecisionSink) that turns the fold's
//! decisions into emails, each sent once.
//!
//! Owns the map of decisions (idempotency key → where it stands), the bounded queue to the
//! mailer task, the deferred list, retries with backoff, and the records it writes to the
//! [`DecisionLog`]. Guarantees:
//! - `submit` never waits: it looks the key up, starts the durable `pending` write, and
//!   queues the job, or defers it when the queue is full (see "queue full" below);
//! - a key already known (pending, sent or failed, from this process, from the log at
//!   start, or from another instance through the log) is never queued twice: a second
//!   `submit` counts `skipped_duplicate`. Exception: a `pending` entry found in the log
//!   and not yet taken on by this process is taken on (outcome `resumed`) when the fold
//!   decides it again, as it does when it rebuilds a partition it now owns;
//! - the mailer (one sender per SMTP pool connection, `email.smtp.pool_max`) sends an
//!   email only after its `pending` record is durable, and a sender takes its next email
//!   only after the `sent` (or `failed`) record of this one is durable. So after a crash,
//!   an email can be sent a second time only if the crash fell between the SMTP server's
//!   acceptance and that record's acknowledgement (a few milliseconds, and at most one
//!   email per sender; SMTP has no idempotent submission, so no client can close this
//!   window entirely);
//! - queue full: the decision is already in the map and its `pending` write started; the
//!   job goes to an in-memory deferred list (FIFO, outcome `deferred`), and the mailer
//!   moves deferred jobs into the queue as room frees up, oldest first. Nothing is dropped;
//!   the cost of a deferred decision is its notification in memory;
//! - failures: `Unreachable` (no connection) is retried with backoff without using up an
//!   attempt; `Transient` (4xx, reset, timeout) is retried with exponential backoff and
//!   jitter up to `email.max_attempts` attempts, then recorded `failed`; `Permanent` (5xx)
//!   and refused emails (header injection, bad address) are recorded `failed` at once.
//!   While the log cannot take a record, the mailer waits (and retries the write) rather
//!   than send an email whose outcome it could not keep.
//!
//! The pieces: this file holds the outbox's types (the handle, the shared map, a slot, a
//! job, the retry policy); `handle.rs` starting, resuming, releasing and stopping it;
//! `sink.rs` the `DecisionSink` side (`submit` and the rebalance hooks); `mailer.rs`
//! the mailer and follower tasks (sending, retries, the records).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::log::{BoxFuture, DecisionLog, Entry, EntryState};
use super::render::Renderer;
use super::transport::Transport;
use super::EmailMetrics;
use crate::core::Notification;

mod handle;
mod mailer;
mod sink;

/// Backoff settings of the mailer.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay after the `n`-th consecutive failure (1-based): `initial · 2^(n−1)`,
    /// capped at `max`, then drawn uniformly from its upper half (jitter).
    pub fn delay(&self, n: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << (n.saturating_sub(1)).min(20))
            .min(self.max);
        let f: f64 = rand::rng().random_range(0.5..=1.0);
        base.mul_f64(f)
    }
}

/// Where a key stands in this process.
enum Slot {
    /// Sent or failed (here, or by anyone, as read from the log).
    Final(EntryState),
    /// Taken on by this process: queued, deferred or being sent.
    Claimed(Box<Notification>),
    /// Pending in the log but not taken on here (written before this start, or by another
    /// instance); taken on when the fold decides it again.
    Unclaimed(Box<Entry>),
}

impl Slot {
    /// Takes on an `Unclaimed` entry: the slot becomes `Claimed`, the entry is returned.
    fn claim(&mut self) -> Option<Entry> {
        let Slot::Unclaimed(e) = self else {
            return None;
        };
        let notification = Box::new(e.notification.clone());
        match std::mem::replace(self, Slot::Claimed(notification)) {
            Slot::Unclaimed(e) => Some(*e),
            _ => unreachable!("checked above"),
        }
    }
}

struct Job {
    key: String,
    entry: Entry,
    /// The durable write of the `pending` record, started by `submit`.
    pending_write: Option<BoxFuture<'static, anyhow::Result<()>>>,
}

struct Shared {
    map: Mutex<HashMap<String, Slot>>,
    /// Keys inside a transport call or writing their outcome (lock order: map, then this).
    in_flight: Mutex<HashSet<String>>,
    tx: mpsc::Sender<Job>,
    deferred: Mutex<VecDeque<Job>>,
    log: Arc<dyn DecisionLog>,
    metrics: EmailMetrics,
    renderer: Renderer,
    transport: Transport,
    policy: RetryPolicy,
    stop: watch::Receiver<bool>,
    accepting: AtomicBool,
}

/// The email outbox. Build it with [`Outbox::start`]; hand it to the fold as its
/// [`DecisionSink`](crate::sink::DecisionSink).
pub struct Outbox {
    shared: Arc<Shared>,
    /// The runtime the outbox runs on, for the blocking rebalance hooks.
    handle: tokio::runtime::Handle,
    stop_tx: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("transport", &self.shared.transport)
            .field("log", &self.shared.log.describe())
            .finish_non_exhaustive()
    }
}

/// Options that are not in the configuration file.
#[derive(Debug, Clone, Copy)]
pub struct OutboxOptions {
    /// How often the log is read for records written by other instances.
    pub follow_interval: Duration,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        Self {
            follow_interval: Duration::from_secs(1),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let d1 = p.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d9 = p.delay(9);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000));
            assert!(p.delay(200) <= Duration::from_millis(1000));
        }
    }
}
