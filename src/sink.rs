//! Where the fold's decisions go: the seam between the pure core and the email adapter.
//!
//! Owns the [`DecisionSink`] trait. The Kafka service calls it with every notification
//! the fold decides, in decision order, and again for the same notification when a
//! partition is rebuilt (the sink de-duplicates by [`Notification::idempotency_key`]).
//! Guarantees: `submit` never blocks the fold on email delivery.

use std::collections::HashSet;

use crate::core::Notification;

/// Receives the fold's decisions.
pub trait DecisionSink: Send + Sync {
    /// Takes one decision. Must not block on delivery; may be called again with a
    /// decision already seen (same idempotency key), which it must not send twice.
    fn submit(&self, notification: &Notification);

    /// Partitions were assigned to this instance and are about to be rebuilt: learn what
    /// other instances recorded first, so that their re-decided notifications are known.
    /// Called on the consumer's poll thread; may block for a bounded time.
    fn partitions_assigned(&self) {}

    /// The partitions holding these customers were revoked: stop sending their decisions
    /// (the new owner takes them on). Called on the consumer's poll thread, after the
    /// partitions' states are dropped; may block for a bounded time.
    fn customers_released(&self, _customers: &HashSet<Box<str>>) {}

    /// Whether a decision with this idempotency key is known to be recorded in the
    /// decision log already (in any state). A committer leaves such a decision out of its
    /// transaction: writing `pending` again could hide a `sent`. `false` when unsure.
    fn is_recorded(&self, _key: &str) -> bool {
        false
    }

    /// Takes a decision whose `pending` record was committed already, in the transaction
    /// of the state that decided it: as [`Self::submit`], without writing that record.
    fn submit_recorded(&self, notification: &Notification) {
        self.submit(notification)
    }

    /// Partitions holding these customers were restored from their changelog: a restore
    /// decides nothing again, so take on their decisions still `pending` in the log.
    /// Called on the consumer's poll thread; may block for a bounded time.
    fn customers_restored(&self, _customers: &HashSet<Box<str>>) {}

    /// Whether the sink may hold pending decisions that [`Self::customers_restored`]
    /// would take over (`true` when unsure): without any, a takeover skips building the
    /// set of restored customers.
    fn has_unclaimed(&self) -> bool {
        true
    }

    /// Whether the sink can answer [`Self::is_recorded`] yet (`false` while the outbox is
    /// still loading the decision log). Exactly-once commits wait for it.
    fn is_ready(&self) -> bool {
        true
    }
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

/// A sink whose destination is attached later: decisions made before [`Self::attach`] are
/// kept, in order, and handed over on attach. Lets the service start consuming (and fail
/// fast on a bad `http.bind` or `kafka.brokers`) while the email outbox is still loading.
#[derive(Default)]
pub struct DeferredSink {
    inner: std::sync::OnceLock<std::sync::Arc<dyn DecisionSink>>,
    waiting: std::sync::Mutex<Vec<Waiting>>,
}

/// A call kept until [`DeferredSink::attach`].
enum Waiting {
    Submit(Notification),
    Recorded(Notification),
    Restored(HashSet<Box<str>>),
}

impl DeferredSink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches the destination and hands it every decision kept so far.
    pub fn attach(&self, sink: std::sync::Arc<dyn DecisionSink>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if self.inner.set(sink.clone()).is_err() {
            return; // attached already
        }
        for w in waiting.drain(..) {
            match w {
                Waiting::Submit(n) => sink.submit(&n),
                Waiting::Recorded(n) => sink.submit_recorded(&n),
                Waiting::Restored(c) => sink.customers_restored(&c),
            }
        }
    }
}

impl DecisionSink for DeferredSink {
    fn partitions_assigned(&self) {
        if let Some(s) = self.inner.get() {
            s.partitions_assigned();
        }
    }

    fn customers_released(&self, customers: &HashSet<Box<str>>) {
        if let Some(s) = self.inner.get() {
            s.customers_released(customers);
        }
    }

    fn submit(&self, n: &Notification) {
        self.forward_or_keep(|s| s.submit(n), || Waiting::Submit(n.clone()));
    }

    fn is_recorded(&self, key: &str) -> bool {
        self.inner.get().is_some_and(|s| s.is_recorded(key))
    }

    fn submit_recorded(&self, n: &Notification) {
        self.forward_or_keep(|s| s.submit_recorded(n), || Waiting::Recorded(n.clone()));
    }

    fn has_unclaimed(&self) -> bool {
        self.inner.get().is_none_or(|s| s.has_unclaimed())
    }

    fn is_ready(&self) -> bool {
        self.inner.get().is_some_and(|s| s.is_ready())
    }

    fn customers_restored(&self, customers: &HashSet<Box<str>>) {
        self.forward_or_keep(
            |s| s.customers_restored(customers),
            || Waiting::Restored(customers.clone()),
        );
    }
}

impl DeferredSink {
    /// Calls `call` on the destination, or keeps `keep()` for [`Self::attach`].
    fn forward_or_keep(
        &self,
        call: impl FnOnce(&dyn DecisionSink),
        keep: impl FnOnce() -> Waiting,
    ) {
        if let Some(s) = self.inner.get() {
            return call(&**s);
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        match self.inner.get() {
            Some(s) => call(&**s),
            None => waiting.push(keep()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);
    impl DecisionSink for Collect {
        fn submit(&self, n: &Notification) {
            self.0.lock().unwrap().push(n.idempotency_key());
        }
    }

    fn decision(at: i64) -> Notification {
        Notification {
            kind: crate::core::NotificationKind::Renewal,
            to: "a@b.example".into(),
            customer_id: "c".into(),
            license_key: Some("k".into()),
            at,
            reasons: vec!["expired".into()],
            facts: None,
        }
    }

    #[test]
    fn deferred_sink_is_ready_and_knows_records_only_once_attached() {
        let deferred = DeferredSink::new();
        assert!(!deferred.is_ready(), "commits wait for the outbox");
        assert!(!deferred.is_recorded("k"));
        deferred.attach(Arc::new(Collect::default()));
        assert!(deferred.is_ready());
    }

    #[test]
    fn deferred_decisions_are_handed_over_in_order_on_attach() {
        let deferred = DeferredSink::new();
        deferred.submit(&decision(1));
        deferred.submit(&decision(2));
        let target = Arc::new(Collect::default());
        deferred.attach(target.clone());
        deferred.submit(&decision(3));
        let keys = target.0.lock().unwrap().clone();
        assert_eq!(
            keys,
            vec![
                decision(1).idempotency_key(),
                decision(2).idempotency_key(),
                decision(3).idempotency_key()
            ]
        );
    }
}
