//! The group consumer: one poll thread, the group's assignment and revocation, offsets.
//!
//! Owns the librdkafka consumer and the [`Router`] that hands each assigned partition to a
//! fold worker. The poll thread only copies messages into per-partition batches and sends
//! them to the partition's worker (decoding and folding happen there, see `fold.rs`).
//!
//! Delivery guarantee, exactly-once mode (`kafka.exactly_once`): each newly assigned
//! partition is taken over in the rebalance callback (`takeover.rs`: restored from its
//! changelog, rebuilt, or refused and paused) and assigned at the offset its state goes
//! with; every `kafka.commit_interval_ms`, on revocation and at shutdown the folded state,
//! dead letters, decisions and offsets are committed in one transaction (`eos.rs`).
//! At-least-once mode (**at least once consumption, every event counted exactly once**):
//! - On assignment a partition is read from its beginning (`Offset::Beginning`), whatever
//!   the group committed, and its state is rebuilt from scratch. Its high watermark at
//!   that moment is its catch-up target: `/readyz` answers 200
//!   only when every assigned partition has folded up to its target.
//! - Offsets are committed only for messages already folded (and, for rejected ones, whose
//!   dead-letter copy was acknowledged: the dead-letter producer is flushed first), every
//!   `kafka.commit_interval_ms` asynchronously, and synchronously on revocation and shutdown.
//! - On revocation, the partition's pending messages are folded, its folded offsets are
//!   committed, and only then is its state dropped.
//! - The group's committed offset at assignment tells which messages someone already
//!   folded: those are folded again (to rebuild the state) but not counted in the
//!   `*_total` counters nor copied to the dead-letter topic again.
//! - `group.protocol=consumer` (KIP-848) is the default; `kafka.properties` may override
//!   any librdkafka property, this one included.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::metrics::Metrics;

use super::batch::{Batch, BatchPool};
use super::client::ClientSettings;
use super::dlq::DeadLetter;
use super::eos::Eos;
use super::fold::WorkerMsg;
use super::takeover::Plan;
use super::{PartitionProgress, TopicPartition, NO_OFFSET};
use crate::sink::DecisionSink;

/// The poll loop looks at the clock, the commit and the housekeeping once every this many
/// messages (and whenever the client has nothing to give), not after each message.
const CHECK_EVERY: u32 = 64;
/// How long a revocation or a shutdown waits for a worker to answer.
const WORKER_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared side of the consumer: assignment table, partial batches, worker channels.
pub struct Router {
    /// One channel per fold worker.
    workers: Vec<SyncSender<WorkerMsg>>,
    /// The partitions assigned now, with their progress.
    assignment: RwLock<BTreeMap<TopicPartition, Arc<PartitionProgress>>>,
    /// Batches being filled by the poll thread, at most one per partition.
    batches: Mutex<Vec<Batch>>,
    /// Where the batches' buffers come from and go back to.
    pool: Arc<BatchPool>,
    /// Partitions assigned by the group, not yet set up (done on the poll thread, outside
    /// the rebalance callback, since it asks the broker for offsets).
    pending_assign: Mutex<Vec<TopicPartition>>,
    /// Set when `pending_assign` gets partitions: the poll thread looks at the list only then.
    assign_pending: AtomicBool,
    /// Per partition, the offset below which this process already counted every message.
    counted_through: Mutex<HashMap<TopicPartition, i64>>,
    /// Interned topic names.
    topics: Mutex<HashMap<String, Arc<str>>>,
    /// Whether the consumer has received an assignment since it started.
    joined: AtomicBool,
    /// When the assignment last changed (KIP-848 assigns incrementally, so readiness waits
    /// until it has settled).
    last_change: Mutex<Instant>,
    /// How long the assignment must stay unchanged before the instance can be ready.
    settle: Duration,
    /// Set once the workers are stopped: callbacks no longer talk to them.
    stopping: AtomicBool,
    /// Counters and gauges.
    metrics: Arc<Metrics>,
    /// Flushed before each commit.
    dlq: Arc<DeadLetter>,
    /// Told of assignments (before rebuilds) and of the customers of revoked partitions.
    sink: Arc<dyn DecisionSink>,
    /// Exactly-once mode (`kafka.exactly_once`): restores and transactional commits.
    eos: Option<Arc<Eos>>,
    /// How each partition assigned in exactly-once mode starts, decided in the rebalance
    /// callback, taken by `setup_assigned`.
    plans: Mutex<HashMap<TopicPartition, Plan>>,
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

