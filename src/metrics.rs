//! Prometheus metrics: every `keypulse_*` family of SPEC §4, in one registry.
//!
//! Owns [`Metrics`], which owns its [`Registry`] (other adapters, such as the email outbox,
//! register their own families through [`Metrics::registry`]). Two kinds of families:
//! - counters (`*_total`) and the fold-latency histogram, bumped by the fold workers once
//!   per batch from per-batch tallies (never a registry lookup per event);
//! - gauges, set from the merged [`Aggregate`] and its [`Report`] at each snapshot refresh
//!   ([`Metrics::set_business_gauges`]), never by walking the state per event.
//!
//! Guarantees:
//! - no label carries a customer id, license key, email or domain: the label values are
//!   fixed enums (status, result, reason, kind, type, band, bucket, trigger), plans capped at
//!   [`MAX_PLANS`] distinct values (the rest `other`), countries only as two ASCII uppercase
//!   letters (the rest `other`), and topic/partition for the consumer lag;
//! - a ratio that is `null` in the report is not exported (no NaN);
//! - gauges are replaced as a whole under a lock that [`Metrics::encode`] also takes, so a
//!   scrape never sees half of a refresh.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::core::codes::{HealthBand, MovementKind, Status, Trigger, TtfvBucket};
use crate::core::event::{RejectReason, ValidationResult, EVENT_TYPES};
use crate::core::report::UtilizationSums;
use crate::core::{Aggregate, NotificationKind, Report};

/// Most distinct `plan` label values exported; the other plans are summed as `other`.
pub const MAX_PLANS: usize = 20;

/// The label value a country is exported under: itself when it is two ASCII uppercase
/// letters, else `other`.
pub fn country_label(country: &str) -> &str {
    let b = country.as_bytes();
    if b.len() == 2 && b.iter().all(|c| c.is_ascii_uppercase()) {
        country
    } else {
        "other"
    }
}

/// Every metric family of the service.
pub struct Metrics {
    /// The registry every family below is registered in (and the email adapter's too).
    registry: Registry,
    /// Serialises gauge refreshes against scrapes.
    lock: Mutex<()>,

