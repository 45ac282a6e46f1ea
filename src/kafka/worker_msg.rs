//! The messages a fold worker answers, and the answers it gives.
//!
//! Owns [`WorkerMsg`] (what the poll thread, the commit cycle, the snapshot refresher and
//! the HTTP API send on a worker's one channel) and the answer types, plus [`ClockMode`].
//! The worker (`fold.rs`) handles them in the order they arrive, so a partition's
//! assignment, batches, stages and revocation are seen in the order they were sent.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use crate::core::time::Micros;
use crate::core::{Aggregate, CustomerView, PartitionState};

use super::batch::Batch;
use super::durable::{Durable, StagedPartition};
use super::{PartitionProgress, TopicPartition};

/// How `as_of` and the passing of time are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMode {
    /// `as_of` is the wall clock, and a ticker moves every caught-up partition to it.
    Wall,
    /// `as_of` is the newest event `ts` of the instance's partitions (as in replay).
    Event,
}

/// What one worker's partitions add up to at a given `as_of`.
#[derive(Debug, Default)]
pub struct WorkerAggregate {
    /// The merged aggregate of its partitions.
    pub aggregate: Aggregate,
    /// Customers held.
    pub customers: usize,
    /// Licenses held.
    pub licenses: usize,
    /// Approximate bytes of the states.
    pub bytes: usize,
}

/// One partition's aggregate at a given `as_of` (for the group's answers, SPEC §8.8).
#[derive(Debug)]
pub struct PartitionAggregate {
    /// Which partition.
    pub tp: TopicPartition,
    /// The next offset to fold ([`NO_OFFSET`] before any).
    pub next: i64,
    /// The newest event `ts` folded (`i64::MIN` before any).
    pub newest_ts: Micros,
    /// Its aggregate.
    pub aggregate: Aggregate,
}

/// A message to a fold worker.
pub enum WorkerMsg {
    /// A partition was assigned: hold `state` for it (empty for a rebuild).
    Assign {
        /// The partition's shared progress.
        progress: Arc<PartitionProgress>,
        /// Messages below this offset were already folded by someone (the group's committed
        /// offset, or this process before): fold them, but don't count or copy them again.
        count_from: i64,
        /// The state to start from (restored from the changelog), boxed: messages stay small.
        state: Box<PartitionState>,
        /// The next offset to fold ([`NO_OFFSET`]: whatever comes first).
        next: i64,
        /// The durable side, in exactly-once mode.
        durable: Option<Box<Durable>>,
    },
    /// Stage the next commit of the partitions `only` names (all when `None`).
    Stage {
        /// Which partitions.
        only: Option<Vec<TopicPartition>>,
        /// Where to answer, with what each partition adds to the commit.
        reply: Sender<Vec<StagedPartition>>,
    },
    /// The outcome of the staged commit of `tps`.
    Settle {
        /// Which partitions.
        tps: Vec<TopicPartition>,
        /// Committed, or rolled back.
        committed: bool,
    },
    /// Messages to fold.
    Batch(Batch),
    /// Partitions revoked: answer the offset after the last message folded for each, then
    /// drop their states.
    Revoke {
        /// Which partitions.
        tps: Vec<TopicPartition>,
        /// Where to answer: each dropped partition, its next offset to fold, and the
        /// customers its state held.
        reply: Sender<Vec<RevokedPartition>>,
    },
    /// Move every caught-up partition's clock to `now` (wall clock mode).
    Advance {
        /// The wall clock.
        now: Micros,
    },
    /// The aggregate of the worker's partitions at `as_of`.
    Aggregate {
        /// The instant (`None`: before any event).
        as_of: Option<Micros>,
        /// Where to answer.
        reply: Sender<WorkerAggregate>,
    },
    /// The aggregate of each of the worker's partitions at `as_of`, apart (SPEC §8.8).
    Partitions {
        /// The instant (`None`: before any event).
        as_of: Option<Micros>,
        /// Where to answer.
        reply: Sender<Vec<PartitionAggregate>>,
    },
    /// The view of one customer, if one of the worker's partitions holds it.
    Customer {
        /// The customer id.
        id: Arc<str>,
        /// The instant.
        as_of: Micros,
        /// Where to answer.
        reply: Sender<Option<CustomerView>>,
    },
    /// Stop: answer the folded offsets of every partition, then exit.
    Stop {
        /// Where to answer.
        reply: Sender<Vec<(TopicPartition, i64)>>,
    },
}

/// A dropped partition: its next offset to fold, and the customers its state held.
pub type RevokedPartition = (TopicPartition, i64, Vec<Box<str>>);
