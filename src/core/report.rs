//! The report document (SPEC §3): computed from a state at `as_of`, mergeable across states.
//!
//! Owns the two stages of a report. [`Aggregate`] holds sums and lists that add up across
//! partitions and instances (counts, per-day counts, the measured TTFV times, the lists);
//! [`Aggregate::finish`] turns one (or a merge of several) into the [`Report`] with its
//! ratios, medians and sorted lists. Guarantees: finishing the merge of the aggregates of
//! states over disjoint customers gives the report of one state holding them all; ratios
//! with a zero denominator are `null`; ratios are rounded to 4 decimals.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::codes::{HealthBand, MovementKind, Status, Trend, TtfvBucket};
use super::config::CoreConfig;
use super::event::ValidationResult;
use super::movements::MovementSums;
use super::signals::Notification;
use super::time::{day_of, format_day, Day, Micros, SECOND};

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
    /// Licenses by [`TtfvBucket`], in [`TtfvBucket::ALL`] order.
    pub ttfv_buckets: [u64; 5],
    /// Measured times to first validation, in microseconds.
    pub ttfv_measured: Vec<Micros>,
    pub mrr_current: i128,
    pub mrr_month_ago: i128,
    /// MRR movements over the days after the month-ago day (SPEC §8.2).
    pub movements: MovementSums,
    pub countries: BTreeMap<String, u64>,
    pub health_customers: u64,
    /// Customers by [`HealthBand`], in [`HealthBand::ALL`] order.
    pub health_bands: [u64; 4],
    pub churn_risk: Vec<ChurnRiskEntry>,
    pub upgrade_pipeline: Vec<UpgradeEntry>,
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