    // --- business gauges, from the merged aggregate at each refresh ---
    /// `keypulse_licenses{plan,status}`: licenses by current plan and status.
    pub licenses: IntGaugeVec,
    /// `keypulse_licenses_issued{plan}`: licenses with a `license.issued`, by plan.
    pub licenses_issued: IntGaugeVec,
    /// `keypulse_licenses_activated{plan}`: issued licenses activated at least once.
    pub licenses_activated: IntGaugeVec,
    /// `keypulse_activation_cohort_7d{plan}`: licenses issued at least 7 days before `as_of`.
    pub activation_cohort_7d: IntGaugeVec,
    /// `keypulse_activation_within_7d{plan}`: of the cohort, activated within 7 days of issue.
    pub activation_within_7d: IntGaugeVec,
    /// `keypulse_activation_ratio`: activated / issued.
    pub activation_ratio: GaugeVec,
    /// `keypulse_activation_7d_ratio`: activated within 7 days / 7-day cohort.
    pub activation_7d_ratio: GaugeVec,
    /// `keypulse_activation_by_plan_ratio{plan}`.
    pub activation_by_plan_ratio: GaugeVec,
    /// `keypulse_activation_7d_by_plan_ratio{plan}`.
    pub activation_7d_by_plan_ratio: GaugeVec,
    /// `keypulse_dav_today`: distinct licenses validated today.
    pub dav_today: IntGauge,
    /// `keypulse_dav_last_7d`: Σ DAV over the 7 complete days before today.
    pub dav_last_7d: IntGauge,
    /// `keypulse_dav_prev_7d`: Σ DAV over the 7 days before those.
    pub dav_prev_7d: IntGauge,
    /// `keypulse_dav_trend_ratio`: last_7d / prev_7d.
    pub dav_trend_ratio: GaugeVec,
    /// `keypulse_at_risk_licenses`: active licenses silent for more than 30 days.
    pub at_risk_licenses: IntGauge,
    /// `keypulse_validations_today{result}`: today's validations by result.
    pub validations_today: IntGaugeVec,
    /// `keypulse_domain_licenses{plan}`: active licenses with a domain limit.
    pub domain_licenses: IntGaugeVec,
    /// `keypulse_domain_utilization_mean_ratio{plan}`: mean used / limit.
    pub domain_utilization_mean_ratio: GaugeVec,
    /// `keypulse_domain_near_limit_licenses{plan}`: utilization ≥ 0.8.
    pub domain_near_limit_licenses: IntGaugeVec,
    /// `keypulse_domain_at_limit_licenses{plan}`: used ≥ limit.
    pub domain_at_limit_licenses: IntGaugeVec,
    /// `keypulse_domain_over_provisioned_licenses{plan}`: utilization < 0.2.
    pub domain_over_provisioned_licenses: IntGaugeVec,
    /// `keypulse_ttfv_licenses{bucket}`: licenses by time-to-first-validation bucket.
    pub ttfv_licenses: IntGaugeVec,
    /// `keypulse_ttfv_median_seconds`: lower median of the measured times.
    pub ttfv_median_seconds: GaugeVec,
    /// `keypulse_mrr_cents`: current MRR.
    pub mrr_cents: Gauge,
    /// `keypulse_mrr_month_ago_cents`: MRR 30 days before today.
    pub mrr_month_ago_cents: Gauge,
    /// `keypulse_mrr_mom_change_ratio`: (current − month ago) / month ago.
    pub mrr_mom_change_ratio: GaugeVec,
    /// `keypulse_health_customers{band}`: scored customers by health band.
    pub health_customers: IntGaugeVec,
    /// `keypulse_churn_risk_customers`: customers below the churn-risk line.
    pub churn_risk_customers: IntGauge,
    /// `keypulse_upgrade_pipeline_licenses{trigger}`: licenses in the pipeline, by trigger.
    pub upgrade_pipeline_licenses: IntGaugeVec,
    /// `keypulse_mrr_movement_cents{kind}`: the report's `mrr.movements`, by kind (SPEC §8.2).
    pub mrr_movement_cents: GaugeVec,
    /// `keypulse_mrr_movements{kind}`: how many movements of each kind (SPEC §8.2).
    pub mrr_movements: IntGaugeVec,
    /// `keypulse_sharing_suspects`: licenses in `sharing_suspects` (SPEC §8.3).
    pub sharing_suspects: IntGauge,

    // --- counters, bumped by the fold workers ---
    /// `keypulse_validations_total{result}`.
    pub validations_total: IntCounterVec,
    /// `keypulse_validations_by_country_total{country}`.
    pub validations_by_country_total: IntCounterVec,
    /// `keypulse_notifications_decided_total{kind}`.
    pub notifications_decided_total: IntCounterVec,
    /// `keypulse_events_total{type}`: applied events by type (not duplicates, not rejections).
    pub events_total: IntCounterVec,
    /// `keypulse_events_rejected_total{reason}`.
    pub events_rejected_total: IntCounterVec,
    /// `keypulse_events_duplicate_total`.
    pub events_duplicate_total: IntCounter,
    /// `keypulse_events_excluded_total`: events of excluded customers (SPEC §8.1).
    pub events_excluded_total: IntCounter,
    /// `keypulse_messages_folded_total`: every message folded, partition rebuilds included.
    pub messages_folded_total: IntCounter,
    /// `keypulse_dead_letter_messages_total{outcome}`: copies to the dead-letter topic
    /// (`sent`, `failed`).
    pub dead_letter_messages_total: IntCounterVec,
    /// `keypulse_offset_commits_total{outcome}`: offset commits (`ok`, `failed`).
    pub offset_commits_total: IntCounterVec,