    fn intern(&self, topic: &str) -> Arc<str> {
        let mut t = lock(&self.topics);
        if let Some(a) = t.get(topic) {
            return a.clone();
        }
        let a: Arc<str> = topic.into();
        t.insert(topic.to_string(), a.clone());
        a
    }

    /// Adds a polled message to its partition's batch; hands the batch over when full.
    fn route(&self, m: &BorrowedMessage<'_>) {
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
    fn flush_batches(&self, only: Option<&[TopicPartition]>) {
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

    fn hand_over(&self, b: Batch) {
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

    /// Sets up the partitions the group assigned (on the poll thread).
    fn setup_assigned<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        if !self.assign_pending.swap(false, Ordering::AcqRel) {
            return;
        }
        // Left in `pending_assign` until set up, so that readiness never sees them in
        // neither table.
        let tps = lock(&self.pending_assign).clone();
        if tps.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for tp in &tps {
            tpl.add_partition(&tp.topic, tp.partition);
        }
        let committed: HashMap<(String, i32), Offset> = if self.eos.is_some() {
            HashMap::new() // the plans, made in the rebalance callback, know their offsets
        } else {
            // Learn what other instances decided before these partitions' rebuilds re-decide it.
            self.sink.partitions_assigned();
            match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
                Ok(list) => list.to_topic_map(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the group's committed offsets; every message of the new partitions counts as new");
                    HashMap::new()
                }
            }
        };
        for tp in &tps {
            if let Some(old) = write(&self.assignment).remove(tp) {
                // Assigned again without a revocation in between: start over.
                let (reply, rx) = mpsc::channel();
                let _ = self.workers[old.worker].send(WorkerMsg::Revoke {
                    tps: vec![tp.clone()],
                    reply,
                });
                let _ = rx.recv_timeout(WORKER_REPLY_TIMEOUT);
            }
            let committed = match committed.get(&(tp.topic.to_string(), tp.partition)) {
                Some(Offset::Offset(n)) => *n,
                _ => 0,
            };
            let counted = lock(&self.counted_through).get(tp).copied().unwrap_or(0);
            let worker = self.least_loaded_worker();
            let progress = Arc::new(PartitionProgress::new(tp.clone(), worker));
            let plan = lock(&self.plans).remove(tp);
            let marks = match plan.as_ref().and_then(|p| p.watermarks) {
                // read by the takeover already, in parallel
                Some(m) => Ok(m),
                None => consumer.fetch_watermarks(&tp.topic, tp.partition, Duration::from_secs(5)),
            };
            match marks {
                Ok((low, high)) => {
                    progress.low.store(low, Ordering::Release);
                    progress.target.store(high, Ordering::Release);
                    progress.high.store(high, Ordering::Release);
                }
                Err(e) => {
                    tracing::warn!(partition = %tp, error = %e, "cannot read the partition's watermarks yet; will retry")
                }
            }
            write(&self.assignment).insert(tp.clone(), progress.clone());
            let target = progress.target.load(Ordering::Acquire);
            let msg = match plan {
                Some(plan) => {
                    progress.set_path(plan.path);
                    WorkerMsg::Assign {
                        progress,
                        count_from: plan.count_from,
                        state: plan.state,
                        next: plan.next,
                        durable: plan.durable,
                    }
                }
                None => WorkerMsg::Assign {
                    progress,
                    count_from: committed.max(counted),
                    state: Box::default(),
                    next: NO_OFFSET,
                    durable: None,
                },
            };
            let _ = self.workers[worker].send(msg);
            super::events::PartitionAssigned {
                tp,
                worker,
                committed,
                target,
            }
            .emit();
        }
        lock(&self.pending_assign).retain(|tp| !tps.contains(tp));
        self.metrics
            .assigned_partitions
            .set(read(&self.assignment).len() as i64);
        self.count_paused();
    }

    /// Sets the paused-partitions gauge (exactly-once mode).
    fn count_paused(&self) {
        if let Some(eos) = &self.eos {
            let paused = read(&self.assignment)
                .values()
                .filter(|p| !p.path().folds())
                .count();
            eos.metrics.paused.set(paused as i64);
        }
    }

    fn least_loaded_worker(&self) -> usize {
        let mut load = vec![0usize; self.workers.len()];
        for p in read(&self.assignment).values() {
            load[p.worker] += 1;
        }
        (0..load.len()).min_by_key(|i| load[*i]).unwrap_or(0)
    }

    /// Folds what was polled of `tps`, commits their folded offsets, drops their states.
    fn revoke<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, tps: &[TopicPartition]) {
        lock(&self.pending_assign).retain(|tp| !tps.contains(tp));
        lock(&self.plans).retain(|tp, _| !tps.contains(tp));
        if self.stopping.load(Ordering::Acquire) {
            write(&self.assignment).retain(|tp, _| !tps.contains(tp));
            return;
        }
        self.flush_batches(Some(tps));
        let lost = consumer.assignment_lost();
        if let Some(eos) = &self.eos {
            // Commit what was folded of them before their states go (not when lost: the
            // group epoch is stale, the transaction would abort; the next owner restores
            // the state last committed).
            if lost {
                eos.settle(&self.workers, true, &self.metrics);
            } else if !eos.commit_now(
                consumer,
                &self.workers,
                Some(tps),
                &self.metrics,
                &*self.sink,
            ) {
                tracing::warn!(partitions = tps.len(), "the last commit of revoked partitions did not go through; their next owner restores the state last committed");
            }
        }
        let mut by_worker: BTreeMap<usize, Vec<TopicPartition>> = BTreeMap::new();
        for tp in tps {
            if let Some(p) = read(&self.assignment).get(tp) {
                by_worker.entry(p.worker).or_default().push(tp.clone());
            }
        }
        let mut folded = Vec::new();
        let mut released: std::collections::HashSet<Box<str>> = Default::default();
        for (w, tps) in by_worker {
            let (reply, rx) = mpsc::channel();
            if self.workers[w]
                .send(WorkerMsg::Revoke { tps, reply })
                .is_ok()
            {
                match rx.recv_timeout(WORKER_REPLY_TIMEOUT) {
                    Ok(done) => {
                        for (tp, next, customers) in done {
                            folded.push((tp, next));
                            released.extend(customers);
                        }
                    }
                    Err(_) => {
                        tracing::error!(worker = w, "fold worker did not answer the revocation")
                    }
                }
            }
        }
        write(&self.assignment).retain(|tp, _| !tps.contains(tp));
        self.metrics
            .assigned_partitions
            .set(read(&self.assignment).len() as i64);
        self.count_paused();
        if !lost && self.eos.is_none() {
            self.commit(consumer, &folded, CommitMode::Sync, Duration::from_secs(5));
        }
        // Their pending emails now belong to the partitions' next owner.
        self.sink.customers_released(&released);
        let mut counted = lock(&self.counted_through);
        for (tp, next) in &folded {
            let c = counted.entry(tp.clone()).or_insert(0);
            *c = (*c).max(*next);
        }
        super::events::PartitionsRevoked { tps, lost }.emit();
    }

