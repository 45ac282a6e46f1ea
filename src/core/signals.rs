//! Notifications: what was decided, for whom, when and why (SPEC §5), and the cooldown rule.
//!
//! Owns the `Notification` record and its idempotency key. A notification is decided at
//! the moment its condition is met unless one of the same kind for the same license (or
//! customer) was already decided with an `at` later than this `at` minus the cooldown.
//! Guarantees: the same events in the same per-customer order decide the same
//! notifications with the same keys, wherever they are folded.

use serde::{Deserialize, Serialize};

use super::time::{format_rfc3339, Micros, NEVER};

pub use super::codes::NotificationKind;

/// The figures behind a decision, for the email that names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Facts {
    Upgrade {
        plan: String,
        domains_used: u64,
        domain_limit: u64,
        rate_limited_30d: u64,
        features_denied_30d: u64,
        invites_30d: u64,
    },
    Renewal {
        plan: String,
        expires_at: Option<String>,
    },
    ChurnWarning {
        score: u32,
        /// Each penalty that applied, with its points.
        penalties: Vec<(String, u32)>,
        licenses: Vec<LicenseFacts>,
        /// Σ MRR of its active licenses (saturated to the `i64` range).
        mrr_cents: i64,
    },
    /// SPEC §8.6: what a `key_sharing` email names.
    KeySharing {
        plan: String,
        /// The first 10 (sorted) mismatched domains of the window that decided it.
        domains: Vec<String>,
        /// Distinct mismatched domains over that window (at most 64).
        distinct_domains: u32,
        /// `domain_mismatch` validations over that window.
        mismatches: u64,
        /// Days in that window.
        window_days: u32,
    },
    /// SPEC §8.6: what a `revoked_use` email names.
    RevokedUse {
        plan: String,
        status: String,
        /// Whether the customer's latest payment event is `payment.failed`.
        payment_failed: bool,
    },
    /// SPEC §8.6: what an `expiring_soon` email names.
    ExpiringSoon { plan: String, expires_at: String },
}

/// One license as named in a churn warning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseFacts {
    pub license_key: String,
    pub plan: String,
    pub status: String,
    pub mrr_cents: u64,
}

/// One decided email.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub kind: NotificationKind,
    /// The recipient: the license's email, or the team address for churn warnings.
    pub to: String,
    pub customer_id: String,
    /// `None` for a churn warning.
    pub license_key: Option<String>,
    /// When the condition was met: the event's `ts` or the midnight of a daily check.
    #[serde(with = "at_format")]
    pub at: Micros,
    /// Triggers, `["expired"]`, or the churn signal.
    pub reasons: Vec<String>,
    /// The figures for the email; not part of the report document.
    pub facts: Option<Facts>,
}

mod at_format {
    use super::*;
    use serde::{Deserializer, Serializer};
    pub fn serialize<S: Serializer>(t: &Micros, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Micros, D::Error> {
        let s = String::deserialize(d)?;
        crate::time::parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("bad timestamp"))
    }
}

impl Notification {
    /// The idempotency key: kind, license (or customer) and `at`. Two decisions with the
    /// same key are the same email.
    pub fn idempotency_key(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.kind.as_str(),
            self.customer_id,
            self.license_key.as_deref().unwrap_or(""),
            format_rfc3339(self.at)
        )
    }

    /// The report's order: `at`, then `customer_id`, `kind`, `license_key` (null first).
    pub fn report_order(a: &Self, b: &Self) -> std::cmp::Ordering {
        a.at.cmp(&b.at)
            .then_with(|| a.customer_id.cmp(&b.customer_id))
            .then_with(|| a.kind.as_str().cmp(b.kind.as_str()))
            .then_with(|| a.license_key.cmp(&b.license_key))
    }
}

/// The cooldown rule: a new decision at `at` is allowed unless the latest one decided so
/// far (`last`, or [`NEVER`]) is later than `at − cooldown`.
pub fn cooldown_allows(last: Micros, at: Micros, cooldown: Micros) -> bool {
    last == NEVER || last <= at.saturating_sub(cooldown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::DAY;

    #[test]
    fn cooldown_blocks_inside_and_before() {
        let c = 7 * DAY;
        assert!(cooldown_allows(NEVER, 0, c));
        assert!(!cooldown_allows(10 * DAY, 16 * DAY, c));
        assert!(cooldown_allows(10 * DAY, 17 * DAY, c));
        // a late event before the last decision never re-sends
        assert!(!cooldown_allows(10 * DAY, 5 * DAY, c));
    }
}