    // --- the service's own health ---
    /// `keypulse_consumer_lag_messages{topic,partition}`: high watermark − next offset to fold.
    pub consumer_lag_messages: IntGaugeVec,
    /// `keypulse_event_time_lag_seconds`: now − newest event `ts` folded.
    pub event_time_lag_seconds: Gauge,
    /// `keypulse_fold_latency_seconds`: from a batch's poll to the end of its fold.
    pub fold_latency_seconds: Histogram,
    /// `keypulse_state_licenses`: licenses held by this instance.
    pub state_licenses: IntGauge,
    /// `keypulse_state_customers`: customers held by this instance.
    pub state_customers: IntGauge,
    /// `keypulse_state_bytes`: approximate bytes of the fold state.
    pub state_bytes: IntGauge,
    /// `keypulse_state_partition_bytes{topic,partition}`: approximate bytes of the fold
    /// state of each assigned partition (set by the fold workers, removed on revocation).
    pub state_partition_bytes: IntGaugeVec,
    /// `keypulse_assigned_partitions`: partitions assigned to this instance.
    pub assigned_partitions: IntGauge,
    /// `keypulse_ready`: 1 when `/readyz` answers 200.
    pub ready: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("keypulse_{name}"), help)
}

macro_rules! reg {
    ($r:expr, $m:expr) => {{
        let m = $m;
        $r.register(Box::new(m.clone()))?;
        m
    }};
}