    /// Commits `offsets` (the offset after the last folded message of each partition),
    /// after the dead-letter copies are acknowledged (waiting at most `flush_timeout`;
    /// else the commit is postponed). Returns whether it was sent.
    fn commit<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        offsets: &[(TopicPartition, i64)],
        mode: CommitMode,
        flush_timeout: Duration,
    ) -> bool {
        let mut tpl = TopicPartitionList::new();
        for (tp, next) in offsets {
            if *next >= 0 {
                let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*next));
            }
        }
        if tpl.count() == 0 {
            return true;
        }
        if let Err(e) = self.dlq.flush(flush_timeout) {
            tracing::warn!(error = %e, "dead-letter copies not acknowledged yet; commit postponed");
            return false;
        }
        // Async: the outcome comes back through `commit_callback` (see `commit.rs`); Sync:
        // it is known here.
        let sent = match mode {
            CommitMode::Async => super::commit::commit_async(consumer, &tpl),
            CommitMode::Sync => consumer.commit(&tpl, mode),
        };
        match sent {
            Ok(()) => {
                if matches!(mode, CommitMode::Sync) {
                    super::events::OffsetsCommitted {
                        partitions: tpl.count(),
                    }
                    .emit(&self.metrics);
                }
                true
            }
            Err(e) => {
                super::events::OffsetCommitFailed { error: &e }.emit(&self.metrics);
                false
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// The consumer's callbacks.
pub struct Ctx {
    /// The shared side.
    pub router: Arc<Router>,
    /// Last time a client error was logged (errors repeat while a broker is down).
    last_error_log: Mutex<Option<Instant>>,
}

impl Ctx {
    /// Callbacks over `router`.
    pub fn new(router: Arc<Router>) -> Self {
        Self {
            router,
            last_error_log: Mutex::new(None),
        }
    }
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        super::forward_librdkafka_log("consumer", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let mut last = lock(&self.last_error_log);
        if last.map_or(true, |t| t.elapsed() > Duration::from_secs(5)) {
            *last = Some(Instant::now());
            tracing::warn!(error = %error, reason, "kafka client error (repeats within 5 s not logged)");
        }
    }
}

fn tps_of(tpl: &TopicPartitionList, router: &Router) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition {
            topic: router.intern(e.topic()),
            partition: e.partition(),
        })
        .collect()
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        *lock(&self.router.last_change) = Instant::now();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut pause = TopicPartitionList::new();
                match &self.router.eos {
                    // Restore (or rebuild, or refuse) each one, then start it where its
                    // plan says.
                    Some(eos) => {
                        let tps = tps_of(tpl, &self.router);
                        let counted = lock(&self.router.counted_through).clone();
                        let plans = eos.takeover.plan(
                            consumer,
                            &tps,
                            &counted,
                            &*self.router.sink,
                            &eos.metrics,
                        );
                        let mut table = lock(&self.router.plans);
                        for p in plans {
                            let _ = tpl.set_partition_offset(&p.tp.topic, p.tp.partition, p.start);
                            if !p.path.folds() {
                                pause.add_partition(&p.tp.topic, p.tp.partition);
                            }
                            table.insert(p.tp.clone(), p);
                        }
                    }
                    // Rebuild from the beginning: start every new partition at its first offset.
                    None => {
                        let _ = tpl.set_all_offsets(Offset::Beginning);
                    }
                }
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                match r {
                    Ok(()) => {
                        if pause.count() > 0 {
                            if let Err(e) = consumer.pause(&pause) {
                                tracing::error!(error = %e, "cannot pause the partitions left unrestored");
                            }
                        }
                        let tps = tps_of(tpl, &self.router);
                        lock(&self.router.pending_assign).extend(tps);
                        self.router.assign_pending.store(true, Ordering::Release);
                        // The settle time counts from the end of a (possibly long) restore.
                        *lock(&self.router.last_change) = Instant::now();
                        self.router.joined.store(true, Ordering::Release);
                    }
                    Err(e) => tracing::error!(error = %e, "cannot take the assigned partitions"),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let tps = tps_of(tpl, &self.router);
                self.router.revoke(consumer, &tps);
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "cannot release the revoked partitions");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                if !cooperative {
                    let _ = consumer.unassign();
                }
            }
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) => super::events::OffsetsCommitted {
                partitions: offsets.count(),
            }
            .emit(&self.router.metrics),
            // Nothing to commit (the offsets were committed already): not a commit.
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {
                tracing::debug!("offset commit: nothing new to commit")
            }
            Err(e) => super::events::OffsetCommitFailed { error: &e }.emit(&self.router.metrics),
        }
    }
}

