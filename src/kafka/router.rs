//! The router of the group consumer: which fold worker holds each assigned partition, and
//! the batches the poll thread fills and hands over.
//!
//! Owns the [`Router`]: the assignment table (with each partition's progress), the batches
//! being filled (at most one per partition, their buffers from a [`BatchPool`]), and the
//! workers' channels. The poll thread copies each message once, into its partition's
//! batch, and hands a batch to the partition's worker when it is full, or when the client
//! has nothing more to give right now, or at the housekeeping (every 100 ms).
//!
//! Guarantees: messages of a partition reach its worker in the order they were polled,
//! and `sent_next` is stored before the batch is sent; a batch of a partition no longer
//! assigned is dropped (its next owner reads it again). Assignment, revocation and
//! offset commits are in `assign.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::message::{BorrowedMessage, Message};

use crate::metrics::Metrics;
use crate::sink::DecisionSink;

use super::batch::{Batch, BatchPool};
use super::dlq::DeadLetter;
use super::eos::Eos;
use super::fold::WorkerMsg;
use super::takeover::Plan;
use super::{PartitionProgress, TopicPartition};

/// The shared side of the consumer: assignment table, partial batches, worker channels.
pub struct Router {
    /// One channel per fold worker.
    pub(super) workers: Vec<SyncSender<WorkerMsg>>,
    /// The partitions assigned now, with their progress.
    pub(super) assignment: RwLock<BTreeMap<TopicPartition, Arc<PartitionProgress>>>,
    /// Batches being filled by the poll thread, at most one per partition.
    pub(super) batches: Mutex<Vec<Batch>>,
    /// Where the batches' buffers come from and go back to.
    pub(super) pool: Arc<BatchPool>,
    /// Partitions assigned by the group, not yet set up (done on the poll thread, outside
    /// the rebalance callback, since it asks the broker for offsets).
    pub(super) pending_assign: Mutex<Vec<TopicPartition>>,
    /// Set when `pending_assign` gets partitions: the poll thread looks at the list only then.
    pub(super) assign_pending: AtomicBool,
    /// Per partition, the offset below which this process already counted every message.
    pub(super) counted_through: Mutex<HashMap<TopicPartition, i64>>,
    /// Interned topic names.
    pub(super) topics: Mutex<HashMap<String, Arc<str>>>,
    /// Whether the consumer has received an assignment since it started.
    pub(super) joined: AtomicBool,
    /// When the assignment last changed (KIP-848 assigns incrementally, so readiness waits
    /// until it has settled).
    pub(super) last_change: Mutex<Instant>,
    /// How long the assignment must stay unchanged before the instance can be ready.
    pub(super) settle: Duration,
    /// Set once the workers are stopped: callbacks no longer talk to them.
    pub(super) stopping: AtomicBool,
    /// Counters and gauges.
    pub(super) metrics: Arc<Metrics>,
    /// Flushed before each commit.
    pub(super) dlq: Arc<DeadLetter>,
    /// Told of assignments (before rebuilds) and of the customers of revoked partitions.
    pub(super) sink: Arc<dyn DecisionSink>,
    /// Exactly-once mode (`kafka.exactly_once`): restores and transactional commits.
    pub(super) eos: Option<Arc<Eos>>,
    /// How each partition assigned in exactly-once mode starts, decided in the rebalance
    /// callback, taken by `setup_assigned`.
    pub(super) plans: Mutex<HashMap<TopicPartition, Plan>>,
}

impl Router {
    /// A router over the given worker channels.
    pub fn new(
        workers: Vec<SyncSender<WorkerMsg>>,
        metrics: Arc<Metrics>,
        dlq: Arc<DeadLetter>,
        settle: Duration,
        sink: Arc<dyn DecisionSink>,
        eos: Option<Arc<Eos>>,
    ) -> Self {
        Self {
            sink,
            eos,
            plans: Mutex::new(HashMap::new()),
            last_change: Mutex::new(Instant::now()),
            settle,
            workers,
            assignment: RwLock::new(BTreeMap::new()),
            batches: Mutex::new(Vec::new()),
            pool: Arc::default(),
            pending_assign: Mutex::new(Vec::new()),
            assign_pending: AtomicBool::new(false),
            counted_through: Mutex::new(HashMap::new()),
            topics: Mutex::new(HashMap::new()),
            joined: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            metrics,
            dlq,
        }
    }

