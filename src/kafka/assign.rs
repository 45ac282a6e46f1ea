//! Assignment, revocation and offset commits of the group consumer (the [`Router`]'s
//! side that talks to the group and the workers about whole partitions).
//!
//! Owns how a partition starts and ends on this instance: [`Router::setup_assigned`] (on
//! the poll thread, outside the rebalance callback: reads the group's committed offsets
//! and the watermarks, picks the least loaded worker, hands it the partition's state),
//! [`Router::revoke`] (folds what was polled, commits, drops the state) and
//! [`Router::commit`] (at-least-once offsets, after the dead letters are acknowledged).
//!
//! Guarantees: see `consumer.rs` (the delivery guarantee of each mode).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::fold::WorkerMsg;
use super::router::{lock, read, write, Router};
use super::{PartitionProgress, TopicPartition, NO_OFFSET};

/// How long a revocation or a shutdown waits for a worker to answer.
pub(super) const WORKER_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

impl Router {
    /// Sets up the partitions the group assigned (on the poll thread).
    pub(super) fn setup_assigned<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
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

    /// Folds what was polled of `tps`, commits their folded offsets, drops their states.
    pub(super) fn revoke<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        tps: &[TopicPartition],
    ) {
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
    pub(super) fn commit<C: ConsumerContext>(
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
