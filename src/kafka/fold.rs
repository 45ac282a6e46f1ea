//! The fold workers: decode and fold the messages of the partitions routed to them.
//!
//! Owns the per-partition [`PartitionState`]s. Each worker is one OS thread with one
//! inbound channel; the poll thread routes every assigned partition to one worker and sends
//! it, in order, the partition's assignment, its batches of raw messages, and its
//! revocation. The snapshot refresher and the HTTP API send queries on the same channel,
//! answered between two batches (no lock around the state).
//!
//! Guarantees:
//! - messages of one partition are folded in offset order, each offset at most once per
//!   assignment (an offset below the next expected one is skipped), so a redelivery never
//!   counts twice;
//! - decoding runs here, in parallel across workers, not on the poll thread: a batch's
//!   messages not yet folded are decoded first, then folded in offset order with the
//!   state's cache hints ([`PartitionState::hint_ahead`]) a few events ahead;
//! - in at-least-once mode every decision is handed to the [`DecisionSink`] as soon as the
//!   fold makes it; in exactly-once mode decisions (and dead letters) of counted offsets
//!   wait in the partition's durable side (`durable.rs`) for the transaction that records
//!   them, and are handed over only once it has committed;
//! - a rejected message changes no state but the rejection count; it is copied to the
//!   dead-letter topic unless it lies below the offset the group had already committed when
//!   the partition was assigned (it was copied by whoever folded it first);
//! - counters (`keypulse_events_total`, …) count each message once per process and never a
//!   message below the group's committed offset at assignment, so a rebuild does not inflate
//!   them; `keypulse_messages_folded_total` counts every message folded, rebuilds included.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use crate::core::event::EventKind;
use crate::core::time::Micros;
use crate::core::{
    decode_bounded, Aggregate, Applied, CoreConfig, Event, Lookahead, Notification, PartitionState,
};
use crate::metrics::Metrics;
use crate::sink::DecisionSink;

use super::batch::{Batch, RawMessage};
use super::dlq::{dead_letter_record, DeadLetter, Origin};
use super::durable::Durable;
use super::tally::Tally;
pub use super::worker_msg::{
    ClockMode, PartitionAggregate, RevokedPartition, WorkerAggregate, WorkerMsg,
};
use super::{PartitionProgress, TopicPartition, NO_OFFSET};

/// What every worker shares.
#[derive(Clone)]
pub struct WorkerShared {
    /// The fold's configuration.
    pub cfg: Arc<CoreConfig>,
    /// Where decisions go.
    pub sink: Arc<dyn DecisionSink>,
    /// Where rejected messages are copied.
    pub dlq: Arc<DeadLetter>,
    /// Counters and the fold-latency histogram.
    pub metrics: Arc<Metrics>,
}

/// One partition held by a worker.
struct Held {
    /// Its state.
    state: PartitionState,
    /// Its shared progress.
    progress: Arc<PartitionProgress>,
    /// The next offset to fold ([`NO_OFFSET`]: whatever comes first).
    next: i64,
    /// Below this offset, fold without counting or copying to the dead-letter topic.
    count_from: i64,
    /// The newest event `ts` folded.
    newest_ts: Micros,
    /// The durable side (exactly-once mode).
    durable: Option<Box<Durable>>,
}

impl Held {
    /// Whether the message at `offset` was folded already in this assignment.
    fn folded(&self, offset: i64) -> bool {
        self.next != NO_OFFSET && offset < self.next
    }
}

/// A fold worker.
pub struct Worker {
    /// Its index (for logs).
    id: usize,
    /// What every worker shares.
    shared: WorkerShared,
    /// The partitions it holds.
    held: HashMap<TopicPartition, Held>,
    /// Decisions of the event being folded.
    out: Vec<Notification>,
    /// Tallies of the batch being folded.
    tally: Tally,
}

