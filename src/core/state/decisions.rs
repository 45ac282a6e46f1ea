//! Renewal and churn decisions, the daily check at each midnight, cooldowns and health.
//!
//! Owns when a renewal or churn warning is decided (SPEC §5), the midnights a customer's
//! clock passes (by its own events, or by the wall clock in live mode), the stamping of
//! the per-license cooldown instants, and the gathering of a customer's health inputs.
//! Guarantees: every decision is pushed both to the caller's list and to its customer's
//! own record, in decision order; a clock jump runs at most the midnights that can still
//! fire.

use super::PartitionState;
use crate::codes::{ChurnSignal, RenewalReason, Status};
use crate::config::CoreConfig;
use crate::expiry::CheckRun;
use crate::health::{self, Health, HealthInputs};
use crate::signals::{cooldown_allows, Facts, LicenseFacts, Notification, NotificationKind};
use crate::time::{day_of, format_rfc3339, midnight, Day, Micros, DAY, NEVER};

impl PartitionState {
    pub(super) fn decide_renewal(
        &mut self,
        li: u32,
        at: Micros,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let l = &self.licenses[li as usize];
        let Some(email) = self.email_of(li) else {
            return;
        };
        if !cooldown_allows(
            l.cooldowns().renewal,
            at,
            cfg.notify.renewal_cooldown_days as i64 * DAY,
        ) {
            return;
        }
        let n = Notification {
            kind: NotificationKind::Renewal,
            to: email.to_string(),
            customer_id: self.customers[l.customer as usize].id.to_string(),
            license_key: Some(l.key().to_string()),
            at,
            reasons: vec![RenewalReason::Expired.as_str().to_string()],
            facts: Some(Facts::Renewal {
                plan: self.plan_of(l).to_string(),
                expires_at: (l.expires_at != NEVER).then(|| format_rfc3339(l.expires_at)),
            }),
        };
        let ci = l.customer;
        self.licenses[li as usize].extras_mut().cooldowns.renewal = at;
        self.push_decision(ci, n, out);
    }

    pub(super) fn decide_churn(
        &mut self,
        ci: u32,
        signal: ChurnSignal,
        at: Micros,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let c = &self.customers[ci as usize];
        if c.active_licenses == 0 {
            return;
        }
        if !cooldown_allows(
            c.last_churn_at(),
            at,
            cfg.notify.churn_cooldown_days as i64 * DAY,
        ) {
            return;
        }
        let health = self.customer_health(ci, at, cfg);
        let c = &self.customers[ci as usize];
        let licenses = c
            .licenses
            .iter()
            .map(|&li| {
                let l = &self.licenses[li as usize];
                let terms = self.terms_of(l);
                LicenseFacts {
                    license_key: l.key().to_string(),
                    plan: self.plan_name(terms.plan).to_string(),
                    status: l.status.as_str().to_string(),
                    mrr_cents: terms.mrr_cents,
                }
            })
            .collect::<Vec<_>>();
        let mrr_cents = self
            .active_mrr(ci)
            .clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        let n = Notification {
            kind: NotificationKind::ChurnWarning,
            to: cfg.notify.team_address.clone(),
            customer_id: c.id.to_string(),
            license_key: None,
            at,
            reasons: vec![signal.as_str().to_string()],
            facts: Some(Facts::ChurnWarning {
                score: health.score,
                penalties: health
                    .penalties
                    .iter()
                    .map(|(r, p)| (r.to_string(), *p))
                    .collect(),
                licenses,
                mrr_cents,
            }),
        };
        self.customers[ci as usize].extras_mut().last_churn_at = at;
        self.push_decision(ci, n, out);
    }

    /// Hands a decision of customer `ci` to the caller and keeps it in the customer's record.
    pub(super) fn push_decision(&mut self, ci: u32, n: Notification, out: &mut Vec<Notification>) {
        out.push(n.clone());
        let kept = self.kept_form(ci, n);
        self.customers[ci as usize].extras_mut().keep(kept);
    }

    /// Runs the daily check of customer `ci` at each midnight from `first` to `last`:
    /// the expiry reminders (SPEC §8.5), then the `validation_decline` signal.
    pub(super) fn run_midnights(
        &mut self,
        ci: u32,
        first: Day,
        last: Day,
        run: CheckRun,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        // Reminders are computed for the whole range at once, with or without validations.
        self.remind_expiries(ci, first, last, run, cfg, out);
        // With no validation in the 14 days before a midnight the check cannot fire, so the
        // loop stops there however far the clock jumps.
        let Some(last_validation_day) = self.customers[ci as usize].validations.last_day() else {
            return;
        };
        let last = last.min(last_validation_day.saturating_add(15));
        for d in first..=last {
            let c = &self.customers[ci as usize];
            if c.active_licenses == 0 {
                continue;
            }
            let last7 = c.validations.sum(d - 7, d - 1);
            let prev7 = c.validations.sum(d - 14, d - 8);
            if prev7 >= cfg.notify.decline_min_previous as u64
                && (last7 as f64) <= cfg.notify.decline_at_most_ratio * prev7 as f64
            {
                self.decide_churn(ci, ChurnSignal::ValidationDecline, midnight(d), cfg, out);
            }
        }
    }

    /// Moves every customer's clock to the latest wall-clock midnight at or before `now`,
    /// running the daily checks it passes (SPEC §5, live mode only).
    pub fn advance_to(&mut self, now: Micros, cfg: &CoreConfig, out: &mut Vec<Notification>) {
        let today = day_of(now);
        for ci in 0..self.customers.len() as u32 {
            let clock = self.customers[ci as usize].clock;
            if clock == NEVER || day_of(clock) >= today {
                continue;
            }
            self.run_midnights(ci, day_of(clock) + 1, today, CheckRun::Tick, cfg, out);
            self.customers[ci as usize].clock = midnight(today);
            self.dirty.mark(ci);
        }
        self.advance_max_day(today, cfg);
    }

    /// The health of customer `ci` at `as_of`, or `None` without an active license.
    pub(crate) fn customer_health(&self, ci: u32, as_of: Micros, cfg: &CoreConfig) -> Health {
        let c = &self.customers[ci as usize];
        let mut last_validation = NEVER;
        let mut earliest_seen = i64::MAX;
        let (mut used, mut limits) = (0u64, 0u64);
        for &li in &c.licenses {
            let l = &self.licenses[li as usize];
            last_validation = last_validation.max(l.last_validation);
            earliest_seen = earliest_seen.min(l.issued_or_seen());
            let limit = self.terms_of(l).domain_limit;
            if l.status == Status::Active && limit > 0 {
                used = used.saturating_add(l.domains.len() as u64);
                limits = limits.saturating_add(limit);
            }
        }
        let today = day_of(as_of);
        let inputs = HealthInputs {
            last_activity: if last_validation != NEVER {
                last_validation
            } else {
                earliest_seen
            },
            domains_used: used,
            domain_limits: limits,
            validations_last_7d: c.validations.sum(today - 6, today),
            validations_prev_7d: c.validations.sum(today - 13, today - 7),
            open_ticket: c.open_tickets() > 0,
            payment_failed: c.payment_failed,
        };
        health::score(&inputs, as_of, &cfg.health)
    }
}