/// Rounds a ratio to 4 decimals; `None` when the denominator is 0.
fn ratio(num: f64, den: f64) -> Option<f64> {
    (den != 0.0).then(|| round4(num / den))
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

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
    pub kind: super::signals::NotificationKind,
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

fn by_type(counts: &[u64; 6]) -> BTreeMap<String, u64> {
    ValidationResult::FAILURES
        .iter()
        .map(|r| (r.as_str().to_string(), counts[r.index()]))
        .collect()
}

impl Aggregate {
    /// Turns the sums into the report document.
    pub fn finish(mut self, cfg: &CoreConfig) -> Report {
        let licenses = Licenses {
            total: self.by_status.iter().sum(),
            active: self.by_status[Status::Active as usize],
            by_status: Status::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), self.by_status[*s as usize]))
                .collect(),
        };
        let act = self.activation;
        let activation = Activation {
            issued: act.issued,
            activated: act.activated,
            rate: ratio(act.activated as f64, act.issued as f64),
            cohort_7d: act.cohort_7d,
            activated_within_7d: act.activated_within_7d,
            rate_7d: ratio(act.activated_within_7d as f64, act.cohort_7d as f64),
            by_plan: self
                .activation_by_plan
                .iter()
                .map(|(p, c)| {
                    (
                        p.clone(),
                        PlanActivation {
                            issued: c.issued,
                            activated: c.activated,
                            rate: ratio(c.activated as f64, c.issued as f64),
                            rate_7d: ratio(c.activated_within_7d as f64, c.cohort_7d as f64),
                        },
                    )
                })
                .collect(),
        };
        let today = self.as_of.map(day_of);
        let n = cfg.series_days as i32;
        let series_days: Vec<Day> = match today {
            Some(t) => (t - n + 1..=t).collect(),
            None => Vec::new(),
        };
        let dav_on = |d: Day| self.dav.get(&d).copied().unwrap_or(0);
        let (last_7d, prev_7d) = match today {
            Some(t) => (
                (t - 7..t).map(dav_on).sum(),
                (t - 14..t - 7).map(dav_on).sum(),
            ),
            None => (0, 0),
        };
        let trend_ratio = (prev_7d > 0).then(|| last_7d as f64 / prev_7d as f64);
        let trend = match trend_ratio {
            None => Trend::Unknown,
            Some(r) if r >= cfg.trend_growing_at => Trend::Growing,
            Some(r) if r <= cfg.trend_declining_at => Trend::Declining,
            Some(_) => Trend::Flat,
        };
        let dav = Dav {
            today: today.map_or(0, dav_on),
            series: series_days
                .iter()
                .map(|&d| DayCount {
                    day: format_day(d),
                    count: dav_on(d),
                })
                .collect(),
            last_7d,
            prev_7d,
            trend_ratio: trend_ratio.map(round4),
            trend: trend.as_str().to_string(),
        };
        let vals_on = |d: Day| self.validations.get(&d).copied().unwrap_or_default();
        let failed = |v: &[u64; 6]| v.iter().sum::<u64>() - v[ValidationResult::Valid.index()];
        let today_v = today.map(vals_on).unwrap_or_default();
        let validations = Validations {
            today: ValidationDay {
                total: today_v.iter().sum(),
                failed: failed(&today_v),
                failure_rate: ratio(failed(&today_v) as f64, today_v.iter().sum::<u64>() as f64),
                by_type: by_type(&today_v),
            },
            series: series_days
                .iter()
                .map(|&d| {
                    let v = vals_on(d);
                    ValidationSeriesDay {
                        day: format_day(d),
                        total: v.iter().sum(),
                        failed: failed(&v),
                        by_type: by_type(&v),
                    }
                })
                .collect(),
        };
        let domain_utilization = self
            .utilization
            .iter()
            .map(|(p, u)| {
                (
                    p.clone(),
                    Utilization {
                        licenses: u.licenses,
                        mean: ratio(u.sum, u.licenses as f64),
                        near_limit: u.near_limit,
                        at_limit: u.at_limit,
                        over_provisioned: u.over_provisioned,
                    },
                )
            })
            .collect();
        self.ttfv_measured.sort_unstable();
        let median = (!self.ttfv_measured.is_empty())
            .then(|| self.ttfv_measured[(self.ttfv_measured.len() - 1) / 2].div_euclid(SECOND));
        let ttfv = Ttfv {
            under_1h: self.ttfv_buckets[TtfvBucket::Under1h.index()],
            h1_to_24h: self.ttfv_buckets[TtfvBucket::H1To24h.index()],
            d1_to_7d: self.ttfv_buckets[TtfvBucket::D1To7d.index()],
            over_7d: self.ttfv_buckets[TtfvBucket::Over7d.index()],
            pending: self.ttfv_buckets[TtfvBucket::Pending.index()],
            median_seconds: median,
        };
        let mrr = Mrr {
            current_cents: self.mrr_current,
            month_ago_cents: self.mrr_month_ago,
            mom_change: ratio(
                (self.mrr_current - self.mrr_month_ago) as f64,
                self.mrr_month_ago as f64,
            ),
            movements: Movements::from(&self.movements),
        };
        self.sharing_suspects.sort_by(SharingSuspect::report_order);
        self.expiring_licenses
            .sort_by(ExpiringLicense::report_order);
        self.churn_risk.sort_by(|a, b| {
            a.score
                .cmp(&b.score)
                .then_with(|| a.customer_id.cmp(&b.customer_id))
        });
        self.upgrade_pipeline.sort_by(|a, b| {
            b.triggers
                .len()
                .cmp(&a.triggers.len())
                .then_with(|| a.license_key.cmp(&b.license_key))
                .then_with(|| a.customer_id.cmp(&b.customer_id))
        });
        self.notifications.sort_by(Notification::report_order);
        let bands = HealthBand::ALL
            .iter()
            .zip(self.health_bands)
            .map(|(k, v)| (k.as_str().to_string(), v))
            .collect();
        Report {
            as_of: self.as_of,
            events: Events {
                applied: self.applied,
                rejected: self.rejected,
                duplicates: self.duplicates,
                excluded: self.excluded,
            },
            licenses,
            activation,
            dav,
            at_risk_licenses: self.at_risk,
            validations,
            domain_utilization,
            ttfv,
            mrr,
            countries: self.countries,
            health: HealthSection {
                customers: self.health_customers,
                bands,
                churn_risk: self.churn_risk,
            },
            upgrade_pipeline: self.upgrade_pipeline,
            notifications: self.notifications.into_iter().map(Into::into).collect(),
            sharing_suspects: self.sharing_suspects,
            expiring_licenses: self.expiring_licenses,
        }
    }
}