impl Worker {
    /// Starts worker `id` on its own thread.
    pub fn spawn(
        id: usize,
        shared: WorkerShared,
        rx: Receiver<WorkerMsg>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("fold-{id}"))
            .spawn(move || {
                let mut w = Worker {
                    id,
                    shared,
                    held: HashMap::new(),
                    out: Vec::new(),
                    tally: Tally::default(),
                };
                while let Ok(msg) = rx.recv() {
                    if !w.handle(msg) {
                        break;
                    }
                }
                tracing::debug!(worker = w.id, "fold worker stopped");
            })
    }

    /// Handles one message; `false` to stop.
    fn handle(&mut self, msg: WorkerMsg) -> bool {
        match msg {
            WorkerMsg::Assign {
                progress,
                count_from,
                state,
                next,
                durable,
            } => {
                let tp = progress.tp.clone();
                let newest_ts = state.watermark().unwrap_or(i64::MIN);
                progress.newest_ts.store(newest_ts, Ordering::Release);
                if next != NO_OFFSET {
                    progress.folded_next.store(next, Ordering::Release);
                    progress.sent_next.store(next, Ordering::Release);
                }
                self.held.insert(
                    tp,
                    Held {
                        state: *state,
                        progress,
                        next,
                        count_from,
                        newest_ts,
                        durable,
                    },
                );
            }
            WorkerMsg::Stage { only, reply } => {
                let sink = &*self.shared.sink;
                let staged = self
                    .held
                    .iter_mut()
                    .filter(|(tp, _)| only.as_ref().is_none_or(|o| o.contains(tp)))
                    .filter_map(|(tp, h)| {
                        let next = h.next;
                        let staged = h.durable.as_mut()?.stage(tp, &mut h.state, next, sink);
                        h.progress.dirty.store(0, Ordering::Release);
                        staged
                    })
                    .collect();
                let _ = reply.send(staged);
            }
            WorkerMsg::Settle { tps, committed } => {
                for tp in tps {
                    if let Some(d) = self.held.get_mut(&tp).and_then(|h| h.durable.as_mut()) {
                        d.settle(committed, &*self.shared.sink);
                    }
                }
            }
            WorkerMsg::Batch(b) => self.fold_batch(b),
            WorkerMsg::Revoke { tps, reply } => {
                let done = tps
                    .into_iter()
                    .filter_map(|tp| {
                        let h = self.held.remove(&tp)?;
                        let _ = self
                            .shared
                            .metrics
                            .state_partition_bytes
                            .remove_label_values(&[&*tp.topic, &tp.partition.to_string()]);
                        let customers = h.state.customer_ids().map(Into::into).collect();
                        Some((tp, h.next, customers))
                    })
                    .collect();
                let _ = reply.send(done);
            }
            WorkerMsg::Advance { now } => self.advance(now),
            WorkerMsg::Aggregate { as_of, reply } => {
                let mut out = WorkerAggregate {
                    aggregate: Aggregate {
                        as_of,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                for (tp, h) in &self.held {
                    out.aggregate
                        .merge(h.state.aggregate(as_of, &self.shared.cfg));
                    let (c, l) = h.state.sizes();
                    out.customers += c;
                    out.licenses += l;
                    let bytes = h.state.approx_bytes();
                    out.bytes += bytes;
                    self.shared
                        .metrics
                        .state_partition_bytes
                        .with_label_values(&[&*tp.topic, &tp.partition.to_string()])
                        .set(bytes as i64);
                }
                let _ = reply.send(out);
            }
            WorkerMsg::Partitions { as_of, reply } => {
                let out = self
                    .held
                    .iter()
                    .map(|(tp, h)| PartitionAggregate {
                        tp: tp.clone(),
                        next: h.next,
                        newest_ts: h.newest_ts,
                        aggregate: h.state.aggregate(as_of, &self.shared.cfg),
                    })
                    .collect();
                let _ = reply.send(out);
            }
            WorkerMsg::Customer { id, as_of, reply } => {
                let view = self
                    .held
                    .values()
                    .find_map(|h| h.state.customer_view(&id, as_of, &self.shared.cfg));
                let _ = reply.send(view);
            }
            WorkerMsg::Stop { reply } => {
                let done = self
                    .held
                    .iter()
                    .map(|(tp, h)| (tp.clone(), h.next))
                    .collect();
                let _ = reply.send(done);
                return false;
            }
        }
        true
    }

    fn fold_batch(&mut self, b: Batch) {
        let Some(h) = self.held.get_mut(&b.tp) else {
            // A batch of a partition revoked meanwhile: its state is gone, so is the batch.
            return;
        };
        let cfg = &*self.shared.cfg;
        let t = &mut self.tally;
        // Every message not folded yet is decoded first, so that each event's records can
        // be asked for a few events before its turn (`PartitionState::hint_ahead`); they
        // are folded in offset order, one by one, as before.
        let decode =
            |m: &RawMessage| decode_bounded(b.slice(m.payload).unwrap_or(&[]), cfg.max_event_bytes);
        let decoded: Vec<_> = b
            .msgs
            .iter()
            .map(|m| (!h.folded(m.offset)).then(|| decode(m)))
            .collect();
        let events: Vec<&Event<'_>> = decoded.iter().flatten().flatten().collect();
        let mut ahead = Lookahead::default();
        let mut next_event = 0;
        for (m, decoded) in b.msgs.iter().zip(&decoded) {
            // The position in `events` of this message's event, if it has one.
            let position = matches!(decoded, Some(Ok(_))).then(|| {
                next_event += 1;
                next_event - 1
            });
            if h.folded(m.offset) {
                continue;
            }
            let counted = m.offset >= h.count_from;
            t.folded += 1;
            let late;
            let decoded = match decoded {
                Some(d) => d,
                // Only if offsets went backwards within the batch: decoded here, unhinted.
                None => {
                    late = decode(m);
                    &late
                }
            };
            if let Some(k) = position {
                h.state.hint_ahead(&mut ahead, &events, k);
            }
            match decoded {
                Ok(ev) => match h.state.apply(ev, cfg, &mut self.out) {
                    Applied::Applied => {
                        h.newest_ts = h.newest_ts.max(ev.ts);
                        if counted {
                            t.events[ev.kind.type_index()] += 1;
                            if let EventKind::Validated {
                                result, country, ..
                            } = &ev.kind
                            {
                                t.results[result.index()] += 1;
                                if let Some(c) = country {
                                    t.country(c);
                                }
                            }
                        }
                    }
                    Applied::Duplicate => {
                        if counted {
                            t.duplicates += 1;
                        }
                    }
                    // Committed like any other message (SPEC §8.1); not a dead letter.
                    Applied::Excluded => {
                        if counted {
                            t.excluded += 1;
                        }
                    }
                },
                &Err(why) => {
                    h.state.record_rejected();
                    if counted {
                        t.rejected(why.reason);
                        super::events::MessageRejected {
                            tp: &b.tp,
                            offset: m.offset,
                            why,
                        }
                        .emit();
                        let from = Origin {
                            topic: &b.tp.topic,
                            partition: b.tp.partition,
                            offset: m.offset,
                        };
                        match h.durable.as_mut() {
                            Some(d) => d.dead_letter(dead_letter_record(
                                self.shared.dlq.topic(),
                                b.slice(m.key),
                                b.slice(m.payload),
                                why,
                                from,
                            )),
                            None => {
                                self.shared
                                    .dlq
                                    .send(b.slice(m.key), b.slice(m.payload), why, from)
                            }
                        }
                    }
                }
            }
            for n in self.out.drain(..) {
                if counted {
                    t.decided(n.kind);
                }
                match h.durable.as_mut() {
                    // Handed to the sink once its transaction has committed.
                    Some(d) if counted => d.decided(n),
                    _ => self.shared.sink.submit(&n),
                }
            }
            h.next = m.offset + 1;
        }
        // Release: the dead-letter copies above happen-before the offset is seen folded.
        h.progress.newest_ts.store(h.newest_ts, Ordering::Release);
        h.progress.folded_next.store(h.next, Ordering::Release);
        if h.durable.is_some() {
            h.progress
                .dirty
                .store(h.state.dirty_count() as i64, Ordering::Release);
        }
        let metrics = &self.shared.metrics;
        metrics
            .fold_latency_seconds
            .observe(b.polled_at.elapsed().as_secs_f64());
        self.tally.flush(metrics);
    }

    fn advance(&mut self, now: Micros) {
        let cfg = &*self.shared.cfg;
        for h in self.held.values_mut() {
            if !h.progress.caught_up.load(Ordering::Acquire) {
                continue; // a partition being rebuilt moves on once it has caught up
            }
            h.state.advance_to(now, cfg, &mut self.out);
            for n in self.out.drain(..) {
                self.tally.decided(n.kind);
                match h.durable.as_mut() {
                    Some(d) => d.decided(n),
                    None => self.shared.sink.submit(&n),
                }
            }
        }
        self.tally.flush(&self.shared.metrics);
    }
}
