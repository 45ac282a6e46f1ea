//! The business gauges: [`Metrics::set_business_gauges`] replaces them with the figures of
//! a merged [`Aggregate`] and its [`Report`].
//!
//! Guarantees: the gauges are replaced as a whole under the lock [`Metrics::encode`] also
//! takes; a ratio that is `null` in the report is not exported (no NaN); at most
//! [`MAX_PLANS`] plans keep their name as a label, the others are summed as `other`.

use std::collections::BTreeMap;

use prometheus::GaugeVec;

use crate::core::codes::{HealthBand, MovementKind, Status, Trigger, TtfvBucket};
use crate::core::event::ValidationResult;
use crate::core::report::UtilizationSums;
use crate::core::{Aggregate, Report};

use super::{Metrics, MAX_PLANS};

impl Metrics {
    /// Replaces the business gauges with the figures of a merged aggregate and its report.
    pub fn set_business_gauges(&self, agg: &Aggregate, report: &Report) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let plans = PlanLabels::new(agg);

        self.licenses.reset();
        let mut by_plan_status: BTreeMap<&str, [u64; 4]> = BTreeMap::new();
        for (p, v) in &agg.by_plan_status {
            let e = by_plan_status.entry(plans.label(p)).or_default();
            for i in 0..4 {
                e[i] += v[i];
            }
        }
        for (p, v) in &by_plan_status {
            for s in Status::ALL {
                self.licenses
                    .with_label_values(&[p, s.as_str()])
                    .set(v[s.index()] as i64);
            }
        }

        for g in [
            &self.licenses_issued,
            &self.licenses_activated,
            &self.activation_cohort_7d,
            &self.activation_within_7d,
        ] {
            g.reset();
        }
        self.activation_by_plan_ratio.reset();
        self.activation_7d_by_plan_ratio.reset();
        let mut act: BTreeMap<&str, [u64; 4]> = BTreeMap::new();
        for (p, a) in &agg.activation_by_plan {
            let e = act.entry(plans.label(p)).or_default();
            e[0] += a.issued;
            e[1] += a.activated;
            e[2] += a.cohort_7d;
            e[3] += a.activated_within_7d;
        }
        for (p, a) in &act {
            self.licenses_issued
                .with_label_values(&[p])
                .set(a[0] as i64);
            self.licenses_activated
                .with_label_values(&[p])
                .set(a[1] as i64);
            self.activation_cohort_7d
                .with_label_values(&[p])
                .set(a[2] as i64);
            self.activation_within_7d
                .with_label_values(&[p])
                .set(a[3] as i64);
            if let Some(r) = ratio(a[1] as f64, a[0] as f64) {
                self.activation_by_plan_ratio.with_label_values(&[p]).set(r);
            }
            if let Some(r) = ratio(a[3] as f64, a[2] as f64) {
                self.activation_7d_by_plan_ratio
                    .with_label_values(&[p])
                    .set(r);
            }
        }
        set_opt(&self.activation_ratio, report.activation.rate);
        set_opt(&self.activation_7d_ratio, report.activation.rate_7d);

        self.dav_today.set(report.dav.today as i64);
        self.dav_last_7d.set(report.dav.last_7d as i64);
        self.dav_prev_7d.set(report.dav.prev_7d as i64);
        set_opt(&self.dav_trend_ratio, report.dav.trend_ratio);
        self.at_risk_licenses.set(report.at_risk_licenses as i64);

        let today = &report.validations.today;
        self.validations_today
            .with_label_values(&[ValidationResult::Valid.as_str()])
            .set((today.total - today.failed) as i64);
        for r in ValidationResult::FAILURES {
            let n = today.by_type.get(r.as_str()).copied().unwrap_or(0);
            self.validations_today
                .with_label_values(&[r.as_str()])
                .set(n as i64);
        }