/// The high watermark the client last saw in a fetch response (no broker round trip).
fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tp: &TopicPartition,
) -> Option<i64> {
    let topic = CString::new(tp.topic.as_bytes()).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for the consumer's lifetime; the topic is a
    // NUL-terminated string that outlives the call; the out-pointers are valid.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            tp.partition,
            &mut low,
            &mut high,
        )
    };
    (err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// Settings of the poll loop.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// How often folded offsets are committed.
    pub commit_interval: Duration,
    /// Whether the consumer uses keypulse's default `group.protocol=consumer` (then a
    /// warning suggests `classic` when no partition comes within 30 s).
    pub default_protocol: bool,
}

/// The poll loop: runs until `stop` is set, then hands over what was polled, stops the
/// workers, commits what they folded, and closes the consumer (leaving the group).
pub fn poll_loop(
    consumer: BaseConsumer<Ctx>,
    stop: Arc<AtomicBool>,
    settings: &PollSettings,
) -> PollEnd {
    let router = consumer.context().router.clone();
    let mut last_housekeeping = Instant::now();
    let mut last_lag = Instant::now();
    let mut last_commit = Instant::now();
    let mut committed: HashMap<TopicPartition, i64> = HashMap::new();
    let mut last_poll_error: Option<Instant> = None;
    let started = Instant::now();
    let mut warned_no_assignment = false;
    // Messages routed since the last flush, and since the last look at the clock.
    let mut unflushed = false;
    let mut since_check = 0u32;
    while !stop.load(Ordering::Acquire) {
        let timeout = if unflushed {
            Duration::ZERO
        } else {
            Duration::from_millis(100)
        };
        match consumer.poll(timeout) {
            Some(Ok(m)) => {
                router.setup_assigned(&consumer);
                router.route(&m);
                unflushed = true;
                since_check += 1;
                if since_check < CHECK_EVERY {
                    continue;
                }
            }
            Some(Err(e)) => {
                if let Some((code, reason)) = consumer.client().fatal_error() {
                    tracing::error!(error = %reason, code = ?code, "fatal Kafka consumer error: stopping");
                    router.stopping.store(true, Ordering::Release);
                    drop(consumer);
                    return PollEnd::Fatal(format!("fatal Kafka consumer error: {reason}"));
                }
                if last_poll_error.map_or(true, |t| t.elapsed() > Duration::from_secs(5)) {
                    last_poll_error = Some(Instant::now());
                    tracing::warn!(error = %e, "consumer error (repeats within 5 s not logged)");
                }
            }
            None => {
                router.flush_batches(None);
                unflushed = false;
            }
        }
        since_check = 0;
        router.setup_assigned(&consumer);
        let housekeeping = last_housekeeping.elapsed() >= Duration::from_millis(100);
        if housekeeping {
            last_housekeeping = Instant::now();
            router.flush_batches(None);
            unflushed = false;
            if !warned_no_assignment
                && settings.default_protocol
                && started.elapsed() > Duration::from_secs(30)
                && !router.joined.load(Ordering::Acquire)
            {
                warned_no_assignment = true;
                tracing::warn!(
                    "no partition assigned after 30 s with group.protocol=consumer (KIP-848); \
                     brokers older than Apache Kafka 4.0 need kafka.properties.\"group.protocol\" = \"classic\""
                );
            }
            check_caught_up(&consumer, &router);
            if last_lag.elapsed() >= Duration::from_secs(1) {
                last_lag = Instant::now();
                update_lag(&consumer, &router);
            }
        }
        if let Some(eos) = &router.eos {
            eos.settle(&router.workers, false, &router.metrics);
        }
        // Checked with the housekeeping (every 100 ms), not per message.
        let early = housekeeping
            && router.eos.is_some()
            && router
                .partitions()
                .iter()
                .map(|p| p.dirty.load(Ordering::Acquire))
                .sum::<i64>()
                >= super::eos::EARLY_COMMIT_CUSTOMERS;
        if early || last_commit.elapsed() >= settings.commit_interval {
            last_commit = Instant::now();
            if let Some(eos) = &router.eos {
                eos.start(&consumer, &router.workers, None, &*router.sink);
                continue;
            }
            let due: Vec<(TopicPartition, i64)> = router
                .partitions()
                .iter()
                .map(|p| (p.tp.clone(), p.folded_next.load(Ordering::Acquire)))
                .filter(|(tp, next)| *next > committed.get(tp).copied().unwrap_or(NO_OFFSET))
                .collect();
            if router.commit(&consumer, &due, CommitMode::Async, Duration::from_secs(2)) {
                committed.extend(due);
            }
        }
    }

    // Shutdown: fold what was polled, stop the workers, commit, leave the group.
    tracing::info!("stopping the consumer: folding what was polled, then committing");
    router.flush_batches(None);
    if let Some(eos) = &router.eos {
        if eos.commit_now(
            &consumer,
            &router.workers,
            None,
            &router.metrics,
            &*router.sink,
        ) {
            tracing::info!("folded state, dead letters, decisions and offsets committed");
        } else {
            tracing::warn!("the last commit did not go through; the next owner restores the state last committed");
        }
    }
    let mut folded = Vec::new();
    for (i, w) in router.workers.iter().enumerate() {
        let (reply, rx) = mpsc::channel();
        if w.send(WorkerMsg::Stop { reply }).is_ok() {
            match rx.recv_timeout(WORKER_REPLY_TIMEOUT) {
                Ok(done) => folded.extend(done),
                Err(_) => tracing::error!(worker = i, "fold worker did not stop in time"),
            }
        }
    }
    router.stopping.store(true, Ordering::Release);
    if router.eos.is_none()
        && router.commit(&consumer, &folded, CommitMode::Sync, Duration::from_secs(3))
    {
        tracing::info!(partitions = folded.len(), "folded offsets committed");
    }
    drop(consumer); // closes: leaves the group (the revocation callback only unassigns now)
    tracing::info!("consumer closed");
    PollEnd::Stopped
}

