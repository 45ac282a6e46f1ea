//! The one source of every code name the outside sees (SPEC §1, §3, §5).
//!
//! Owns the names of license statuses, churn signals, upgrade triggers, health reasons,
//! health bands, TTFV buckets, DAV trends and notification kinds. The report document,
//! the Prometheus labels, the emails and the decisions all take their names from here,
//! so a rename fails to compile (or changes every place at once) rather than silently
//! mislabelling an email or a metric. The event-level codes (validation results, reject
//! reasons) are defined with the decoder in `event` and re-exported here.
//!
//! Guarantees: each enum's `ALL` lists every value in its fixed (report/label) order, and
//! `as_str` gives the exact string of the spec; `parse` is its inverse.

use serde::{Deserialize, Serialize};

pub use crate::event::{RejectReason, TicketCategory, ValidationResult};

/// Defines a code enum with `ALL`, `as_str`, `parse` and `index` (its position in `ALL`).
macro_rules! codes {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        $vis enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            /// Every value, in the fixed order of the report and the metric labels.
            pub const ALL: [$name; [$($s),+].len()] = [$(Self::$v),+];

            /// The name as the spec writes it.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }

            /// The value named `s`, if any.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.as_str() == s)
            }

            /// Position in [`Self::ALL`].
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

codes! {
    /// A license's status.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[repr(u8)]
    pub enum Status {
        Active => "active",
        Expired => "expired",
        Revoked => "revoked",
        Canceled => "canceled",
    }
}

codes! {
    /// The three kinds of email.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum NotificationKind {
        ChurnWarning => "churn_warning",
        Renewal => "renewal",
        Upgrade => "upgrade",
    }
}

codes! {
    /// What decides a churn warning (SPEC §5): one event type each, or the daily check.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ChurnSignal {
        DomainDeactivation => "domain_deactivation",
        ApiKeyDeletion => "api_key_deletion",
        DowngradeInquiry => "downgrade_inquiry",
        CancellationTicket => "cancellation_ticket",
        PaymentFailed => "payment_failed",
        ValidationDecline => "validation_decline",
    }
}

codes! {
    /// An upgrade trigger of a license (SPEC §5).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[repr(u8)]
    pub enum Trigger {
        DomainLimitApproaching => "domain_limit_approaching",
        RateLimitFrequent => "rate_limit_frequent",
        FeatureInterest => "feature_interest",
        TeamGrowth => "team_growth",
    }
}

codes! {
    /// Why a renewal reminder was decided (its only reason).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum RenewalReason {
        Expired => "expired",
    }
}

codes! {
    /// A health penalty (SPEC §3), in the spec's order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum HealthReason {
        Inactive7d => "inactive_7d",
        Inactive30d => "inactive_30d",
        LowDomainUtilization => "low_domain_utilization",
        ValidationDecline => "validation_decline",
        OpenTicket => "open_ticket",
        PaymentFailed => "payment_failed",
    }
}

codes! {
    /// A band of the 0–100 health score.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum HealthBand {
        B0To24 => "0-24",
        B25To49 => "25-49",
        B50To74 => "50-74",
        B75To100 => "75-100",
    }
}

impl HealthBand {
    /// The band a score falls in: 0–24, 25–49, 50–74 or 75–100.
    pub fn of(score: u32) -> Self {
        Self::ALL[(score.min(100) / 25).min(3) as usize]
    }
}

codes! {
    /// A time-to-first-validation bucket (SPEC §3).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum TtfvBucket {
        Under1h => "under_1h",
        H1To24h => "1h_to_24h",
        D1To7d => "1d_to_7d",
        Over7d => "over_7d",
        Pending => "pending",
    }
}

codes! {
    /// The DAV trend of the report.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Trend {
        Unknown => "unknown",
        Growing => "growing",
        Declining => "declining",
        Flat => "flat",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_index_matches_all() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(Status::ALL[s.index()], s);
        }
        for t in Trigger::ALL {
            assert_eq!(Trigger::parse(t.as_str()), Some(t));
            assert_eq!(Trigger::ALL[t.index()], t);
        }
        for c in ChurnSignal::ALL {
            assert_eq!(ChurnSignal::parse(c.as_str()), Some(c));
        }
        assert_eq!(Trigger::parse("nope"), None);
    }

    #[test]
    fn notification_kinds_serialize_as_their_names() {
        for k in NotificationKind::ALL {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
    }

    #[test]
    fn bands_cover_the_score_range() {
        let bands: Vec<_> = [0, 24, 25, 49, 50, 74, 75, 100, 250]
            .into_iter()
            .map(|s| HealthBand::of(s).as_str())
            .collect();
        assert_eq!(
            bands,
            ["0-24", "0-24", "25-49", "25-49", "50-74", "50-74", "75-100", "75-100", "75-100"]
        );
    }
}
