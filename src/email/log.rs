//! The decision log: where the outbox keeps each decision and its outcome durably.
//!
//! Owns the [`DecisionLog`] trait, the record format ([`Entry`], JSON) and two logs: the
//! Kafka one ([`KafkaLog`], a compacted topic keyed by the idempotency key, the service's)
//! and an in-memory one ([`MemoryLog`], for dry runs, tests and the demo's mock cluster,
//! which cannot create compacted topics). Guarantees:
//! - [`DecisionLog::load`] returns the latest entry of every key written before it was
//!   called (the whole topic up to its end offsets at that moment);
//! - [`DecisionLog::record`] queues the write before it returns (so writes made in order
//!   are written in order, and a caller that may not wait, like `submit`, can still start
//!   one), and its future resolves only once the write is durable (acknowledged by the
//!   brokers under `acks=all`);
//! - [`DecisionLog::poll_updates`] returns the entries written since the last load or poll
//!   (by this process or another instance), up to the end offsets at the time of the call.
//!
//! The pieces: this file holds the trait, the record format and the in-memory log;
//! `kafka.rs` the Kafka log and the creation of its topic.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::core::Notification;

mod kafka;
pub(crate) use kafka::ensure_topic;
pub use kafka::KafkaLog;

/// A boxed, sendable future (the log trait is used as `Arc<dyn DecisionLog>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a decision stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Decided, not yet sent (queued, deferred, retrying, or waiting for a restart).
    Pending,
    /// Accepted by the transport. Final.
    Sent,
    /// Refused (bad address, header injection), rejected with a 5xx, or out of attempts. Final.
    Failed,
}

impl EntryState {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Sent | Self::Failed)
    }
}

/// One record of the log, the value of a message keyed by the idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub state: EntryState,
    #[serde(deserialize_with = "notification_json::deserialize")]
    pub notification: Notification,
    /// Transport attempts made so far.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Wall-clock time of this record (RFC 3339).
    pub updated_at: String,
}

impl Entry {
    pub fn new(state: EntryState, notification: Notification) -> Self {
        Self {
            state,
            notification,
            attempts: 0,
            last_error: None,
            updated_at: now_rfc3339(),
        }
    }
}

/// Reads a notification back from JSON (kept as a module so the field's attribute names
/// one place).
mod notification_json {
    use serde::{Deserialize, Deserializer};

    use crate::core::Notification;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Notification, D::Error> {
        Notification::deserialize(d)
    }
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Durable storage of decisions and their outcomes, keyed by idempotency key.
pub trait DecisionLog: Send + Sync {
    /// Every key's latest entry, as written before this call.
    fn load(&self) -> BoxFuture<'_, anyhow::Result<HashMap<String, Entry>>>;
    /// Writes `entry` under `key`: queued before returning, durable when the future resolves.
    fn record(&self, key: &str, entry: &Entry) -> BoxFuture<'static, anyhow::Result<()>>;
    /// Entries written since the last `load` or `poll_updates` (by anyone), in log order.
    fn poll_updates(&self) -> BoxFuture<'_, anyhow::Result<Vec<(String, Entry)>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// What and where, for logs.
    fn describe(&self) -> String;
}

/// An in-memory log. Clones share the same entries, so a second outbox built on a clone
/// sees what the first one wrote (a restart, in tests).
#[derive(Debug, Clone, Default)]
pub struct MemoryLog {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the current entries.
    pub fn snapshot(&self) -> HashMap<String, Entry> {
        self.entries.lock().expect("memory log lock").clone()
    }
}

impl DecisionLog for MemoryLog {
    fn load(&self) -> BoxFuture<'_, anyhow::Result<HashMap<String, Entry>>> {
        let map = self.snapshot();
        Box::pin(async move { Ok(map) })
    }

    fn record(&self, key: &str, entry: &Entry) -> BoxFuture<'static, anyhow::Result<()>> {
        self.entries
            .lock()
            .expect("memory log lock")
            .insert(key.to_string(), entry.clone());
        Box::pin(async { Ok(()) })
    }

    fn describe(&self) -> String {
        "in-memory decision log (not durable)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::signals::{Facts, LicenseFacts};
    use crate::core::NotificationKind;

    #[test]
    fn entries_of_every_kind_round_trip_through_json() {
        let base = Notification {
            kind: NotificationKind::ChurnWarning,
            to: "cs@example.com".into(),
            customer_id: "c".into(),
            license_key: None,
            at: 1_700_000_000_000_000,
            reasons: vec!["payment_failed".into()],
            facts: Some(Facts::ChurnWarning {
                score: 50,
                penalties: vec![("open_ticket".into(), 10)],
                licenses: vec![LicenseFacts {
                    license_key: "K".into(),
                    plan: "pro".into(),
                    status: "active".into(),
                    mrr_cents: 29900,
                }],
                mrr_cents: 29900,
            }),
        };
        let upgrade = Notification {
            kind: NotificationKind::Upgrade,
            license_key: Some("K".into()),
            facts: Some(Facts::Upgrade {
                plan: "pro".into(),
                domains_used: 1,
                domain_limit: 1,
                rate_limited_30d: 11,
                features_denied_30d: 0,
                invites_30d: 0,
            }),
            ..base.clone()
        };
        let renewal = Notification {
            kind: NotificationKind::Renewal,
            license_key: Some("K".into()),
            facts: Some(Facts::Renewal {
                plan: "pro".into(),
                expires_at: None,
            }),
            ..base.clone()
        };
        let bare = Notification {
            facts: None,
            ..base.clone()
        };
        for n in [base, upgrade, renewal, bare] {
            let e = Entry::new(EntryState::Sent, n);
            let back: Entry = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
            assert_eq!(back, e);
        }
    }
}