/// Why the poll loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollEnd {
    /// `stop` was set: everything folded was committed, the workers are stopped.
    Stopped,
    /// The consumer hit a fatal error; the service cannot go on.
    Fatal(String),
}

fn check_caught_up<C: ConsumerContext>(consumer: &BaseConsumer<C>, router: &Router) {
    let pending: Vec<Arc<PartitionProgress>> = router
        .partitions()
        .into_iter()
        .filter(|p| !p.caught_up.load(Ordering::Acquire))
        .collect();
    if pending.is_empty() {
        return;
    }
    let positions: HashMap<(String, i32), Offset> = consumer
        .position()
        .map(|l| l.to_topic_map())
        .unwrap_or_default();
    for p in pending {
        if !p.path().folds() {
            continue; // paused: refused or failed, never caught up
        }
        let mut target = p.target.load(Ordering::Acquire);
        if target < 0 {
            if let Ok((low, high)) =
                consumer.fetch_watermarks(&p.tp.topic, p.tp.partition, Duration::from_secs(1))
            {
                p.low.store(low, Ordering::Release);
                p.high.store(high, Ordering::Release);
                p.target.store(high, Ordering::Release);
                target = high;
            } else {
                continue;
            }
        }
        let sent = p.sent_next.load(Ordering::Acquire);
        let folded = p.folded_next.load(Ordering::Acquire);
        if sent != folded {
            continue; // the worker has messages to fold
        }
        let polled = match positions.get(&(p.tp.topic.to_string(), p.tp.partition)) {
            Some(Offset::Offset(n)) => *n,
            _ => NO_OFFSET,
        };
        let at = folded.max(polled).max(p.low.load(Ordering::Acquire));
        if at >= target {
            p.caught_up.store(true, Ordering::Release);
            super::events::PartitionCaughtUp {
                tp: &p.tp,
                offset: at,
                target,
            }
            .emit();
        }
    }
}