    /// The worker channels (for queries).
    pub fn workers(&self) -> &[SyncSender<WorkerMsg>] {
        &self.workers
    }

    /// The progress of every assigned partition.
    pub fn partitions(&self) -> Vec<Arc<PartitionProgress>> {
        read(&self.assignment).values().cloned().collect()
    }

    /// Ready: the consumer has joined the group, its assignment has not changed for the
    /// settle time, and every assigned partition has caught up.
    pub fn ready(&self) -> bool {
        self.joined.load(Ordering::Acquire)
            && lock(&self.last_change).elapsed() >= self.settle
            && lock(&self.pending_assign).is_empty()
            && read(&self.assignment)
                .values()
                .all(|p| p.caught_up.load(Ordering::Acquire))
    }

    pub(super) fn intern(&self, topic: &str) -> Arc<str> {
        let mut t = lock(&self.topics);
        if let Some(a) = t.get(topic) {
            return a.clone();
        }
        let a: Arc<str> = topic.into();
        t.insert(topic.to_string(), a.clone());
        a
    }

    /// Adds a polled message to its partition's batch; hands the batch over when full.
    pub(super) fn route(&self, m: &BorrowedMessage<'_>) {
        let full = {
            let mut batches = lock(&self.batches);
            let topic = m.topic();
            let partition = m.partition();
            let i = match batches
                .iter()
                .position(|b| b.tp.partition == partition && &*b.tp.topic == topic)
            {
                Some(i) => i,
                None => {
                    let tp = TopicPartition {
                        topic: self.intern(topic),
                        partition,
                    };
                    batches.push(self.pool.batch(tp));
                    batches.len() - 1
                }
            };
            let b = &mut batches[i];
            b.push(m.offset(), m.key(), m.payload());
            b.is_full().then(|| batches.swap_remove(i))
        };
        if let Some(b) = full {
            self.hand_over(b);
        }
    }

    /// Hands every partial batch (of `only` these partitions, if given) to its worker.
    pub(super) fn flush_batches(&self, only: Option<&[TopicPartition]>) {
        let taken: Vec<Batch> = {
            let mut batches = lock(&self.batches);
            match only {
                None => std::mem::take(&mut *batches),
                Some(tps) => {
                    let (take, keep) = std::mem::take(&mut *batches)
                        .into_iter()
                        .partition(|b| tps.contains(&b.tp));
                    *batches = keep;
                    take
                }
            }
        };
        for b in taken {
            self.hand_over(b);
        }
    }

    pub(super) fn hand_over(&self, b: Batch) {
        let Some(progress) = read(&self.assignment).get(&b.tp).cloned() else {
            tracing::debug!(partition = %b.tp, messages = b.msgs.len(), "dropping messages of a partition no longer assigned");
            return;
        };
        if let Some(last) = b.msgs.last() {
            progress.sent_next.store(last.offset + 1, Ordering::Release);
        }
        if self.workers[progress.worker]
            .send(WorkerMsg::Batch(b))
            .is_err()
        {
            tracing::error!(partition = %progress.tp, "fold worker is gone");
        }
    }

    /// Sets the paused-partitions gauge (exactly-once mode).
    pub(super) fn count_paused(&self) {
        if let Some(eos) = &self.eos {
            let paused = read(&self.assignment)
                .values()
                .filter(|p| !p.path().folds())
                .count();
            eos.metrics.paused.set(paused as i64);
        }
    }

    pub(super) fn least_loaded_worker(&self) -> usize {
        let mut load = vec![0usize; self.workers.len()];
        for p in read(&self.assignment).values() {
            load[p.worker] += 1;
        }
        (0..load.len()).min_by_key(|i| load[*i]).unwrap_or(0)
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
pub(super) fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
pub(super) fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}
