//! The 0–100 health score of a customer, with the reasons that lowered it (SPEC §3).
//!
//! Owns the scoring rule. The inputs are gathered by the state into [`HealthInputs`], so
//! the rule itself is a plain function of numbers. Guarantees: the score never goes below
//! 0, and `reasons` lists the penalties that applied in the spec's order.

use serde::Serialize;

use super::codes::{HealthBand, HealthReason};
use super::config::HealthConfig;
use super::time::{Micros, DAY};

/// What the score is computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthInputs {
    /// The latest validation of any of its licenses (not `invalid_format`), or else the
    /// earliest issue time (first sight) over its licenses.
    pub last_activity: Micros,
    /// Σ used domains and Σ limits over its active licenses with a limit.
    pub domains_used: u64,
    pub domain_limits: u64,
    /// Validations (not `invalid_format`) over the last 7 days, today included, and the 7 before.
    pub validations_last_7d: u64,
    pub validations_prev_7d: u64,
    pub open_ticket: bool,
    pub payment_failed: bool,
}

/// A scored customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub score: u32,
    /// Each penalty that applied, with its points, in the spec's order.
    pub penalties: Vec<(&'static str, u32)>,
}

impl Health {
    pub fn reasons(&self) -> Vec<&'static str> {
        self.penalties.iter().map(|(r, _)| *r).collect()
    }
}

/// Scores a customer at `as_of`.
pub fn score(inputs: &HealthInputs, as_of: Micros, cfg: &HealthConfig) -> Health {
    let mut penalties = Vec::new();
    let idle = as_of.saturating_sub(inputs.last_activity);
    if idle > cfg.inactive_short_days as i64 * DAY {
        penalties.push((HealthReason::Inactive7d.as_str(), cfg.inactive_short_points));
    }
    if idle > cfg.inactive_long_days as i64 * DAY {
        penalties.push((HealthReason::Inactive30d.as_str(), cfg.inactive_long_points));
    }
    if inputs.domain_limits > 0
        && (inputs.domains_used as f64 / inputs.domain_limits as f64) < cfg.low_utilization_below
    {
        penalties.push((
            HealthReason::LowDomainUtilization.as_str(),
            cfg.low_utilization_points,
        ));
    }
    if inputs.validations_prev_7d > 0
        && (inputs.validations_last_7d as f64)
            < cfg.decline_below_ratio * inputs.validations_prev_7d as f64
    {
        penalties.push((HealthReason::ValidationDecline.as_str(), cfg.decline_points));
    }
    if inputs.open_ticket {
        penalties.push((HealthReason::OpenTicket.as_str(), cfg.open_ticket_points));
    }
    if inputs.payment_failed {
        penalties.push((
            HealthReason::PaymentFailed.as_str(),
            cfg.payment_failed_points,
        ));
    }
    let lost: u32 = penalties.iter().map(|(_, p)| *p).sum();
    Health {
        score: 100u32.saturating_sub(lost),
        penalties,
    }
}

/// The band a score falls in: 0 for 0–24, 1 for 25–49, 2 for 50–74, 3 for 75–100.
pub fn band(score: u32) -> usize {
    HealthBand::of(score).index()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> HealthInputs {
        HealthInputs {
            last_activity: 100 * DAY,
            domains_used: 5,
            domain_limits: 10,
            validations_last_7d: 10,
            validations_prev_7d: 10,
            open_ticket: false,
            payment_failed: false,
        }
    }

    #[test]
    fn a_healthy_customer_scores_100() {
        let h = score(&healthy(), 100 * DAY, &HealthConfig::default());
        assert_eq!(h.score, 100);
        assert!(h.penalties.is_empty());
    }

    #[test]
    fn penalties_add_up_in_order_and_floor_at_zero() {
        let inputs = HealthInputs {
            last_activity: 0,
            domains_used: 1,
            domain_limits: 10,
            validations_last_7d: 4,
            validations_prev_7d: 10,
            open_ticket: true,
            payment_failed: true,
        };
        let h = score(&inputs, 31 * DAY + 1, &HealthConfig::default());
        assert_eq!(
            h.reasons(),
            vec![
                "inactive_7d",
                "inactive_30d",
                "low_domain_utilization",
                "validation_decline",
                "open_ticket",
                "payment_failed"
            ]
        );
        assert_eq!(h.score, 0);
    }

    #[test]
    fn boundaries_are_strict() {
        let cfg = HealthConfig::default();
        let mut i = healthy();
        i.last_activity = 0;
        assert!(score(&i, 7 * DAY, &cfg).penalties.is_empty()); // exactly 7 days is not more
        assert_eq!(score(&i, 7 * DAY + 1, &cfg).reasons(), vec!["inactive_7d"]);
        let mut i = healthy();
        i.domains_used = 2; // 0.2 is not below 0.2
        assert!(score(&i, 100 * DAY, &cfg).penalties.is_empty());
        i.validations_last_7d = 5; // half is not less than half
        assert!(score(&i, 100 * DAY, &cfg).penalties.is_empty());
        i.validations_prev_7d = 0;
        i.validations_last_7d = 0;
        assert!(score(&i, 100 * DAY, &cfg).penalties.is_empty());
    }

    #[test]
    fn bands() {
        assert_eq!(
            [
                band(0),
                band(24),
                band(25),
                band(49),
                band(50),
                band(74),
                band(75),
                band(100)
            ],
            [0, 0, 1, 1, 2, 2, 3, 3]
        );
    }
}
