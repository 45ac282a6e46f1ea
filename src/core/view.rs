//! A read-only view of one customer (for `GET /api/v1/customers/{id}`).
//!
//! Owns [`CustomerView`], built by [`PartitionState::customer_view`]: the health score with
//! its reasons and points, the customer's licenses with their upgrade triggers, and the
//! notifications decided for it.
//! Guarantees: additive and read-only (no fold state changes); the cost is proportional
//! to the customer's licenses plus the partition's notification list, never a walk of
//! every license.

use serde::{Deserialize, Serialize};

use super::config::CoreConfig;
use super::signals::Notification;
use super::state::PartitionState;
use super::state::Status;
use super::time::{day_of, format_rfc3339, Micros, NEVER};

/// One customer, as the HTTP API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerView {
    /// The customer id.
    pub customer_id: String,
    /// The customer's clock (SPEC §2), RFC 3339.
    pub clock: Option<String>,
    /// The health at `as_of`; `None` when the customer has no active license (not scored).
    pub health: Option<CustomerHealth>,
    /// Every license of the customer, in first-seen order.
    pub licenses: Vec<LicenseView>,
    /// The notifications decided for the customer, in report order.
    pub notifications: Vec<Notification>,
}

/// A health score with the penalties that lowered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerHealth {
    /// 0–100.
    pub score: u32,
    /// The penalties that applied, in the spec's order.
    pub reasons: Vec<String>,
    /// Each penalty with its points.
    pub penalties: Vec<Penalty>,
}

/// One health penalty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Penalty {
    /// The reason, e.g. `inactive_7d`.
    pub reason: String,
    /// Points taken off.
    pub points: u32,
}

/// One license of the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LicenseView {
    /// The license key.
    pub license_key: String,
    /// Current plan.
    pub plan: String,
    /// `active`, `expired`, `revoked` or `canceled`.
    pub status: String,
    /// Monthly price in cents.
    pub mrr_cents: u64,
    /// Registered domains.
    pub domains_used: u64,
    /// The plan's domain limit (0: none).
    pub domain_limit: u64,
    /// Latest validation by `ts` (any result but `invalid_format`), RFC 3339.
    pub last_validation: Option<String>,
    /// Issue time (`None` for a license created on the fly).
    pub issued_at: Option<String>,
    /// Expiry, when known.
    pub expires_at: Option<String>,
    /// Its upgrade triggers at `as_of` (SPEC §6 "signals"; the windows of the report's
    /// `upgrade_pipeline`, which lists active licenses only: empty when not active).
    pub triggers: Vec<String>,
    /// Distinct mismatched domains over the sharing window ending on `as_of`'s day
    /// (SPEC §8.3; at most 64), whatever the license's status.
    pub mismatched_domains: u32,
    /// Its `domain_mismatch` validations over that window.
    pub mismatches: u64,
    /// The expiry its latest `expiring_soon` reminder was for (SPEC §8.5), if any.
    pub reminded_expiry: Option<String>,
}

fn ts(t: Micros) -> Option<String> {
    (t != NEVER).then(|| format_rfc3339(t))
}

impl PartitionState {
    /// Whether this state holds the customer `id`.
    pub fn has_customer(&self, id: &str) -> bool {
        self.customer_position(id).is_some()
    }

    /// The view of customer `id` at `as_of`, or `None` when this state does not hold it.
    pub fn customer_view(&self, id: &str, as_of: Micros, cfg: &CoreConfig) -> Option<CustomerView> {
        let ci = self.customer_position(id)?;
        let c = &self.customers[ci as usize];
        let health = (c.active_licenses > 0).then(|| {
            let h = self.customer_health(ci, as_of, cfg);
            CustomerHealth {
                score: h.score,
                reasons: h.reasons().iter().map(|r| r.to_string()).collect(),
                penalties: h
                    .penalties
                    .iter()
                    .map(|(r, p)| Penalty {
                        reason: r.to_string(),
                        points: *p,
                    })
                    .collect(),
            }
        });
        let sharing_from = day_of(as_of) - cfg.sharing.window_days as i32 + 1;
        let licenses = c
            .licenses
            .iter()
            .map(|&li| {
                let l = &self.licenses[li as usize];
                let terms = self.terms_of(l);
                LicenseView {
                    license_key: l.key().to_string(),
                    plan: self.plan_name(terms.plan).to_string(),
                    status: l.status.as_str().to_string(),
                    mrr_cents: terms.mrr_cents,
                    domains_used: l.domains.len() as u64,
                    domain_limit: terms.domain_limit,
                    last_validation: ts(l.last_validation),
                    issued_at: ts(l.issued_at()),
                    expires_at: ts(l.expires_at()),
                    triggers: if l.status == Status::Active {
                        self.triggers(li, day_of(as_of), cfg).to_strings()
                    } else {
                        Vec::new()
                    },
                    mismatched_domains: l
                        .license8()
                        .map_or(0, |r| r.mismatches.distinct_in(sharing_from, day_of(as_of))),
                    mismatches: l.license8().map_or(0, |r| {
                        r.mismatches.mismatches_in(sharing_from, day_of(as_of))
                    }),
                    reminded_expiry: l.license8().and_then(|r| ts(r.reminded_expiry)),
                }
            })
            .collect();
        let mut notifications: Vec<Notification> = self.notifications_of(c, true).collect();
        notifications.sort_by(Notification::report_order);
        Some(CustomerView {
            customer_id: id.to_string(),
            clock: ts(c.clock),
            health,
            licenses,
            notifications,
        })
    }
}
