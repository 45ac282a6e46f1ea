//! The report's sums of one state: [`PartitionState::aggregate`] and [`PartitionState::report`].
//!
//! Owns the walk over a state's licenses, days and customers that fills an [`Aggregate`]
//! at `as_of` (SPEC §3); the report types and the finishing step stay in `report`.
//! Guarantees: the aggregate only reads the state; aggregates of states over disjoint
//! customers merge into the aggregate of one state holding them all.

use super::PartitionState;
use crate::codes::{Status, TtfvBucket};
use crate::config::CoreConfig;
use crate::health;
use crate::report::{
    ActivationCounts, Aggregate, ChurnRiskEntry, ExpiringLicense, Report, UpgradeEntry,
    UtilizationSums,
};
use crate::signals::Notification;
use crate::time::{day_of, Micros, DAY, HOUR, NEVER};

impl PartitionState {
    /// The mergeable sums of this state at `as_of` (`None`: before any event).
    pub fn aggregate(&self, as_of: Option<Micros>, cfg: &CoreConfig) -> Aggregate {
        let mut a = Aggregate {
            as_of,
            applied: self.counts.applied,
            rejected: self.counts.rejected,
            duplicates: self.counts.duplicates,
            excluded: self.counts.excluded,
            notifications: self.decided(false).collect(),
            ..Default::default()
        };
        // Already in the report's order (a stable sort, as the finish's): the finish's sort
        // of merged aggregates then only merges their runs, and states aggregated in
        // parallel sort in parallel. The report is the same: a stable sort of sorted runs,
        // joined in order, is the stable sort of what they join.
        a.notifications.sort_by(Notification::report_order);
        // Summed by plan position first, named once per plan at the end (not a `String`
        // and a map look-up per license).
        let mut by_plan = PerPlan::new(self.plans.len());
        for l in &self.licenses {
            a.by_status[l.status as usize] += 1;
            let plan = self.terms.get(l.terms).plan as usize;
            by_plan.status[plan].get_or_insert_default()[l.status as usize] += 1;
        }
        let Some(as_of) = as_of else {
            by_plan.into_aggregate(&self.plans, &mut a);
            return a;
        };
        let today = day_of(as_of);
        let week = cfg.activation_window_days as i64 * DAY;
        for (li, l) in self.licenses.iter().enumerate() {
            let terms = self.terms.get(l.terms);
            let plan = self.plan_name(terms.plan);
            let active = l.status == Status::Active;
            if l.issued_at() != NEVER {
                let mut c = ActivationCounts {
                    issued: 1,
                    ..Default::default()
                };
                c.activated = (l.first_activation != NEVER) as u64;
                if as_of.saturating_sub(l.issued_at()) >= week {
                    c.cohort_7d = 1;
                    c.activated_within_7d = (l.first_activation != NEVER
                        && l.first_activation.saturating_sub(l.issued_at()) <= week)
                        as u64;
                }
                a.activation.add(&c);
                by_plan.activation[terms.plan as usize]
                    .get_or_insert_default()
                    .add(&c);
                // time to first validation
                if l.first_valid != NEVER {
                    let t = l.first_valid.saturating_sub(l.issued_at()).max(0);
                    let bucket = if t < HOUR {
                        TtfvBucket::Under1h
                    } else if t < 24 * HOUR {
                        TtfvBucket::H1To24h
                    } else if t < 7 * DAY {
                        TtfvBucket::D1To7d
                    } else {
                        TtfvBucket::Over7d
                    };
                    a.ttfv_buckets[bucket.index()] += 1;
                    a.ttfv_measured.push(t);
                } else if as_of.saturating_sub(l.issued_at()) >= 7 * DAY {
                    a.ttfv_buckets[TtfvBucket::Over7d.index()] += 1;
                } else {
                    a.ttfv_buckets[TtfvBucket::Pending.index()] += 1;
                }
            }
            if !active {
                continue;
            }
            let risk_since = if l.last_validation != NEVER {
                l.last_validation
            } else {
                l.issued_or_seen()
            };
            if as_of.saturating_sub(risk_since) > cfg.at_risk_days as i64 * DAY {
                a.at_risk += 1;
            }
            if terms.domain_limit > 0 {
                let used = l.domains.len() as u64;
                let u = used as f64 / terms.domain_limit as f64;
                let s = by_plan.utilization[terms.plan as usize].get_or_insert_default();
                s.licenses += 1;
                s.sum += u;
                s.near_limit += (u >= cfg.near_limit_ratio) as u64;
                s.at_limit += (used >= terms.domain_limit) as u64;
                s.over_provisioned += (u < cfg.over_provisioned_ratio) as u64;
            }
            a.sharing_suspects
                .extend(self.sharing_suspect(li as u32, today, cfg));
            let notice_end = as_of.saturating_add(cfg.notify.expiry_notice_days as i64 * DAY);
            if l.expires_at != NEVER && l.expires_at > as_of && l.expires_at <= notice_end {
                a.expiring_licenses.push(ExpiringLicense {
                    license_key: l.key().to_string(),
                    customer_id: self.customers[l.customer as usize].id.to_string(),
                    plan: plan.to_string(),
                    expires_at: l.expires_at,
                });
            }
            let triggers = self.triggers(li as u32, today, cfg);
            if !triggers.is_empty() {
                a.upgrade_pipeline.push(UpgradeEntry {
                    license_key: l.key().to_string(),
                    customer_id: self.customers[l.customer as usize].id.to_string(),
                    triggers: triggers.to_strings(),
                });
            }
        }
        by_plan.into_aggregate(&self.plans, &mut a);
        let first_day = today - 2 * cfg.series_days as i32;
        let countries_from = today - cfg.countries_days as i32 + 1;
        for (&d, s) in self.days.range(first_day.min(countries_from)..=today) {
            if d >= first_day {
                a.dav.insert(d, s.dav);
                a.validations.insert(d, s.by_result);
            }
            if d >= countries_from {
                for (c, n) in s.countries.iter() {
                    match a.countries.get_mut(c) {
                        Some(total) => *total += n,
                        None => {
                            a.countries.insert(c.to_string(), n);
                        }
                    }
                }
            }
        }
        a.mrr_current = self.mrr.current;
        a.mrr_month_ago = self.mrr.through(today - cfg.mrr_month_days as i32);
        a.movements = self.movements.after(today - cfg.mrr_month_days as i32);
        for (ci, c) in self.customers.iter().enumerate() {
            if c.active_licenses == 0 {
                continue;
            }
            let h = self.customer_health(ci as u32, as_of, cfg);
            a.health_customers += 1;
            a.health_bands[health::band(h.score)] += 1;
            if h.score < cfg.health.churn_risk_below {
                a.churn_risk.push(ChurnRiskEntry {
                    customer_id: c.id.to_string(),
                    score: h.score,
                    reasons: h.reasons().iter().map(|r| r.to_string()).collect(),
                });
            }
        }
        a
    }

