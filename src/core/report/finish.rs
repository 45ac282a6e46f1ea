//! Finishing a report: [`Aggregate::finish`] turns the sums into the [`Report`] with its
//! ratios, medians and sorted lists.
//!
//! Guarantees: ratios with a zero denominator are `null`; ratios are rounded to 4
//! decimals; lists come out in their report order, so finishing the merge of aggregates
//! over disjoint customers gives the report of one state holding them all.

use std::collections::BTreeMap;

use super::*;
use crate::codes::{HealthBand, Status, Trend, TtfvBucket};
use crate::config::CoreConfig;
use crate::event::ValidationResult;
use crate::time::{day_of, format_day, Day, SECOND};

/// Rounds a ratio to 4 decimals; `None` when the denominator is 0.
fn ratio(num: f64, den: f64) -> Option<f64> {
    (den != 0.0).then(|| round4(num / den))
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
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
