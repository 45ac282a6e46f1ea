//! Key sharing and revoked keys in use, in the fold (SPEC §8.3, §8.4).
//!
//! Owns what a `domain_mismatch` or `revoked` validation does to a license's §8 record,
//! the `key_sharing` and `revoked_use` decisions with their cooldowns, and the report's
//! `sharing_suspects` entry of a license. Guarantees: the decision's window ends on the
//! customer's clock day, the report's on its today; both count at most 64 domains; a
//! mismatch without a domain counts but neither adds a domain nor decides.

use super::PartitionState;
use crate::codes::{NotificationKind, Spec8Reason, Status};
use crate::config::CoreConfig;
use crate::report::SharingSuspect;
use crate::sharing::NAMED_DOMAINS;
use crate::signals::{cooldown_allows, Facts, Notification};
use crate::time::{day_of, Day, Micros, DAY};

impl PartitionState {
    /// A `domain_mismatch` validation of license `li` on `day`: recorded when its day is in
    /// the window kept (`in_window`, days from `floor`), and, when it carries a domain,
    /// checked for `key_sharing` at `at`, late or not.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_domain_mismatch(
        &mut self,
        li: u32,
        day: Day,
        domain: Option<&str>,
        floor: Day,
        in_window: bool,
        at: Micros,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let domain = domain.filter(|d| !d.is_empty());
        if in_window {
            self.license8_mut(li).mismatches.record(day, domain, floor);
        }
        if domain.is_some() {
            self.check_key_sharing(li, at, cfg, out);
        }
    }

    /// `key_sharing` when the active license has at least `min_domains` distinct
    /// mismatched domains over the window ending on its customer's clock day.
    fn check_key_sharing(
        &mut self,
        li: u32,
        at: Micros,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let l = &self.licenses[li as usize];
        let Some(rec) = l.license8() else {
            return;
        };
        if l.status != Status::Active {
            return;
        }
        let c = &self.customers[l.customer as usize];
        let to = day_of(c.clock);
        let from = to - cfg.sharing.window_days as i32 + 1;
        let distinct = rec.mismatches.distinct_in(from, to);
        if distinct < cfg.sharing.min_domains
            || !cooldown_allows(
                rec.key_sharing_at,
                at,
                cfg.notify.key_sharing_cooldown_days as i64 * DAY,
            )
        {
            return;
        }
        let n = Notification {
            kind: NotificationKind::KeySharing,
            to: cfg.notify.team_address.clone(),
            customer_id: c.id.to_string(),
            license_key: Some(l.key().to_string()),
            at,
            reasons: vec![Spec8Reason::DomainMismatch.as_str().to_string()],
            facts: Some(Facts::KeySharing {
                plan: self.plan_of(l).to_string(),
                domains: rec.mismatches.domains_in(from, to, NAMED_DOMAINS),
                distinct_domains: distinct,
                mismatches: rec.mismatches.mismatches_in(from, to),
                window_days: cfg.sharing.window_days,
            }),
        };
        let ci = l.customer;
        self.license8_mut(li).key_sharing_at = at;
        self.push_decision(ci, n, out);
    }

    /// A `revoked` validation of license `li`: `revoked_use`, whatever its status.
    pub(super) fn on_revoked_validation(
        &mut self,
        li: u32,
        at: Micros,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let last = self
            .license8(li)
            .map_or(crate::time::NEVER, |r| r.revoked_use_at);
        if !cooldown_allows(last, at, cfg.notify.revoked_use_cooldown_days as i64 * DAY) {
            return;
        }
        let l = &self.licenses[li as usize];
        let c = &self.customers[l.customer as usize];
        let mut reasons = vec![Spec8Reason::Revoked.as_str().to_string()];
        if c.payment_failed {
            reasons.push(Spec8Reason::PaymentFailed.as_str().to_string());
        }
        let n = Notification {
            kind: NotificationKind::RevokedUse,
            to: cfg.notify.team_address.clone(),
            customer_id: c.id.to_string(),
            license_key: Some(l.key().to_string()),
            at,
            reasons,
            facts: Some(Facts::RevokedUse {
                plan: self.plan_of(l).to_string(),
                status: l.status.as_str().to_string(),
                payment_failed: c.payment_failed,
            }),
        };
        let ci = l.customer;
        self.license8_mut(li).revoked_use_at = at;
        self.push_decision(ci, n, out);
    }

    /// The `sharing_suspects` entry of license `li` for a report on `today`, if it is one:
    /// active, with at least `min_domains` distinct mismatched domains over the window.
    pub(super) fn sharing_suspect(
        &self,
        li: u32,
        today: Day,
        cfg: &CoreConfig,
    ) -> Option<SharingSuspect> {
        let l = &self.licenses[li as usize];
        let rec = l.license8()?;
        if l.status != Status::Active {
            return None;
        }
        let from = today - cfg.sharing.window_days as i32 + 1;
        let domains = rec.mismatches.distinct_in(from, today);
        (domains >= cfg.sharing.min_domains).then(|| SharingSuspect {
            license_key: l.key().to_string(),
            customer_id: self.customers[l.customer as usize].id.to_string(),
            domains,
            mismatches: rec.mismatches.mismatches_in(from, today),
        })
    }
}
