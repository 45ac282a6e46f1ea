//! The durable side of one partition held by a fold worker, in exactly-once mode: what the
//! next commit's transaction must hold for it, and what happens once that transaction is
//! settled.
//!
//! Owns, per partition: the changelog writer (`changelog/writer.rs`), the dead letters and
//! the decisions made since the last commit, and the one staged commit. A commit is
//! [`Durable::stage`] (on the worker, between two batches), the transaction (on the
//! committer's thread), then [`Durable::settle`] with its outcome.
//!
//! Guarantees:
//! - a stage writes the record of every customer changed since the last committed stage
//!   (dirty tracking: writes grow with the customers touched, not with the events), the
//!   partition's own figures and the next input offset, all with the consumed offset, so
//!   the changelog always holds a state together with the exact input offset it goes with;
//! - a decision is handed to the [`DecisionSink`] only once the transaction holding its
//!   `pending` decision record has committed (decisions the sink reports as recorded
//!   already get no record: writing `pending` again could hide a `sent`);
//! - a rolled-back transaction loses nothing: its customers are written again by the next
//!   stage (with their state as it is then), its dead letters and decisions go into the
//!   next transaction, in order; the in-memory state never goes back, and nothing of it
//!   is visible until a commit succeeds. If the partition is lost meanwhile its state is
//!   dropped, and the next owner restores the state last committed.

use std::collections::HashSet;

use crate::core::{Notification, PartitionState};
use crate::email::log::{Entry, EntryState};
use crate::sink::DecisionSink;

use super::changelog::keys::{StateKey, INPUT_OFFSET, PARTITION_FIGURES};
use super::changelog::writer::PartitionWriter;
use super::txn::OutRecord;
use super::TopicPartition;

/// What a partition adds to one commit.
#[derive(Debug)]
pub struct StagedPartition {
    /// The input partition.
    pub tp: TopicPartition,
    /// Changelog records, dead letters and decision records.
    pub records: Vec<OutRecord>,
    /// The next input offset to fold (the offset committed with them).
    pub next: i64,
}

/// A stage waiting for its transaction's outcome.
struct Staged {
    customers: Vec<Box<str>>,
    dead_letters: Vec<OutRecord>,
    decisions: Vec<(Notification, bool)>,
    next: i64,
}

/// One partition's durable side.
pub struct Durable {
    writer: PartitionWriter,
    /// The largest changelog record, framing included.
    limit: usize,
    /// `kafka.notifications_topic`: where decision records go (`None`: the decision log
    /// is not in Kafka, decisions are handed over unrecorded after the commit).
    notifications_topic: Option<String>,
    /// Dead letters of the messages folded since the last stage.
    dead_letters: Vec<OutRecord>,
    /// Decisions made since the last stage (at counted offsets, and by clock ticks).
    decisions: Vec<Notification>,
    /// Customers whose staged write was rolled back.
    redo: Vec<Box<str>>,
    /// The input offset the changelog holds as committed.
    committed_next: i64,
    staged: Option<Staged>,
}

impl Durable {
    /// The durable side of a partition whose changelog holds `writer`'s chunk book and
    /// the input offset `committed_next` (`-1` when it holds nothing yet).
    pub fn new(
        writer: PartitionWriter,
        limit: usize,
        notifications_topic: Option<&str>,
        committed_next: i64,
    ) -> Self {
        Self {
            writer,
            limit,
            notifications_topic: notifications_topic.map(str::to_string),
            dead_letters: Vec::new(),
            decisions: Vec::new(),
            redo: Vec::new(),
            committed_next,
            staged: None,
        }
    }

    /// Keeps the dead letter of a rejected message for the next transaction.
    pub fn dead_letter(&mut self, record: OutRecord) {
        self.dead_letters.push(record);
    }

    /// Keeps a new decision for the next transaction.
    pub fn decided(&mut self, n: Notification) {
        self.decisions.push(n);
    }

