//! Upgrade triggers (SPEC §5): which licenses have them, and the upgrade decision.
//!
//! Owns [`Triggers`], the trigger rules over a license's windowed counts, the cheap
//! bounds that let most events skip the full check, the upgrade candidates of a customer,
//! and the upgrade notification with its facts. Guarantees: a license is emailed only
//! when active, with an email, with at least `upgrade_min_triggers` triggers, and outside
//! its upgrade cooldown.

use super::records::License;
use super::PartitionState;
use crate::codes::{Status, Trigger};
use crate::config::CoreConfig;
use crate::signals::{cooldown_allows, Facts, Notification, NotificationKind};
use crate::time::{day_of, Day, Micros, DAY};
use crate::window::DayCounts;

/// What the upgrade triggers of one license are computed from.
pub(super) struct TriggerInputs<'a> {
    license: &'a License,
    rate_limited: Option<&'a DayCounts>,
    features_denied: Option<&'a DayCounts>,
    invites: Option<&'a DayCounts>,
}

/// A set of upgrade triggers (SPEC §5), listed in the fixed order of [`Trigger::ALL`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Triggers(u8);

impl Triggers {
    fn insert(&mut self, t: Trigger) {
        self.0 |= 1 << t.index();
    }

    pub(crate) fn len(self) -> u32 {
        self.0.count_ones()
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The triggers, in order.
    pub(crate) fn iter(self) -> impl Iterator<Item = Trigger> {
        Trigger::ALL
            .into_iter()
            .filter(move |t| self.0 & (1 << t.index()) != 0)
    }

    pub(crate) fn to_strings(self) -> Vec<String> {
        self.iter().map(|t| t.as_str().to_string()).collect()
    }
}

impl PartitionState {
    pub(super) fn note_upgrade_candidate(&mut self, li: u32) {
        let c = &mut self.customers[self.licenses[li as usize].customer as usize];
        let candidates = &mut c.upgrade_candidates;
        if !candidates.contains(&li) {
            candidates.push(li);
        }
    }

    /// The upgrade triggers of a license over the window ending on `end_day`.
    pub(crate) fn triggers(&self, li: u32, end_day: Day, cfg: &CoreConfig) -> Triggers {
        let inputs = self.trigger_inputs(li);
        self.triggers_of(&inputs, end_day, cfg)
    }

    /// What the triggers of license `li` are computed from (all in its own and its
    /// customer's records).
    pub(super) fn trigger_inputs(&self, li: u32) -> TriggerInputs<'_> {
        let l = &self.licenses[li as usize];
        TriggerInputs {
            license: l,
            rate_limited: l.rate_limited(),
            features_denied: l.features_denied(),
            invites: self.customers[l.customer as usize].invites(),
        }
    }

    pub(super) fn triggers_of(
        &self,
        t: &TriggerInputs<'_>,
        end_day: Day,
        cfg: &CoreConfig,
    ) -> Triggers {
        let l = t.license;
        let from = end_day - cfg.upgrade.window_days as i32 + 1;
        let sum = |d: Option<&DayCounts>| d.map_or(0, |d| d.sum(from, end_day));
        let mut out = Triggers::default();
        if l.domain_limit > 0
            && l.domains.len() as f64 / l.domain_limit as f64 >= cfg.upgrade.domain_ratio
        {
            out.insert(Trigger::DomainLimitApproaching);
        }
        if sum(t.rate_limited) > cfg.upgrade.rate_limited_more_than as u64 {
            out.insert(Trigger::RateLimitFrequent);
        }
        if sum(t.features_denied) > cfg.upgrade.feature_denied_more_than as u64 {
            out.insert(Trigger::FeatureInterest);
        }
        if sum(t.invites) >= cfg.upgrade.invites_at_least as u64 {
            out.insert(Trigger::TeamGrowth);
        }
        out
    }

