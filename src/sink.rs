//! Where the fold's decisions go: the seam between the pure core and the email adapter.
//!
//! Owns the [`DecisionSink`] trait. The Kafka service calls it with every notification
//! the fold decides, in decision order, and again for the same notification when a
//! partition is rebuilt (the sink de-duplicates by [`Notification::idempotency_key`]).
//! Guarantees: `submit` never blocks the fold on email delivery.

use crate::core::Notification;

/// Receives the fold's decisions.
pub trait DecisionSink: Send + Sync {
    /// Takes one decision. Must not block on delivery; may be called again with a
    /// decision already seen (same idempotency key), which it must not send twice.
    fn submit(&self, notification: &Notification);
}

/// A sink that only logs each decision (the `none` transport and `--dry-run`).
#[derive(Debug, Default)]
pub struct LogOnlySink;

impl DecisionSink for LogOnlySink {
    fn submit(&self, n: &Notification) {
        tracing::info!(kind = n.kind.as_str(), at = %crate::core::time::format_rfc3339(n.at), "notification decided (not sent: dry run)");
        tracing::debug!(to = %n.to, customer = %n.customer_id, license = ?n.license_key, "notification recipient");
    }
}