    /// The report of this state alone.
    pub fn report(&self, as_of: Option<Micros>, cfg: &CoreConfig) -> Report {
        self.aggregate(as_of, cfg).finish(cfg)
    }
}

/// The aggregate's per-plan sums of one state, by plan position (`None`: no license
/// counted for that plan, so the plan gets no entry, as with a map filled per license).
struct PerPlan {
    status: Vec<Option<[u64; 4]>>,
    activation: Vec<Option<ActivationCounts>>,
    utilization: Vec<Option<UtilizationSums>>,
}

impl PerPlan {
    fn new(plans: usize) -> Self {
        Self {
            status: vec![None; plans],
            activation: vec![None; plans],
            utilization: vec![None; plans],
        }
    }

    /// Adds the sums to `a`'s maps, under each plan's name.
    fn into_aggregate(self, plans: &[Box<str>], a: &mut Aggregate) {
        a.by_plan_status.extend(named(self.status, plans));
        a.activation_by_plan.extend(named(self.activation, plans));
        a.utilization.extend(named(self.utilization, plans));
    }
}

/// The sums present, each with its plan's name.
fn named<'p, T: 'p>(
    sums: Vec<Option<T>>,
    plans: &'p [Box<str>],
) -> impl Iterator<Item = (String, T)> + 'p {
    sums.into_iter()
        .zip(plans)
        .filter_map(|(s, p)| Some((p.to_string(), s?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::decode;

    fn fold(lines: &[String]) -> PartitionState {
        let (mut s, cfg, mut out) = (PartitionState::new(), CoreConfig::default(), Vec::new());
        for l in lines {
            let ev = decode(l.as_bytes()).unwrap_or_else(|e| panic!("{l}: {e:?}"));
            s.apply(&ev, &cfg, &mut out);
        }
        s
    }

    fn issued(key: &str, plan: &str, limit: u64, day: u32) -> String {
        format!(
            r#"{{"type":"license.issued","ts":"2026-10-{day:02}T10:00:00Z","customer_id":"c","license_key":"{key}","plan":"{plan}","domain_limit":{limit},"mrr_cents":100,"email":"a@example.com"}}"#
        )
    }

    /// A plan gets an entry in each per-plan sum only when a license counted there: the
    /// plan a license left has none, a license created on the fly (never issued) counts
    /// by status but not in activation, and utilization counts active licenses with a
    /// domain limit only.
    #[test]
    fn per_plan_sums_name_only_the_plans_counted() {
        let s = fold(&[
            issued("k1", "starter", 3, 1),
            issued("k1", "pro", 3, 2),
            issued("k2", "free", 0, 2),
            r#"{"type":"license.validated","ts":"2026-10-03T10:00:00Z","customer_id":"c","license_key":"k3","result":"valid"}"#.to_string(),
            r#"{"type":"license.activated","ts":"2026-10-03T11:00:00Z","customer_id":"c","license_key":"k1","domain":"a.example"}"#.to_string(),
        ]);
        let a = s.aggregate(s.watermark(), &CoreConfig::default());
        let plans = |m: Vec<&String>| m.into_iter().cloned().collect::<Vec<_>>();
        assert_eq!(
            plans(a.by_plan_status.keys().collect()),
            ["free", "pro", "unknown"]
        );
        assert_eq!(a.by_plan_status["pro"].iter().sum::<u64>(), 1);
        assert_eq!(
            plans(a.activation_by_plan.keys().collect()),
            ["free", "pro"]
        );
        assert_eq!(a.activation_by_plan["pro"].activated, 1);
        assert_eq!(a.activation_by_plan["free"].activated, 0);
        assert_eq!(plans(a.utilization.keys().collect()), ["pro"]);
        assert_eq!(a.utilization["pro"].licenses, 1);
        assert!((a.utilization["pro"].sum - 1.0 / 3.0).abs() < 1e-12);
        // Before any event: the same per-plan sums by status, nothing else.
        let before = s.aggregate(None, &CoreConfig::default());
        assert_eq!(before.by_plan_status, a.by_plan_status);
        assert!(before.activation_by_plan.is_empty() && before.utilization.is_empty());
    }
}