    /// The records of the next commit of partition `tp`, whose state is `state` and next
    /// input offset `next`; `None` when nothing changed since the last commit (or a stage
    /// is still waiting for its outcome). On an encoding failure nothing is staged and
    /// the customers stay to be written.
    pub fn stage(
        &mut self,
        tp: &TopicPartition,
        state: &mut PartitionState,
        next: i64,
        sink: &dyn DecisionSink,
    ) -> Option<StagedPartition> {
        if self.staged.is_some() {
            return None;
        }
        let mut customers = std::mem::take(&mut self.redo);
        customers.extend(state.take_dirty());
        let mut seen = HashSet::with_capacity(customers.len());
        customers.retain(|c| seen.insert(c.clone()));
        if customers.is_empty()
            && next == self.committed_next
            && self.dead_letters.is_empty()
            && self.decisions.is_empty()
        {
            return None;
        }
        let mut changes: Vec<(StateKey, Option<Vec<u8>>)> = Vec::with_capacity(customers.len() + 2);
        for id in &customers {
            match state.customer_record(id) {
                Some(Ok(bytes)) => changes.push((StateKey::Customer(id.to_string()), Some(bytes))),
                Some(Err(e)) => {
                    tracing::error!(partition = %tp, error = %e, "cannot encode a customer's state; it stays to be written");
                    self.redo = customers;
                    return None;
                }
                None => changes.push((StateKey::Customer(id.to_string()), None)),
            }
        }
        match state.partition_record() {
            Ok(bytes) => changes.push((StateKey::Partition(PARTITION_FIGURES.into()), Some(bytes))),
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "cannot encode the partition's figures");
                self.redo = customers;
                return None;
            }
        }
        changes.push((
            StateKey::Partition(INPUT_OFFSET.into()),
            Some(next.to_string().into_bytes()),
        ));
        let mut records = match self
            .writer
            .stage(changes.iter().map(|(k, v)| (k, v.as_deref())), self.limit)
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "cannot split a changelog record");
                self.redo = customers;
                return None;
            }
        };
        let dead_letters = std::mem::take(&mut self.dead_letters);
        records.extend(dead_letters.iter().cloned());
        let mut decisions = Vec::with_capacity(self.decisions.len());
        for n in self.decisions.drain(..) {
            let key = n.idempotency_key();
            let topic = match &self.notifications_topic {
                Some(t) if !sink.is_recorded(&key) => t.clone(),
                _ => {
                    decisions.push((n, false));
                    continue;
                }
            };
            {
                let entry = Entry::new(EntryState::Pending, n.clone());
                match serde_json::to_vec(&entry) {
                    Ok(value) => records.push(OutRecord {
                        topic,
                        partition: None,
                        key: Some(key.into_bytes()),
                        value: Some(value),
                        headers: Vec::new(),
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode a decision record");
                        decisions.push((n, false));
                        continue;
                    }
                }
            }
            decisions.push((n, true));
        }
        self.staged = Some(Staged {
            customers,
            dead_letters,
            decisions,
            next,
        });
        Some(StagedPartition {
            tp: tp.clone(),
            records,
            next,
        })
    }

    /// The staged commit's outcome: `committed`, or rolled back (see the module's
    /// guarantees).
    pub fn settle(&mut self, committed: bool, sink: &dyn DecisionSink) {
        let Some(s) = self.staged.take() else {
            return;
        };
        if committed {
            self.writer.committed();
            self.committed_next = s.next;
            for (n, recorded) in &s.decisions {
                if *recorded {
                    sink.submit_recorded(n);
                } else {
                    sink.submit(n);
                }
            }
        } else {
            self.writer.rolled_back();
            self.redo = s.customers;
            let mut dead_letters = s.dead_letters;
            dead_letters.append(&mut self.dead_letters);
            self.dead_letters = dead_letters;
            let mut decisions: Vec<Notification> =
                s.decisions.into_iter().map(|(n, _)| n).collect();
            decisions.append(&mut self.decisions);
            self.decisions = decisions;
        }
    }

    /// Whether a stage is waiting for its outcome.
    pub fn is_staged(&self) -> bool {
        self.staged.is_some()
    }
}