impl Metrics {
    /// Creates every family in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registry::new();
        let g = |n: &str, h: &str, l: &[&str]| IntGaugeVec::new(opts(n, h), l);
        let f = |n: &str, h: &str, l: &[&str]| GaugeVec::new(opts(n, h), l);
        let c = |n: &str, h: &str, l: &[&str]| IntCounterVec::new(opts(n, h), l);
        let m = Metrics {
            licenses: reg!(
                r,
                g(
                    "licenses",
                    "Licenses by current plan and status.",
                    &["plan", "status"]
                )?
            ),
            licenses_issued: reg!(
                r,
                g(
                    "licenses_issued",
                    "Licenses with a license.issued event, by plan.",
                    &["plan"]
                )?
            ),
            licenses_activated: reg!(
                r,
                g(
                    "licenses_activated",
                    "Issued licenses activated at least once, by plan.",
                    &["plan"]
                )?
            ),
            activation_cohort_7d: reg!(
                r,
                g(
                    "activation_cohort_7d",
                    "Licenses issued at least 7 days before as_of, by plan.",
                    &["plan"]
                )?
            ),
            activation_within_7d: reg!(
                r,
                g(
                    "activation_within_7d",
                    "Licenses of the 7-day cohort activated within 7 days of issue, by plan.",
                    &["plan"]
                )?
            ),
            activation_ratio: reg!(
                r,
                f("activation_ratio", "Activated / issued licenses.", &[])?
            ),
            activation_7d_ratio: reg!(
                r,
                f(
                    "activation_7d_ratio",
                    "Activated within 7 days / 7-day cohort.",
                    &[]
                )?
            ),
            activation_by_plan_ratio: reg!(
                r,
                f(
                    "activation_by_plan_ratio",
                    "Activated / issued licenses, by plan.",
                    &["plan"]
                )?
            ),
            activation_7d_by_plan_ratio: reg!(
                r,
                f(
                    "activation_7d_by_plan_ratio",
                    "Activated within 7 days / 7-day cohort, by plan.",
                    &["plan"]
                )?
            ),
            dav_today: reg!(
                r,
                IntGauge::with_opts(opts(
                    "dav_today",
                    "Distinct licenses validated today (UTC)."
                ))?
            ),
            dav_last_7d: reg!(
                r,
                IntGauge::with_opts(opts(
                    "dav_last_7d",
                    "Sum of daily active validations over the 7 complete days before today."
                ))?
            ),
            dav_prev_7d: reg!(
                r,
                IntGauge::with_opts(opts(
                    "dav_prev_7d",
                    "Sum of daily active validations over the 7 days before those."
                ))?
            ),
            dav_trend_ratio: reg!(r, f("dav_trend_ratio", "dav_last_7d / dav_prev_7d.", &[])?),
            at_risk_licenses: reg!(
                r,
                IntGauge::with_opts(opts(
                    "at_risk_licenses",
                    "Active licenses without a validation for more than 30 days."
                ))?
            ),
            validations_today: reg!(
                r,
                g(
                    "validations_today",
                    "Validations today (UTC) by result.",
                    &["result"]
                )?
            ),
            domain_licenses: reg!(
                r,
                g(
                    "domain_licenses",
                    "Active licenses with a domain limit, by plan.",
                    &["plan"]
                )?
            ),
            domain_utilization_mean_ratio: reg!(
                r,
                f(
                    "domain_utilization_mean_ratio",
                    "Mean domain utilization (used / limit), by plan.",
                    &["plan"]
                )?
            ),
            domain_near_limit_licenses: reg!(
                r,
                g(
                    "domain_near_limit_licenses",
                    "Licenses at 80% of their domain limit or more, by plan.",
                    &["plan"]
                )?
            ),
            domain_at_limit_licenses: reg!(
                r,
                g(
                    "domain_at_limit_licenses",
                    "Licenses at their domain limit, by plan.",
                    &["plan"]
                )?
            ),
            domain_over_provisioned_licenses: reg!(
                r,
                g(
                    "domain_over_provisioned_licenses",
                    "Licenses using under 20% of their domain limit, by plan.",
                    &["plan"]
                )?
            ),
            ttfv_licenses: reg!(
                r,
                g(
                    "ttfv_licenses",
                    "Issued licenses by time to first valid validation.",
                    &["bucket"]
                )?
            ),
            ttfv_median_seconds: reg!(
                r,
                f(
                    "ttfv_median_seconds",
                    "Lower median time to first valid validation, in seconds.",
                    &[]
                )?
            ),
            mrr_cents: reg!(
                r,
                Gauge::with_opts(opts(
                    "mrr_cents",
                    "Monthly recurring revenue of active licenses, in cents."
                ))?
            ),
            mrr_month_ago_cents: reg!(
                r,
                Gauge::with_opts(opts(
                    "mrr_month_ago_cents",
                    "MRR as booked up to 30 days before today, in cents."
                ))?
            ),
            mrr_mom_change_ratio: reg!(
                r,
                f(
                    "mrr_mom_change_ratio",
                    "Month-over-month MRR change ratio.",
                    &[]
                )?
            ),
            health_customers: reg!(
                r,
                g(
                    "health_customers",
                    "Customers with an active license, by health band.",
                    &["band"]
                )?
            ),
            churn_risk_customers: reg!(
                r,
                IntGauge::with_opts(opts(
                    "churn_risk_customers",
                    "Customers whose health score is below the churn-risk line."
                ))?
            ),
            upgrade_pipeline_licenses: reg!(
                r,
                g(
                    "upgrade_pipeline_licenses",
                    "Active licenses with an upgrade trigger, by trigger.",
                    &["trigger"]
                )?
            ),
            mrr_movement_cents: reg!(
                r,
                f(
                    "mrr_movement_cents",
                    "MRR movements over the days after the month-ago day, by kind, in cents.",
                    &["kind"]
                )?
            ),
            mrr_movements: reg!(
                r,
                g(
                    "mrr_movements",
                    "MRR movements over the days after the month-ago day, by kind.",
                    &["kind"]
                )?
            ),
            sharing_suspects: reg!(
                r,
                IntGauge::with_opts(opts(
                    "sharing_suspects",
                    "Active licenses with at least core.sharing.min_domains mismatched domains over 30 days."
                ))?
            ),
            validations_total: reg!(
                r,
                c(
                    "validations_total",
                    "license.validated events by result.",
                    &["result"]
                )?
            ),
            validations_by_country_total: reg!(
                r,
                c(
                    "validations_by_country_total",
                    "license.validated events by country (ISO alpha-2, else other).",
                    &["country"]
                )?
            ),
            notifications_decided_total: reg!(
                r,
                c(
                    "notifications_decided_total",
                    "Notifications decided by the fold, by kind.",
                    &["kind"]
                )?
            ),
            events_total: reg!(
                r,
                c(
                    "events_total",
                    "Applied events by type (duplicates and rejected messages are counted apart).",
                    &["type"]
                )?
            ),
            events_rejected_total: reg!(
                r,
                c(
                    "events_rejected_total",
                    "Rejected messages by reason.",
                    &["reason"]
                )?
            ),
            events_duplicate_total: reg!(
                r,
                IntCounter::with_opts(opts(
                    "events_duplicate_total",
                    "Events ignored for a repeated event_id."
                ))?
            ),
            events_excluded_total: reg!(
                r,
                IntCounter::with_opts(opts(
                    "events_excluded_total",
                    "Events of customers excluded by core.exclude (counted, nothing else)."
                ))?
            ),
            messages_folded_total: reg!(
                r,
                IntCounter::with_opts(opts(
                    "messages_folded_total",
                    "Messages folded, partition rebuilds included."
                ))?
            ),
            dead_letter_messages_total: reg!(
                r,
                c(
                    "dead_letter_messages_total",
                    "Copies of rejected messages to the dead-letter topic, by outcome.",
                    &["outcome"]
                )?
            ),
            offset_commits_total: reg!(
                r,
                c(
                    "offset_commits_total",
                    "Consumer offset commits, by outcome.",
                    &["outcome"]
                )?
            ),
            consumer_lag_messages: reg!(
                r,
                g(
                    "consumer_lag_messages",
                    "High watermark minus the next offset to fold, per assigned partition.",
                    &["topic", "partition"]
                )?
            ),
            event_time_lag_seconds: reg!(
                r,
                Gauge::with_opts(opts(
                    "event_time_lag_seconds",
                    "Wall clock minus the newest event ts folded, in seconds."
                ))?
            ),
            fold_latency_seconds: reg!(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "keypulse_fold_latency_seconds",
                        "Time from a batch of messages being polled to the end of its fold.",
                    )
                    .buckets(vec![
                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25, 0.5, 1.0, 2.5, 5.0
                    ])
                )?
            ),
            state_licenses: reg!(
                r,
                IntGauge::with_opts(opts(
                    "state_licenses",
                    "Licenses held in this instance's state."
                ))?
            ),
            state_customers: reg!(
                r,
                IntGauge::with_opts(opts(
                    "state_customers",
                    "Customers held in this instance's state."
                ))?
            ),
            state_bytes: reg!(
                r,
                IntGauge::with_opts(opts(
                    "state_bytes",
                    "Approximate bytes of this instance's fold state."
                ))?
            ),
            state_partition_bytes: reg!(
                r,
                g(
                    "state_partition_bytes",
                    "Approximate bytes of the fold state of each assigned partition.",
                    &["topic", "partition"]
                )?
            ),
            assigned_partitions: reg!(
                r,
                IntGauge::with_opts(opts(
                    "assigned_partitions",
                    "Partitions assigned to this instance."
                ))?
            ),
            ready: reg!(
                r,
                IntGauge::with_opts(opts(
                    "ready",
                    "1 when every assigned partition has caught up (/readyz is 200)."
                ))?
            ),
            registry: r,
            lock: Mutex::new(()),
        };
        // Fixed label sets start at 0, so every series exists from the first scrape.
        for v in ValidationResult::ALL {
            m.validations_total.with_label_values(&[v.as_str()]);
        }
        for t in EVENT_TYPES {
            m.events_total.with_label_values(&[t]);
        }
        for r in RejectReason::ALL {
            m.events_rejected_total.with_label_values(&[r.as_str()]);
        }
        for k in NotificationKind::ALL {
            m.notifications_decided_total
                .with_label_values(&[k.as_str()]);
        }
        for o in ["sent", "failed"] {
            m.dead_letter_messages_total.with_label_values(&[o]);
        }
        for k in MovementKind::ALL {
            m.mrr_movement_cents.with_label_values(&[k.as_str()]);
            m.mrr_movements.with_label_values(&[k.as_str()]);
        }
        for o in ["ok", "failed"] {
            m.offset_commits_total.with_label_values(&[o]);
        }
        Ok(m)
    }

    /// The registry, for adapters that add their own families.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every family.
    pub fn encode(&self) -> String {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = Vec::with_capacity(16 * 1024);
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

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

    /// Sets the consumer lag of every assigned partition, removing the others.
    pub fn set_consumer_lag(&self, lags: &[(String, i32, i64)]) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.consumer_lag_messages.reset();
        for (topic, partition, lag) in lags {
            self.consumer_lag_messages
                .with_label_values(&[topic.as_str(), &partition.to_string()])
                .set(*lag);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_are_alpha2_or_other() {
        assert_eq!(country_label("DE"), "DE");
        assert_eq!(country_label("de"), "other");
        assert_eq!(country_label("DEU"), "other");
        assert_eq!(country_label("ÄÖ"), "other");
        assert_eq!(country_label(""), "other");
    }

    #[test]
    fn plans_are_capped() {
        let mut agg = Aggregate::default();
        for i in 0..30 {
            agg.by_plan_status
                .insert(format!("p{i:02}"), [i + 1, 0, 0, 0]);
        }
        let m = Metrics::new().unwrap();
        let report = agg.clone().finish(&crate::core::CoreConfig::default());
        m.set_business_gauges(&agg, &report);
        let text = m.encode();
        let plans: std::collections::HashSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("keypulse_licenses{"))
            .filter_map(|l| l.split("plan=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(plans.len(), MAX_PLANS + 1);
        assert!(plans.contains("other"));
        assert!(plans.contains("p29"));
        assert!(!plans.contains("p00"));
        assert!(!text.contains("NaN"));
    }

    #[test]
    fn spec8_figures_are_exported() {
        // The v2 edge log with its exclusions: movements by kind, one sharing suspect.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/v2");
        let text = std::fs::read_to_string(format!("{path}/edge2.events.jsonl")).unwrap();
        let cfg = crate::config::Config::load(Some(std::path::Path::new(&format!(
            "{path}/keypulse.toml"
        ))))
        .unwrap()
        .core;
        let mut replay = crate::replay::Replay::new();
        replay.feed_reader(text.as_bytes(), &cfg, |_| {}).unwrap();
        let agg = replay.aggregate(&cfg);
        let report = agg.clone().finish(&cfg);
        let m = Metrics::new().unwrap();
        m.set_business_gauges(&agg, &report);
        let text = m.encode();
        let value = |series: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{series} missing"))
        };
        assert_eq!(
            value("keypulse_mrr_movement_cents{kind=\"expansion\"}"),
            12800.0
        );
        assert_eq!(
            value("keypulse_mrr_movement_cents{kind=\"reactivation\"}"),
            2900.0
        );
        assert_eq!(value("keypulse_mrr_movements{kind=\"contraction\"}"), 3.0);
        assert_eq!(value("keypulse_mrr_movements{kind=\"new\"}"), 1.0);
        assert_eq!(value("keypulse_sharing_suspects"), 1.0);
        // The excluded counter is the fold workers' (bumped per message); it starts at 0.
        assert_eq!(value("keypulse_events_excluded_total"), 0.0);
    }
}
