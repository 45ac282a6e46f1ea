//! The report document (SPEC §3): [`Report`] and its sections, as serialized.
//!
//! Owns the wire format of a report: field names, timestamps as RFC 3339 (`as_of` may be
//! `null`), maps as sorted objects. Guarantees: a report serializes and deserializes to
//! itself; the notifications are listed without the email's figures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{opt_ts, ts};
use super::{ChurnRiskEntry, ExpiringLicense, SharingSuspect, UpgradeEntry};
use crate::codes::MovementKind;
use crate::movements::MovementSums;
use crate::signals::Notification;
use crate::time::Micros;

/// The report document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(with = "opt_ts")]
    pub as_of: Option<Micros>,
    pub events: Events,
    pub licenses: Licenses,
    pub activation: Activation,
    pub dav: Dav,
    pub at_risk_licenses: u64,
    pub validations: Validations,
    pub domain_utilization: BTreeMap<String, Utilization>,
    pub ttfv: Ttfv,
    pub mrr: Mrr,
    pub countries: BTreeMap<String, u64>,
    pub health: HealthSection,
    pub upgrade_pipeline: Vec<UpgradeEntry>,
    pub notifications: Vec<NotificationEntry>,
    /// SPEC §8.3.
    pub sharing_suspects: Vec<SharingSuspect>,
    /// Not in SPEC (it allows more fields): licenses expiring within the notice window.
    #[serde(default)]
    pub expiring_licenses: Vec<ExpiringLicense>,
}

/// A notification as the report lists it (the email's figures left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationEntry {
    pub kind: crate::signals::NotificationKind,
    pub to: String,
    pub customer_id: String,
    pub license_key: Option<String>,
    #[serde(with = "ts")]
    pub at: Micros,
    pub reasons: Vec<String>,
}

impl From<Notification> for NotificationEntry {
    fn from(n: Notification) -> Self {
        Self {
            kind: n.kind,
            to: n.to,
            customer_id: n.customer_id,
            license_key: n.license_key,
            at: n.at,
            reasons: n.reasons,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Events {
    pub applied: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub excluded: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Licenses {
    pub total: u64,
    pub active: u64,
    pub by_status: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    pub issued: u64,
    pub activated: u64,
    pub rate: Option<f64>,
    pub cohort_7d: u64,
    pub activated_within_7d: u64,
    pub rate_7d: Option<f64>,
    pub by_plan: BTreeMap<String, PlanActivation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanActivation {
    pub issued: u64,
    pub activated: u64,
    pub rate: Option<f64>,
    pub rate_7d: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayCount {
    pub day: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dav {
    pub today: u64,
    pub series: Vec<DayCount>,
    pub last_7d: u64,
    pub prev_7d: u64,
    pub trend_ratio: Option<f64>,
    pub trend: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationDay {
    pub total: u64,
    pub failed: u64,
    pub failure_rate: Option<f64>,
    pub by_type: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationSeriesDay {
    pub day: String,
    pub total: u64,
    pub failed: u64,
    pub by_type: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validations {
    pub today: ValidationDay,
    pub series: Vec<ValidationSeriesDay>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Utilization {
    pub licenses: u64,
    pub mean: Option<f64>,
    pub near_limit: u64,
    pub at_limit: u64,
    pub over_provisioned: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ttfv {
    pub under_1h: u64,
    #[serde(rename = "1h_to_24h")]
    pub h1_to_24h: u64,
    #[serde(rename = "1d_to_7d")]
    pub d1_to_7d: u64,
    pub over_7d: u64,
    pub pending: u64,
    pub median_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mrr {
    pub current_cents: i128,
    pub month_ago_cents: i128,
    pub mom_change: Option<f64>,
    pub movements: Movements,
}

/// The MRR movements of the report (SPEC §8.2): `current = month_ago + net` exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Movements {
    pub new_cents: i128,
    pub expansion_cents: i128,
    pub contraction_cents: i128,
    pub churn_cents: i128,
    pub reactivation_cents: i128,
    pub net_cents: i128,
    /// Movements by kind.
    pub counts: BTreeMap<String, u64>,
}

impl From<&MovementSums> for Movements {
    fn from(s: &MovementSums) -> Self {
        let c = |k: MovementKind| s.cents[k.index()];
        Self {
            new_cents: c(MovementKind::New),
            expansion_cents: c(MovementKind::Expansion),
            contraction_cents: c(MovementKind::Contraction),
            churn_cents: c(MovementKind::Churn),
            reactivation_cents: c(MovementKind::Reactivation),
            net_cents: s.net(),
            counts: MovementKind::ALL
                .iter()
                .map(|k| (k.as_str().to_string(), s.counts[k.index()]))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSection {
    pub customers: u64,
    pub bands: BTreeMap<String, u64>,
    pub churn_risk: Vec<ChurnRiskEntry>,
}
