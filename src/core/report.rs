//! The report document (SPEC §3): computed from a state at `as_of`, mergeable across states.
//!
//! Owns the two stages of a report. [`Aggregate`] holds sums and lists that add up across
//! partitions and instances (counts, per-day counts, the measured TTFV times, the lists);
//! [`Aggregate::finish`] turns one (or a merge of several) into the [`Report`] with its
//! ratios, medians and sorted lists. Guarantees: finishing the merge of the aggregates of
//! states over disjoint customers gives the report of one state holding them all; ratios
//! with a zero denominator are `null`; ratios are rounded to 4 decimals.
//!
//! The pieces: this file holds [`Aggregate`] and its entries, and their merge;
//! `document.rs` the [`Report`] document and its sections (the wire format); `finish.rs`
//! [`Aggregate::finish`], the ratios, medians and sorted lists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::movements::MovementSums;
use super::signals::Notification;
use super::time::{Day, Micros};

mod document;
mod finish;

pub use document::{
    Activation, Dav, DayCount, Events, HealthSection, Licenses, Movements, Mrr, NotificationEntry,
    PlanActivation, Report, Ttfv, Utilization, ValidationDay, ValidationSeriesDay, Validations,
};

/// Activation counts over licenses with a `license.issued`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ActivationCounts {
    pub issued: u64,
    pub activated: u64,
    pub cohort_7d: u64,
    pub activated_within_7d: u64,
}

impl ActivationCounts {
    pub(crate) fn add(&mut self, o: &Self) {
        self.issued += o.issued;
        self.activated += o.activated;
        self.cohort_7d += o.cohort_7d;
        self.activated_within_7d += o.activated_within_7d;
    }
}

/// Domain utilization sums of one plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UtilizationSums {
    pub licenses: u64,
    pub sum: f64,
    pub near_limit: u64,
    pub at_limit: u64,
    pub over_provisioned: u64,
}

/// A customer below the churn-risk line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChurnRiskEntry {
    pub customer_id: String,
    pub score: u32,
    pub reasons: Vec<String>,
}

/// A license with upgrade triggers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeEntry {
    pub license_key: String,
    pub customer_id: String,
    pub triggers: Vec<String>,
}

/// A license suspected of key sharing (SPEC §8.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingSuspect {
    pub license_key: String,
    pub customer_id: String,
    /// Distinct mismatched domains over the window (at most 64).
    pub domains: u32,
    /// `domain_mismatch` validations over the window, those without a domain included.
    pub mismatches: u64,
}

impl SharingSuspect {
    /// The report's order: `domains` descending, `mismatches` descending, then
    /// `license_key`, then `customer_id`.
    pub fn report_order(a: &Self, b: &Self) -> std::cmp::Ordering {
        b.domains
            .cmp(&a.domains)
            .then_with(|| b.mismatches.cmp(&a.mismatches))
            .then_with(|| a.license_key.cmp(&b.license_key))
            .then_with(|| a.customer_id.cmp(&b.customer_id))
    }
}

/// An active license whose expiry falls in the notice window after `as_of`:
/// `(as_of, as_of + core.notify.expiry_notice_days]` (the dashboard's list; not in SPEC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringLicense {
    pub license_key: String,
    pub customer_id: String,
    pub plan: String,
    #[serde(with = "ts")]
    pub expires_at: Micros,
}

impl ExpiringLicense {
    /// The report's order: `expires_at`, then `license_key`, then `customer_id`.
    pub fn report_order(a: &Self, b: &Self) -> std::cmp::Ordering {
        a.expires_at
            .cmp(&b.expires_at)
            .then_with(|| a.license_key.cmp(&b.license_key))
            .then_with(|| a.customer_id.cmp(&b.customer_id))
    }
}

