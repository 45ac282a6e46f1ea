//! The sample notifications, one of each kind (two renewals: with and without an expiry),
//! that every template is test-rendered with when the [`Renderer`](super::Renderer) is built.
//!
//! Guarantees: every sample carries facts of its kind, so a template that fails on them
//! would fail on every real email of that kind.

use crate::core::codes::{HealthReason, Status, Trigger};
use crate::core::signals::{Facts, LicenseFacts};
use crate::core::{Notification, NotificationKind};

/// One notification of each kind, for test-rendering templates at start.
pub(crate) fn samples() -> Vec<Notification> {
    let base = |kind, license: Option<&str>, facts| Notification {
        kind,
        to: "someone@example.com".into(),
        customer_id: "cus_sample".into(),
        license_key: license.map(String::from),
        at: 0,
        reasons: vec![
            Trigger::DomainLimitApproaching.as_str().into(),
            Trigger::TeamGrowth.as_str().into(),
        ],
        facts: Some(facts),
    };
    vec![
        base(
            NotificationKind::Upgrade,
            Some("LK-SAMPLE"),
            Facts::Upgrade {
                plan: "starter".into(),
                domains_used: 4,
                domain_limit: 5,
                rate_limited_30d: 12,
                features_denied_30d: 4,
                invites_30d: 3,
            },
        ),
        base(
            NotificationKind::Renewal,
            Some("LK-SAMPLE"),
            Facts::Renewal {
                plan: "starter".into(),
                expires_at: Some("2026-01-01T00:00:00Z".into()),
            },
        ),
        base(
            NotificationKind::Renewal,
            Some("LK-SAMPLE"),
            Facts::Renewal {
                plan: "starter".into(),
                expires_at: None,
            },
        ),
        base(
            NotificationKind::ChurnWarning,
            None,
            Facts::ChurnWarning {
                score: 35,
                penalties: vec![
                    (HealthReason::Inactive7d.as_str().into(), 20),
                    (HealthReason::OpenTicket.as_str().into(), 10),
                ],
                licenses: vec![LicenseFacts {
                    license_key: "LK-SAMPLE".into(),
                    plan: "starter".into(),
                    status: Status::Active.as_str().into(),
                    mrr_cents: 4900,
                }],
                mrr_cents: 4900,
            },
        ),
        base(
            NotificationKind::KeySharing,
            Some("LK-SAMPLE"),
            Facts::KeySharing {
                plan: "starter".into(),
                domains: vec!["a.example".into(), "b.example".into(), "c.example".into()],
                distinct_domains: 12,
                mismatches: 30,
                window_days: 30,
            },
        ),
        base(
            NotificationKind::RevokedUse,
            Some("LK-SAMPLE"),
            Facts::RevokedUse {
                plan: "starter".into(),
                status: "revoked".into(),
                payment_failed: true,
            },
        ),
        base(
            NotificationKind::ExpiringSoon,
            Some("LK-SAMPLE"),
            Facts::ExpiringSoon {
                plan: "starter".into(),
                expires_at: "2026-01-01T00:00:00Z".into(),
            },
        ),
    ]
}
