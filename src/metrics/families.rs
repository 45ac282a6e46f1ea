//! Creating the families: [`Metrics::new`] registers every `keypulse_*` family of SPEC §4
//! (names, help texts and label names) in a fresh registry.
//!
//! Guarantees: every family is registered once, under its SPEC name with the `keypulse_`
//! prefix; the families with a fixed label set have every series at 0 from the start.

use std::sync::Mutex;

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Registry,
};

use super::{opts, preset_fixed_labels, Metrics};

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
        preset_fixed_labels(&m);
        Ok(m)
    }
}