        for g in [
            &self.domain_licenses,
            &self.domain_near_limit_licenses,
            &self.domain_at_limit_licenses,
            &self.domain_over_provisioned_licenses,
        ] {
            g.reset();
        }
        self.domain_utilization_mean_ratio.reset();
        let mut util: BTreeMap<&str, UtilizationSums> = BTreeMap::new();
        for (p, u) in &agg.utilization {
            let e = util.entry(plans.label(p)).or_default();
            e.licenses += u.licenses;
            e.sum += u.sum;
            e.near_limit += u.near_limit;
            e.at_limit += u.at_limit;
            e.over_provisioned += u.over_provisioned;
        }
        for (p, u) in &util {
            self.domain_licenses
                .with_label_values(&[p])
                .set(u.licenses as i64);
            self.domain_near_limit_licenses
                .with_label_values(&[p])
                .set(u.near_limit as i64);
            self.domain_at_limit_licenses
                .with_label_values(&[p])
                .set(u.at_limit as i64);
            self.domain_over_provisioned_licenses
                .with_label_values(&[p])
                .set(u.over_provisioned as i64);
            if let Some(r) = ratio(u.sum, u.licenses as f64) {
                self.domain_utilization_mean_ratio
                    .with_label_values(&[p])
                    .set(r);
            }
        }

        let t = &report.ttfv;
        for b in TtfvBucket::ALL {
            let n = match b {
                TtfvBucket::Under1h => t.under_1h,
                TtfvBucket::H1To24h => t.h1_to_24h,
                TtfvBucket::D1To7d => t.d1_to_7d,
                TtfvBucket::Over7d => t.over_7d,
                TtfvBucket::Pending => t.pending,
            };
            self.ttfv_licenses
                .with_label_values(&[b.as_str()])
                .set(n as i64);
        }
        set_opt(
            &self.ttfv_median_seconds,
            t.median_seconds.map(|s| s as f64),
        );

        self.mrr_cents.set(report.mrr.current_cents as f64);
        self.mrr_month_ago_cents
            .set(report.mrr.month_ago_cents as f64);
        set_opt(&self.mrr_mom_change_ratio, report.mrr.mom_change);

        for b in HealthBand::ALL {
            let n = report.health.bands.get(b.as_str()).copied().unwrap_or(0);
            self.health_customers
                .with_label_values(&[b.as_str()])
                .set(n as i64);
        }
        self.churn_risk_customers
            .set(report.health.churn_risk.len() as i64);
        let mut per_trigger = [0i64; Trigger::ALL.len()];
        for e in &report.upgrade_pipeline {
            for t in &e.triggers {
                if let Some(t) = Trigger::parse(t) {
                    per_trigger[t.index()] += 1;
                }
            }
        }
        for (t, n) in Trigger::ALL.into_iter().zip(per_trigger) {
            self.upgrade_pipeline_licenses
                .with_label_values(&[t.as_str()])
                .set(n);
        }
        let mv = &agg.movements;
        for k in MovementKind::ALL {
            self.mrr_movement_cents
                .with_label_values(&[k.as_str()])
                .set(mv.cents[k.index()] as f64);
            self.mrr_movements
                .with_label_values(&[k.as_str()])
                .set(mv.counts[k.index()] as i64);
        }
        self.sharing_suspects
            .set(report.sharing_suspects.len() as i64);
    }
}

/// Sets an optional figure (a label-less family): exported when it has a value, absent
/// when it is `null` in the report (never NaN).
fn set_opt(g: &GaugeVec, v: Option<f64>) {
    g.reset();
    if let Some(v) = v.filter(|v| v.is_finite()) {
        g.with_label_values(&[] as &[&str]).set(v);
    }
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den != 0.0).then(|| ((num / den) * 10_000.0).round() / 10_000.0)
}

/// The `plan` label of each plan: the [`MAX_PLANS`] with the most licenses keep their
/// name, the others are `other`.
struct PlanLabels {
    keep: std::collections::HashSet<String>,
}

impl PlanLabels {
    fn new(agg: &Aggregate) -> Self {
        let mut totals: Vec<(&String, u64)> = agg
            .by_plan_status
            .iter()
            .map(|(p, v)| (p, v.iter().sum()))
            .collect();
        totals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        PlanLabels {
            keep: totals
                .into_iter()
                .take(MAX_PLANS)
                .map(|(p, _)| p.clone())
                .collect(),
        }
    }

    fn label<'a>(&self, plan: &'a str) -> &'a str {
        if self.keep.contains(plan) && !plan.is_empty() {
            plan
        } else {
            "other"
        }
    }
}
