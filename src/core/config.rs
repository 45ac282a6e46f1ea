//! Every threshold, weight, window and cooldown of the fold, in one struct.
//!
//! Owns the numbers of SPEC §2–§5 and §8. `CoreConfig::default()` is the spec; the
//! configuration file (`[core]` in `keypulse.toml`, see `crate::config`) may change any of
//! them, and the report always reflects the values in force. Guarantees: `validate()`
//! names the first key whose value cannot work.

use serde::{Deserialize, Serialize};

/// Thresholds, weights, windows and cooldowns of the core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreConfig {
    /// Longest event (Kafka message value, or JSONL line without its line end), in
    /// bytes; a longer one is rejected as `too_large` without being parsed (SPEC §1).
    pub max_event_bytes: usize,
    /// Days of windowed state kept per customer (a late event older than this changes
    /// state but no windowed figure).
    pub window_days: u32,
    /// How long an `event_id` is remembered, in seconds.
    pub dedup_horizon_secs: u64,
    /// Days in the DAV and validation series.
    pub series_days: u32,
    /// Trend ratio at or above which DAV is `growing`.
    pub trend_growing_at: f64,
    /// Trend ratio at or below which DAV is `declining`.
    pub trend_declining_at: f64,
    /// Days without validation after which an active license is at risk.
    pub at_risk_days: u32,
    /// Days after issue within which an activation counts for `rate_7d`.
    pub activation_window_days: u32,
    /// Utilization at or above which a license is near its limit.
    pub near_limit_ratio: f64,
    /// Utilization below which a license is over-provisioned.
    pub over_provisioned_ratio: f64,
    /// Days of validations counted in `countries`.
    pub countries_days: u32,
    /// How many days back `mrr.month_ago_cents` looks.
    pub mrr_month_days: u32,
    /// Health score weights and thresholds.
    pub health: HealthConfig,
    /// Upgrade triggers.
    pub upgrade: UpgradeConfig,
    /// Notification rules and cooldowns.
    pub notify: NotifyConfig,
    /// Test, QA and internal accounts left out of every figure (SPEC §8.1).
    pub exclude: ExcludeConfig,
    /// Key-sharing suspects (SPEC §8.3).
    pub sharing: SharingConfig,
}

/// Excluded accounts (SPEC §8.1): an accepted event of a listed customer is counted as
/// excluded and does nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExcludeConfig {
    /// Exact customer ids.
    pub customer_ids: Vec<String>,
    /// Customer id prefixes.
    pub customer_prefixes: Vec<String>,
}

/// Key-sharing suspects (SPEC §8.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharingConfig {
    /// Distinct mismatched domains (over the window) that make a license a suspect and
    /// decide a `key_sharing` notification; 1 to 64 (the domains kept per license).
    pub min_domains: u32,
    /// Whole UTC days in the window over which mismatched domains are counted.
    pub window_days: u32,
}

/// The health score (SPEC §3 `health`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    pub inactive_short_days: u32,
    pub inactive_short_points: u32,
    pub inactive_long_days: u32,
    pub inactive_long_points: u32,
    pub low_utilization_below: f64,
    pub low_utilization_points: u32,
    /// `validation_decline` applies when the last 7 days are below this share of the 7 before.
    pub decline_below_ratio: f64,
    pub decline_points: u32,
    pub open_ticket_points: u32,
    pub payment_failed_points: u32,
    /// Customers scoring below this are in `churn_risk`.
    pub churn_risk_below: u32,
}

/// Upgrade triggers (SPEC §3 `upgrade_pipeline`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpgradeConfig {
    /// Days in the trigger windows.
    pub window_days: u32,
    /// `domain_limit_approaching` at used ≥ this × limit.
    pub domain_ratio: f64,
    /// `rate_limit_frequent` at more than this many `rate_limited` validations.
    pub rate_limited_more_than: u32,
    /// `feature_interest` at more than this many `feature.access_denied`.
    pub feature_denied_more_than: u32,
    /// `team_growth` at this many invites or more.
    pub invites_at_least: u32,
}

/// Notifications (SPEC §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Triggers an active license needs for an `upgrade` email.
    pub upgrade_min_triggers: u32,
    pub upgrade_cooldown_days: u32,
    pub renewal_cooldown_days: u32,
    pub churn_cooldown_days: u32,
    /// Where churn warnings go.
    pub team_address: String,
    /// The midnight `validation_decline` signal: the 7 days before need at least this many.
    pub decline_min_previous: u32,
    /// ... and the last 7 days at most this share of them.
    pub decline_at_most_ratio: f64,
    /// Cooldown of `key_sharing` per license (SPEC §8.6).
    pub key_sharing_cooldown_days: u32,
    /// Cooldown of `revoked_use` per license (SPEC §8.6).
    pub revoked_use_cooldown_days: u32,
    /// `expiring_soon`: a license is reminded at the first daily check at most this many
    /// days before its expiry (SPEC §8.5 N). 0 sends no reminder.
    pub expiry_notice_days: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            max_event_bytes: 65_536,
            window_days: 35,
            dedup_horizon_secs: 3_600,
            series_days: 14,
            trend_growing_at: 1.05,
            trend_declining_at: 0.95,
            at_risk_days: 30,
            activation_window_days: 7,
            near_limit_ratio: 0.8,
            over_provisioned_ratio: 0.2,
            countries_days: 30,
            mrr_month_days: 30,
            health: HealthConfig::default(),
            upgrade: UpgradeConfig::default(),
            notify: NotifyConfig::default(),
            exclude: ExcludeConfig::default(),
            sharing: SharingConfig::default(),
        }
    }
}

