//! Typed internal events of the Kafka adapter: one struct per thing that happens, whose
//! `emit` writes its one log line and bumps its counter, so that a log line and its metric
//! never drift apart (the habit of Vector's `internal_events`).
//!
//! Guarantees: no event carries a message's content, a customer id, a license key or an
//! email; per-message events (rejections) log at debug level only.

use tracing::{debug, info, warn};

use crate::core::Rejection;
use crate::metrics::Metrics;

use super::TopicPartition;

/// A partition was assigned to this instance; its state is rebuilt from the beginning.
pub struct PartitionAssigned<'a> {
    /// Which partition.
    pub tp: &'a TopicPartition,
    /// The fold worker it goes to.
    pub worker: usize,
    /// The group's committed offset (0: none).
    pub committed: i64,
    /// The high watermark to catch up with (−1: not known yet).
    pub target: i64,
}

impl PartitionAssigned<'_> {
    /// Logs it.
    pub fn emit(&self) {
        info!(
            topic = %self.tp.topic, partition = self.tp.partition, worker = self.worker,
            committed = self.committed, catch_up_target = self.target,
            "partition assigned"
        );
    }
}

/// A partition folded up to its catch-up target.
pub struct PartitionCaughtUp<'a> {
    /// Which partition.
    pub tp: &'a TopicPartition,
    /// The next offset to fold.
    pub offset: i64,
    /// Its catch-up target.
    pub target: i64,
}

impl PartitionCaughtUp<'_> {
    /// Logs it.
    pub fn emit(&self) {
        info!(
            topic = %self.tp.topic, partition = self.tp.partition, offset = self.offset,
            catch_up_target = self.target, "partition caught up"
        );
    }
}

/// Partitions were revoked: their folded offsets committed, their states dropped.
pub struct PartitionsRevoked<'a> {
    /// Which partitions.
    pub tps: &'a [TopicPartition],
    /// Whether the assignment was lost (then nothing could be committed).
    pub lost: bool,
}

impl PartitionsRevoked<'_> {
    /// Logs it.
    pub fn emit(&self) {
        let list = self
            .tps
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(",");
        if self.lost {
            warn!(partitions = %list, "assignment lost: states dropped, offsets not committed");
        } else {
            info!(partitions = %list, "partitions revoked; folded offsets committed, states dropped");
        }
    }
}

/// Folded offsets were committed.
pub struct OffsetsCommitted {
    /// How many partitions.
    pub partitions: usize,
}

impl OffsetsCommitted {
    /// Logs it and counts `keypulse_offset_commits_total{outcome="ok"}`.
    pub fn emit(&self, m: &Metrics) {
        m.offset_commits_total.with_label_values(&["ok"]).inc();
        debug!(partitions = self.partitions, "offsets committed");
    }
}

/// An offset commit failed (it is retried with the next one).
pub struct OffsetCommitFailed<'a> {
    /// Why.
    pub error: &'a dyn std::fmt::Display,
}

impl OffsetCommitFailed<'_> {
    /// Logs it and counts `keypulse_offset_commits_total{outcome="failed"}`.
    pub fn emit(&self, m: &Metrics) {
        m.offset_commits_total.with_label_values(&["failed"]).inc();
        warn!(error = %self.error, "offset commit failed");
    }
}

/// A message was rejected and copied to the dead-letter topic (counted per batch in
/// `keypulse_events_rejected_total{reason}`).
pub struct MessageRejected<'a> {
    /// Where it is.
    pub tp: &'a TopicPartition,
    /// Its offset.
    pub offset: i64,
    /// Why.
    pub why: Rejection,
}

impl MessageRejected<'_> {
    /// Logs it (debug level: one line per message).
    pub fn emit(&self) {
        debug!(
            topic = %self.tp.topic, partition = self.tp.partition, offset = self.offset,
            reason = self.why.reason.as_str(), field = self.why.field.unwrap_or(""),
            "message rejected; copied to the dead-letter topic"
        );
    }
}

/// The dead-letter topic acknowledged a copy, or failed to.
pub struct DeadLetterDelivered<'a> {
    /// `None` when acknowledged, else the error.
    pub error: Option<&'a dyn std::fmt::Display>,
}

impl DeadLetterDelivered<'_> {
    /// Counts `keypulse_dead_letter_messages_total{outcome}`; logs a failure.
    pub fn emit(&self, m: &Metrics) {
        match self.error {
            None => m
                .dead_letter_messages_total
                .with_label_values(&["sent"])
                .inc(),
            Some(e) => {
                m.dead_letter_messages_total
                    .with_label_values(&["failed"])
                    .inc();
                tracing::error!(error = %e, "dead-letter copy failed");
            }
        }
    }
}
