//! Prometheus metrics: every `keypulse_*` family of SPEC §4, in one registry.
//!
//! Owns [`Metrics`], which owns its [`Registry`] (other adapters, such as the email outbox,
//! register their own families through [`Metrics::registry`]). Two kinds of families:
//! - counters (`*_total`) and the fold-latency histogram, bumped by the fold workers once
//!   per batch from per-batch tallies (never a registry lookup per event);
//! - gauges, set from the merged [`Aggregate`](crate::core::Aggregate) and its
//!   [`Report`](crate::core::Report) at each snapshot refresh
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
//!
//! The pieces: this file holds [`Metrics`] (its families), the label rules and the
//! exposition; `families.rs` creates and registers every family ([`Metrics::new`]), and
//! `gauges.rs` sets the business gauges from a report ([`Metrics::set_business_gauges`]).

use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::core::codes::MovementKind;
use crate::core::country::alpha2_slot;
use crate::core::event::{RejectReason, ValidationResult, EVENT_TYPES};
use crate::core::NotificationKind;

/// Most distinct `plan` label values exported; the other plans are summed as `other`.
pub const MAX_PLANS: usize = 20;

/// The label value a country is exported under: itself when it is two ASCII uppercase
/// letters, else `other`.
pub fn country_label(country: &str) -> &str {
    if alpha2_slot(country).is_some() {
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

mod families;
mod gauges;

impl Metrics {
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

/// Fixed label sets start at 0, so every series exists from the first scrape.
fn preset_fixed_labels(m: &Metrics) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Aggregate;

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
