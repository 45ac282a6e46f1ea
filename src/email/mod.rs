//! Emails: churn warnings, renewal reminders and upgrade offers, each sent once.
//!
//! The fold decides ([`crate::core::Notification`]); this module delivers:
//! - [`render`]: templates → a multipart email, escaped, with refusals of header injection;
//! - [`transport`]: SMTP (lettre), `.eml` files, or a dry run, with failures classified;
//! - [`log`]: the durable decision log (a compacted Kafka topic, or in memory);
//! - [`outbox`]: the [`crate::sink::DecisionSink`] that de-duplicates by idempotency key,
//!   queues, retries and records outcomes.
//!
//! This file owns the email metrics ([`EmailMetrics`]) and [`build_log`]. Guarantees: no
//! metric label carries a customer, license, address or domain (only `kind`, `outcome`).
//! The user-facing description is `docs/EMAILS.md`.
//!
//! The service wires it as:
//! ```no_run
//! # async fn wire(cfg: &keypulse::config::Config, registry: &prometheus::Registry) -> anyhow::Result<()> {
//! use keypulse::sink::DecisionSink;
//! let log = keypulse::email::build_log(cfg).await?;
//! let outbox = keypulse::email::outbox::Outbox::start(cfg, registry, log).await?;
//! // on each partition assignment, before rebuilding the partition:
//! outbox.catch_up().await?;
//! // on each revocation, before letting the partitions go:
//! # let revoked_customer = |_c: &str| true;
//! outbox.release(|n| revoked_customer(&n.customer_id)).await;
//! // the fold hands every decision over (again, on a rebuild: de-duplicated):
//! let sink: std::sync::Arc<dyn DecisionSink> = outbox.clone();
//! # let n: keypulse::core::Notification = todo!();
//! sink.submit(&n);
//! // at shutdown:
//! outbox.shutdown(std::time::Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```

mod check;
pub mod log;
pub mod outbox;
pub mod render;
pub mod transport;

use std::sync::Arc;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use crate::config::Config;
use crate::core::NotificationKind;

pub use log::{DecisionLog, Entry, EntryState, KafkaLog, MemoryLog};
pub use outbox::{Outbox, OutboxOptions};
pub use render::{RenderError, RenderedEmail, Renderer};
pub use transport::{FailureKind, SendError, Transport};

/// What became of a decision (the `outcome` label of `keypulse_emails_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Accepted by the transport (SMTP 250, file written, or logged by the dry run).
    Sent,
    /// One failed attempt that will be tried again (counted per retry).
    Retried,
    /// Given up: a 5xx reply, or `email.max_attempts` transient failures.
    Failed,
    /// Not sendable: a recipient, name or subject with CR/LF, a bad address, missing figures.
    Refused,
    /// Decided again (a replay, a rebuild) after it was already known: not sent again.
    SkippedDuplicate,
    /// The queue was full: kept in the deferred list, queued when room frees up.
    Deferred,
    /// A `pending` decision from the log (an earlier run, or another instance) taken on here.
    Resumed,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Self::Sent,
        Self::Retried,
        Self::Failed,
        Self::Refused,
        Self::SkippedDuplicate,
        Self::Deferred,
        Self::Resumed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Retried => "retried",
            Self::Failed => "failed",
            Self::Refused => "refused",
            Self::SkippedDuplicate => "skipped_duplicate",
            Self::Deferred => "deferred",
            Self::Resumed => "resumed",
        }
    }
}

/// The email metrics, registered on the service's registry.
#[derive(Debug, Clone)]
pub struct EmailMetrics {
    /// `keypulse_emails_total{kind, outcome}`.
    pub emails: IntCounterVec,
    /// `keypulse_outbox_depth`: emails taken on by this instance and not yet finished.
    pub depth: IntGauge,
    /// `keypulse_email_fields_truncated_total{kind}`: event strings cut to `email.max_field_chars`.
    pub truncated: IntCounterVec,
}

impl EmailMetrics {
    /// Creates the metrics and registers them on `registry` (every kind × outcome starts at 0).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.emails.clone()))?;
        registry.register(Box::new(m.depth.clone()))?;
        registry.register(Box::new(m.truncated.clone()))?;
        Ok(m)
    }

    /// The metrics without a registry (tests, tools).
    pub fn unregistered() -> prometheus::Result<Self> {
        let emails = IntCounterVec::new(
            Opts::new(
                "keypulse_emails_total",
                "Email decisions by kind and outcome (sent, retried, failed, refused, skipped_duplicate, deferred, resumed).",
            ),
            &["kind", "outcome"],
        )?;
        let depth = IntGauge::new(
            "keypulse_outbox_depth",
            "Emails taken on by this instance and not yet sent or failed (queued, deferred, retrying).",
        )?;
        let truncated = IntCounterVec::new(
            Opts::new(
                "keypulse_email_fields_truncated_total",
                "Event-sourced strings cut to email.max_field_chars when rendering.",
            ),
            &["kind"],
        )?;
        for k in NotificationKind::ALL {
            for o in Outcome::ALL {
                emails.with_label_values(&[k.as_str(), o.as_str()]);
            }
            truncated.with_label_values(&[k.as_str()]);
        }
        Ok(Self {
            emails,
            depth,
            truncated,
        })
    }

    pub fn count(&self, kind: NotificationKind, outcome: Outcome) {
        self.emails
            .with_label_values(&[kind.as_str(), outcome.as_str()])
            .inc();
    }

    /// The count of one kind and outcome.
    pub fn get(&self, kind: NotificationKind, outcome: Outcome) -> u64 {
        self.emails
            .with_label_values(&[kind.as_str(), outcome.as_str()])
            .get()
    }

    /// The count of one outcome over every kind.
    pub fn total(&self, outcome: Outcome) -> u64 {
        NotificationKind::ALL
            .into_iter()
            .map(|k| self.get(k, outcome))
            .sum()
    }
}

/// The decision log that `email.decision_log` names: `kafka` (the compacted
/// `kafka.notifications_topic`, created if missing) or `memory` (not durable: dry runs,
/// the demo's mock cluster).
pub async fn build_log(cfg: &Config) -> anyhow::Result<Arc<dyn DecisionLog>> {
    match cfg.email.decision_log.as_str() {
        "memory" => Ok(Arc::new(MemoryLog::new())),
        _ => Ok(Arc::new(KafkaLog::connect(&cfg.kafka, 1).await?)),
    }
}