/// Per-state sums that add up across states.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub as_of: Option<Micros>,
    pub applied: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub excluded: u64,
    pub by_status: [u64; 4],
    /// Licenses by current plan and status (for the Prometheus gauges).
    pub by_plan_status: BTreeMap<String, [u64; 4]>,
    pub activation: ActivationCounts,
    pub activation_by_plan: BTreeMap<String, ActivationCounts>,
    /// Days `today − 2 × series_days ..= today`: DAV and validations by result.
    pub dav: BTreeMap<Day, u64>,
    pub validations: BTreeMap<Day, [u64; 6]>,
    pub at_risk: u64,
    pub utilization: BTreeMap<String, UtilizationSums>,
    /// Licenses by [`TtfvBucket`](crate::codes::TtfvBucket), in
    /// [`TtfvBucket::ALL`](crate::codes::TtfvBucket::ALL) order.
    pub ttfv_buckets: [u64; 5],
    /// Measured times to first validation, in microseconds.
    pub ttfv_measured: Vec<Micros>,
    pub mrr_current: i128,
    pub mrr_month_ago: i128,
    /// MRR movements over the days after the month-ago day (SPEC §8.2).
    pub movements: MovementSums,
    pub countries: BTreeMap<String, u64>,
    pub health_customers: u64,
    /// Customers by [`HealthBand`](crate::codes::HealthBand), in
    /// [`HealthBand::ALL`](crate::codes::HealthBand::ALL) order.
    pub health_bands: [u64; 4],
    pub churn_risk: Vec<ChurnRiskEntry>,
    pub upgrade_pipeline: Vec<UpgradeEntry>,
    /// Each without its `facts` (the state builds them so from their kept form): the report
    /// never shows them.
    pub notifications: Vec<Notification>,
    pub sharing_suspects: Vec<SharingSuspect>,
    pub expiring_licenses: Vec<ExpiringLicense>,
}

impl Aggregate {
    /// Adds another aggregate computed at the same `as_of` over disjoint customers.
    pub fn merge(&mut self, o: Aggregate) {
        self.as_of = self.as_of.max(o.as_of);
        self.applied += o.applied;
        self.rejected += o.rejected;
        self.duplicates += o.duplicates;
        self.excluded += o.excluded;
        for i in 0..4 {
            self.by_status[i] += o.by_status[i];
            self.health_bands[i] += o.health_bands[i];
        }
        for (p, v) in o.by_plan_status {
            let mine = self.by_plan_status.entry(p).or_default();
            for i in 0..4 {
                mine[i] += v[i];
            }
        }
        self.activation.add(&o.activation);
        for (p, a) in o.activation_by_plan {
            self.activation_by_plan.entry(p).or_default().add(&a);
        }
        for (d, n) in o.dav {
            *self.dav.entry(d).or_default() += n;
        }
        for (d, v) in o.validations {
            let mine = self.validations.entry(d).or_default();
            for i in 0..6 {
                mine[i] += v[i];
            }
        }
        self.at_risk += o.at_risk;
        for (p, u) in o.utilization {
            let m = self.utilization.entry(p).or_default();
            m.licenses += u.licenses;
            m.sum += u.sum;
            m.near_limit += u.near_limit;
            m.at_limit += u.at_limit;
            m.over_provisioned += u.over_provisioned;
        }
        for i in 0..5 {
            self.ttfv_buckets[i] += o.ttfv_buckets[i];
        }
        self.ttfv_measured.extend(o.ttfv_measured);
        self.mrr_current += o.mrr_current;
        self.mrr_month_ago += o.mrr_month_ago;
        self.movements.add(&o.movements);
        for (c, n) in o.countries {
            *self.countries.entry(c).or_default() += n;
        }
        self.health_customers += o.health_customers;
        self.churn_risk.extend(o.churn_risk);
        self.upgrade_pipeline.extend(o.upgrade_pipeline);
        self.notifications.extend(o.notifications);
        self.sharing_suspects.extend(o.sharing_suspects);
        self.expiring_licenses.extend(o.expiring_licenses);
    }
}

mod ts {
    use super::*;
    use serde::{Deserializer, Serializer};
    pub fn serialize<S: Serializer>(t: &Micros, s: S) -> Result<S::Ok, S::Error> {
        crate::time::serde_ts::serialize(t, s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Micros, D::Error> {
        let s = String::deserialize(d)?;
        crate::time::parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("bad timestamp"))
    }
}

mod opt_ts {
    use super::*;
    use serde::{Deserializer, Serializer};
    pub fn serialize<S: Serializer>(t: &Option<Micros>, s: S) -> Result<S::Ok, S::Error> {
        crate::time::serde_ts::option::serialize(t, s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Micros>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        Ok(s.and_then(|s| crate::time::parse_rfc3339(&s)))
    }
}