    /// An upper bound of the number of triggers [`Self::triggers_of`] can find for a window
    /// ending on `end_day`: a windowed trigger needs a count on a day of the window (unless
    /// its threshold is met by zero), so a table with no recent day cannot give it.
    pub(super) fn max_triggers(t: &TriggerInputs<'_>, end_day: Day, cfg: &CoreConfig) -> u32 {
        let from = end_day - cfg.upgrade.window_days as i32 + 1;
        let recent =
            |d: Option<&DayCounts>| d.and_then(|d| d.last_day()).is_some_and(|d| d >= from);
        let l = t.license;
        let domains = l.domain_limit > 0
            && l.domains.len() as f64 / l.domain_limit as f64 >= cfg.upgrade.domain_ratio;
        domains as u32
            + recent(t.rate_limited) as u32
            + recent(t.features_denied) as u32
            + (cfg.upgrade.invites_at_least == 0 || recent(t.invites)) as u32
    }

    /// Whether a license can have a trigger of its own (not counting `team_growth`) in a
    /// window ending on `end_day` or later.
    pub(super) fn may_trigger(t: &TriggerInputs<'_>, end_day: Day, cfg: &CoreConfig) -> bool {
        let from = end_day - cfg.upgrade.window_days as i32 + 1;
        let recent =
            |d: Option<&DayCounts>| d.and_then(|d| d.last_day()).is_some_and(|d| d >= from);
        let l = t.license;
        (l.domain_limit > 0 && !l.domains.is_empty())
            || recent(t.rate_limited)
            || recent(t.features_denied)
    }

    pub(super) fn check_upgrades(
        &mut self,
        ci: u32,
        at: Micros,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let end_day = day_of(self.customers[ci as usize].clock);
        let c = &mut self.customers[ci as usize];
        if c.upgrade_candidates.is_empty() {
            return;
        }
        // Filtered in place (no allocation per event); the order of candidates is kept.
        let mut candidates = std::mem::take(&mut c.upgrade_candidates);
        let mut kept = 0;
        for i in 0..candidates.len() {
            let li = candidates[i];
            let inputs = self.trigger_inputs(li);
            if !Self::may_trigger(&inputs, end_day, cfg) {
                continue; // re-noted by the next event that touches the license
            }
            candidates[kept] = li;
            kept += 1;
            let l = inputs.license;
            if l.status != Status::Active || l.email.is_none() {
                continue;
            }
            if Self::max_triggers(&inputs, end_day, cfg) < cfg.notify.upgrade_min_triggers {
                continue;
            }
            if !cooldown_allows(
                inputs.license.cooldowns().upgrade,
                at,
                cfg.notify.upgrade_cooldown_days as i64 * DAY,
            ) {
                continue;
            }
            let triggers = self.triggers_of(&inputs, end_day, cfg);
            if triggers.len() < cfg.notify.upgrade_min_triggers {
                continue;
            }
            let facts = self.upgrade_facts(li, end_day, cfg);
            self.licenses[li as usize].extras_mut().cooldowns.upgrade = at;
            let l = &self.licenses[li as usize];
            let n = Notification {
                kind: NotificationKind::Upgrade,
                to: l.email().unwrap_or_default().to_string(),
                customer_id: self.customers[ci as usize].id.to_string(),
                license_key: Some(l.key().to_string()),
                at,
                reasons: triggers.to_strings(),
                facts: Some(facts),
            };
            self.push_decision(ci, n, out);
        }
        candidates.truncate(kept);
        self.customers[ci as usize].upgrade_candidates = candidates;
    }

    pub(super) fn upgrade_facts(&self, li: u32, end_day: Day, cfg: &CoreConfig) -> Facts {
        let l = &self.licenses[li as usize];
        let from = end_day - cfg.upgrade.window_days as i32 + 1;
        let sum = |d: Option<&DayCounts>| d.map_or(0, |d| d.sum(from, end_day));
        Facts::Upgrade {
            plan: self.plans[l.plan as usize].to_string(),
            domains_used: l.domains.len() as u64,
            domain_limit: l.domain_limit,
            rate_limited_30d: sum(l.rate_limited()),
            features_denied_30d: sum(l.features_denied()),
            invites_30d: self.customers[l.customer as usize]
                .invites()
                .map_or(0, |i| i.sum(from, end_day)),
        }
    }
}