fn update_lag<C: ConsumerContext>(consumer: &BaseConsumer<C>, router: &Router) {
    let mut lags = Vec::new();
    for p in router.partitions() {
        if let Some(high) = cached_high_watermark(consumer, &p.tp) {
            p.high.store(high, Ordering::Release);
        }
        if let Some(lag) = p.lag() {
            lags.push((p.tp.topic.to_string(), p.tp.partition, lag));
        }
    }
    router.metrics.set_consumer_lag(&lags);
}

/// Creates the consumer and subscribes it, after checking that the brokers answer.
///
/// Fails after `timeout` with an error naming `kafka.brokers` when no broker answers.
pub fn connect(
    k: &KafkaConfig,
    router: Arc<Router>,
    timeout: Duration,
) -> anyhow::Result<BaseConsumer<Ctx>> {
    let cfg = ClientSettings::from_config(k).group_consumer(&k.group_id);
    let consumer: BaseConsumer<Ctx> = cfg.create_with_context(Ctx::new(router)).map_err(|e| {
        anyhow::anyhow!("cannot create the Kafka consumer (check kafka.properties): {e}")
    })?;
    let metadata = consumer.fetch_metadata(None, timeout).map_err(|e| {
        anyhow::anyhow!(
            "no Kafka broker answered at kafka.brokers = `{}` within {} s: {e}",
            k.brokers,
            timeout.as_secs()
        )
    })?;
    for t in &k.topics {
        let found = metadata
            .topics()
            .iter()
            .any(|m| m.name() == t && m.error().is_none());
        if !found {
            tracing::warn!(topic = %t, "topic not found (yet); waiting for it to be created");
        }
    }
    let topics: Vec<&str> = k.topics.iter().map(|s| s.as_str()).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| anyhow::anyhow!("cannot subscribe to kafka.topics {:?}: {e}", k.topics))?;
    Ok(consumer)
}