impl Default for SharingConfig {
    fn default() -> Self {
        Self {
            min_domains: 3,
            window_days: 30,
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            inactive_short_days: 7,
            inactive_short_points: 20,
            inactive_long_days: 30,
            inactive_long_points: 30,
            low_utilization_below: 0.2,
            low_utilization_points: 15,
            decline_below_ratio: 0.5,
            decline_points: 20,
            open_ticket_points: 10,
            payment_failed_points: 25,
            churn_risk_below: 50,
        }
    }
}

impl Default for UpgradeConfig {
    fn default() -> Self {
        Self {
            window_days: 30,
            domain_ratio: 0.8,
            rate_limited_more_than: 10,
            feature_denied_more_than: 3,
            invites_at_least: 3,
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            upgrade_min_triggers: 2,
            upgrade_cooldown_days: 30,
            renewal_cooldown_days: 7,
            churn_cooldown_days: 7,
            team_address: "customer-success@example.com".into(),
            decline_min_previous: 10,
            decline_at_most_ratio: 0.5,
            key_sharing_cooldown_days: 30,
            revoked_use_cooldown_days: 30,
            expiry_notice_days: 7,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("core.{key}: {problem}")]
pub struct InvalidValue {
    pub key: &'static str,
    pub problem: String,
}

impl CoreConfig {
    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let bad = |key: &'static str, problem: &str| {
            Err(InvalidValue {
                key,
                problem: problem.to_string(),
            })
        };
        if self.max_event_bytes < 64 {
            return bad("max_event_bytes", "must be at least 64");
        }
        // Windows are bounded by the per-license 64-day bitmap and the trigger windows.
        if !(30..=60).contains(&self.window_days) {
            return bad("window_days", "must be between 30 and 60");
        }
        let longest = [
            self.series_days * 2,
            self.countries_days,
            self.upgrade.window_days,
            self.health.inactive_short_days,
            self.mrr_month_days,
            self.sharing.window_days,
            15,
        ];
        if longest.iter().any(|d| *d > self.window_days) {
            return bad(
                "window_days",
                "must cover series_days × 2, countries_days, mrr_month_days, \
                 upgrade.window_days and sharing.window_days",
            );
        }
        for (key, v) in [
            ("series_days", self.series_days),
            ("countries_days", self.countries_days),
            ("upgrade.window_days", self.upgrade.window_days),
            ("sharing.window_days", self.sharing.window_days),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1");
            }
        }
        for (key, v) in [
            ("trend_growing_at", self.trend_growing_at),
            ("trend_declining_at", self.trend_declining_at),
            ("near_limit_ratio", self.near_limit_ratio),
            ("over_provisioned_ratio", self.over_provisioned_ratio),
            (
                "health.low_utilization_below",
                self.health.low_utilization_below,
            ),
            (
                "health.decline_below_ratio",
                self.health.decline_below_ratio,
            ),
            ("upgrade.domain_ratio", self.upgrade.domain_ratio),
            (
                "notify.decline_at_most_ratio",
                self.notify.decline_at_most_ratio,
            ),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(key, "must be a finite number ≥ 0");
            }
        }
        if self.trend_declining_at > self.trend_growing_at {
            return bad("trend_declining_at", "must not exceed trend_growing_at");
        }
        if self.health.churn_risk_below > 101 {
            return bad("health.churn_risk_below", "must be at most 101");
        }
        let addr = &self.notify.team_address;
        if addr.is_empty() || addr.contains(['\r', '\n']) || !addr.contains('@') {
            return bad(
                "notify.team_address",
                "must be an email address on one line",
            );
        }
        if !(1..=MAX_SHARING_DOMAINS).contains(&self.sharing.min_domains) {
            return bad("sharing.min_domains", "must be between 1 and 64");
        }
        for (key, list) in [
            ("exclude.customer_ids", &self.exclude.customer_ids),
            ("exclude.customer_prefixes", &self.exclude.customer_prefixes),
        ] {
            if list.iter().any(String::is_empty) {
                return bad(key, "must not contain an empty string");
            }
        }
        Ok(())
    }
}

/// The most mismatched domains kept (and counted) per license (SPEC §8.3).
pub const MAX_SHARING_DOMAINS: u32 = 64;
