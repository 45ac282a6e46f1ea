//! The Kafka adapter: the group consumer, the fold workers and the dead-letter producer.
//!
//! Owns everything that talks to Kafka. Layout:
//! - [`client`]: the one librdkafka configuration builder of every client;
//! - [`consumer`]: the group consumer and its callbacks; [`poll`]: its poll thread;
//!   [`router`]: which worker holds each partition, and the batches handed to them;
//!   [`assign`]: the group's assignment and revocation, offsets;
//! - [`batch`]: the batches the poll thread hands to the fold workers, and their pool;
//! - [`fold`]: the fold workers, each owning the [`PartitionState`](crate::core::PartitionState)
//!   of the partitions routed to it, where messages are decoded and folded ([`tally`]:
//!   their per-batch counter updates; [`worker_msg`]: what they are sent and answer);
//! - [`dlq`]: the dead-letter producer;
//! - [`changelog`], [`txn`], [`restore`], [`instance`]: durable state: the compacted
//!   changelog topic, its keys and chunks, the transactional committer, the restore
//!   reader, and the instance and transactional ids;
//! - [`durable`], [`eos`], [`takeover`], [`eos_metrics`]: how the service uses them in
//!   exactly-once mode: a partition's side of each transaction, the commit cycle, the
//!   takeover of assigned partitions (restore, rebuild or refuse), and their metrics.
//!
//! Delivery guarantee (see docs/SERVICE.md): in exactly-once mode (`kafka.exactly_once`,
//! the default) **state, offsets, dead letters and decision records are committed together
//! in one transaction**, and an assigned partition is restored from its changelog. In
//! at-least-once mode every assigned partition is rebuilt from its beginning; a worker
//! folds each offset of a partition at most once (it skips any offset below the next one
//! it expects, so a redelivery never double-counts); offsets are committed only for
//! messages already folded; decisions made while rebuilding are submitted again to the
//! [`DecisionSink`](crate::sink::DecisionSink), which de-duplicates them by idempotency key.

pub mod assign;
pub mod batch;
pub mod changelog;
pub mod client;
pub mod commit;
pub mod consumer;
pub mod dlq;
pub mod durable;
pub mod eos;
pub mod eos_metrics;
pub mod events;
pub mod fold;
pub mod instance;
pub mod poll;
pub mod restore;
pub mod router;
pub mod takeover;
pub mod tally;
pub mod txn;
pub mod worker_msg;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::Arc;

use rdkafka::config::RDKafkaLogLevel;

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition number.
    pub partition: i32,
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// "No offset yet" in the atomics below.
pub const NO_OFFSET: i64 = -1;

/// Progress of one assigned partition, shared by the poll thread (writes what it hands
/// over and the targets), its fold worker (writes what it folded) and the snapshot
/// refresher (reads all of it).
#[derive(Debug)]
pub struct PartitionProgress {
    /// Which partition.
    pub tp: TopicPartition,
    /// Index of the fold worker that owns the partition's state.
    pub worker: usize,
    /// The offset after the last message handed to the worker ([`NO_OFFSET`] before any).
    pub sent_next: AtomicI64,
    /// The offset after the last message folded ([`NO_OFFSET`] before any).
    pub folded_next: AtomicI64,
    /// The partition's low watermark when it was assigned ([`NO_OFFSET`] until known).
    pub low: AtomicI64,
    /// The partition's high watermark when it was assigned: caught up once folded past
    /// it ([`NO_OFFSET`] until known).
    pub target: AtomicI64,
    /// The latest high watermark the client has seen (for the lag gauge).
    pub high: AtomicI64,
    /// The newest event `ts` folded into the partition's state (`i64::MIN` before any).
    pub newest_ts: AtomicI64,
    /// Whether the partition has caught up with `target` since its assignment.
    pub caught_up: AtomicBool,
    /// How it was taken over: an index into [`takeover::Path::ALL`].
    path: AtomicU8,
    /// Customers changed since the last staged commit (exactly-once mode): a commit is
    /// started early when the partitions' total passes `eos::EARLY_COMMIT_CUSTOMERS`, so
    /// no transaction grows without bound (a rebuild touches every customer).
    pub dirty: AtomicI64,
}

impl PartitionProgress {
    /// Fresh progress for a partition just assigned.
    pub fn new(tp: TopicPartition, worker: usize) -> Self {
        Self {
            tp,
            worker,
            sent_next: AtomicI64::new(NO_OFFSET),
            folded_next: AtomicI64::new(NO_OFFSET),
            low: AtomicI64::new(NO_OFFSET),
            target: AtomicI64::new(NO_OFFSET),
            high: AtomicI64::new(NO_OFFSET),
            newest_ts: AtomicI64::new(i64::MIN),
            caught_up: AtomicBool::new(false),
            path: AtomicU8::new(1),
            dirty: AtomicI64::new(0),
        }
    }

    /// How the partition was taken over.
    pub fn path(&self) -> takeover::Path {
        let i = self.path.load(Ordering::Acquire) as usize;
        takeover::Path::ALL
            .get(i)
            .copied()
            .unwrap_or(takeover::Path::Rebuild)
    }

    /// Records how the partition was taken over.
    pub fn set_path(&self, path: takeover::Path) {
        let i = takeover::Path::ALL
            .iter()
            .position(|p| *p == path)
            .unwrap_or(1);
        self.path.store(i as u8, Ordering::Release);
    }

    /// The next offset to fold, as far as is known: after the last folded message, or the
    /// low watermark when nothing was folded yet.
    pub fn position(&self) -> i64 {
        let f = self.folded_next.load(Ordering::Acquire);
        let low = self.low.load(Ordering::Acquire);
        f.max(low)
    }

    /// Messages between the position and the latest high watermark seen.
    pub fn lag(&self) -> Option<i64> {
        let high = self
            .high
            .load(Ordering::Acquire)
            .max(self.target.load(Ordering::Acquire));
        let pos = self.position();
        (high >= 0).then(|| (high - pos.max(0)).max(0))
    }
}

/// Forwards a librdkafka log line to `tracing` (its own target, levels mapped).
pub(crate) fn forward_librdkafka_log(client: &str, level: RDKafkaLogLevel, fac: &str, msg: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", client, facility = fac, "{msg}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", client, facility = fac, "{msg}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", client, facility = fac, "{msg}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", client, facility = fac, "{msg}")
        }
    }
}
