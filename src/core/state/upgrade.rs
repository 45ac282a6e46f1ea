//! Upgrade triggers (SPEC §5): which licenses have them, and the upgrade decision.
//!
//! Owns [`Triggers`], the trigger rules over a license's windowed counts, the cheap bound
//! that lets most checks skip the sums, the check of one license with where it waits next
//! (which licenses are checked is `watch.rs`'s), and the upgrade notification with its
//! facts. Guarantees: a license is emailed only when active, with an email, with at least
//! `upgrade_min_triggers` triggers, and outside its upgrade cooldown.

use super::records::License;
use super::watch::Wait;
use super::PartitionState;
use crate::codes::{Status, Trigger};
use crate::config::CoreConfig;
use crate::signals::{cooldown_allows, Facts, Notification, NotificationKind};
use crate::time::{Day, Micros, DAY};
use crate::window::DayCounts;

/// What the upgrade triggers of one license are computed from.
pub(super) struct TriggerInputs<'a> {
    license: &'a License,
    /// The license's domain limit (from its terms).
    domain_limit: u64,
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

    pub(crate) fn contains(self, t: Trigger) -> bool {
        self.0 & (1 << t.index()) != 0
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
            domain_limit: self.terms_of(l).domain_limit,
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
        if t.domain_limit > 0
            && l.domains.len() as f64 / t.domain_limit as f64 >= cfg.upgrade.domain_ratio
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

    /// Whether an invite just counted on `day` may have turned `team_growth` on, for windows
    /// ending on `end_day`. Only an invite raises the count, so if it was below the
    /// threshold before this one, it now equals it (`watch.rs` re-checks the team watch then).
    pub(super) fn invite_turned_team_on(
        invites: &DayCounts,
        day: Day,
        end_day: Day,
        cfg: &CoreConfig,
    ) -> bool {
        let at_least = cfg.upgrade.invites_at_least as u64;
        let from = end_day - cfg.upgrade.window_days as i32 + 1;
        at_least > 0 && day >= from && invites.sum(from, end_day) == at_least
    }

    /// An upper bound of the number of triggers [`Self::triggers_of`] can find for a window
    /// ending on `end_day`: a windowed trigger needs a count on a day of the window (unless
    /// its threshold is met by zero), so a table with no recent day cannot give it.
    pub(super) fn max_triggers(t: &TriggerInputs<'_>, end_day: Day, cfg: &CoreConfig) -> u32 {
        let from = end_day - cfg.upgrade.window_days as i32 + 1;
        let recent =
            |d: Option<&DayCounts>| d.and_then(|d| d.last_day()).is_some_and(|d| d >= from);
        let l = t.license;
        let domains = t.domain_limit > 0
            && l.domains.len() as f64 / t.domain_limit as f64 >= cfg.upgrade.domain_ratio;
        domains as u32
            + recent(t.rate_limited) as u32
            + recent(t.features_denied) as u32
            + (cfg.upgrade.invites_at_least == 0 || recent(t.invites)) as u32
    }

    /// Decides the upgrade of license `li` (of customer `ci`) after an event at `at`, its
    /// trigger windows ending on `end_day`, and says where it waits for the next check that
    /// another license's event may make (`watch.rs`).
    pub(super) fn check_upgrade(
        &mut self,
        ci: u32,
        li: u32,
        at: Micros,
        end_day: Day,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) -> Wait {
        let inputs = self.trigger_inputs(li);
        let l = inputs.license;
        if l.status != Status::Active || l.email.is_none() {
            return Wait::Own;
        }
        let last = l.cooldowns().upgrade;
        let cooldown = cfg.notify.upgrade_cooldown_days as i64 * DAY;
        if !cooldown_allows(last, at, cooldown) {
            return Wait::Due(last);
        }
        let min = cfg.notify.upgrade_min_triggers;
        // Cheap bound first: below `min` − 1 possible triggers, not even `team_growth`
        // turning on could make it fire; only an event of its own can.
        if Self::max_triggers(&inputs, end_day, cfg) + 1 < min {
            return Wait::Own;
        }
        let triggers = self.triggers_of(&inputs, end_day, cfg);
        if triggers.len() >= min {
            self.fire_upgrade(ci, li, triggers, at, end_day, cfg, out);
            return Wait::Due(at);
        }
        if !triggers.contains(Trigger::TeamGrowth) && triggers.len() + 1 >= min {
            Wait::Team
        } else {
            Wait::Own
        }
    }

    /// Decides the upgrade email of license `li` with its `triggers`, and starts its cooldown.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fire_upgrade(
        &mut self,
        ci: u32,
        li: u32,
        triggers: Triggers,
        at: Micros,
        end_day: Day,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let facts = self.upgrade_facts(li, end_day, cfg);
        self.licenses[li as usize].extras_mut().cooldowns.upgrade = at;
        let l = &self.licenses[li as usize];
        let n = Notification {
            kind: NotificationKind::Upgrade,
            to: self.email_of(li).unwrap_or_default().to_string(),
            customer_id: self.customers[ci as usize].id.to_string(),
            license_key: Some(l.key().to_string()),
            at,
            reasons: triggers.to_strings(),
            facts: Some(facts),
        };
        self.push_decision(ci, n, out);
    }

    pub(super) fn upgrade_facts(&self, li: u32, end_day: Day, cfg: &CoreConfig) -> Facts {
        let l = &self.licenses[li as usize];
        let from = end_day - cfg.upgrade.window_days as i32 + 1;
        let sum = |d: Option<&DayCounts>| d.map_or(0, |d| d.sum(from, end_day));
        let terms = self.terms_of(l);
        Facts::Upgrade {
            plan: self.plan_name(terms.plan).to_string(),
            domains_used: l.domains.len() as u64,
            domain_limit: terms.domain_limit,
            rate_limited_30d: sum(l.rate_limited()),
            features_denied_30d: sum(l.features_denied()),
            invites_30d: self.customers[l.customer as usize]
                .invites()
                .map_or(0, |i| i.sum(from, end_day)),
        }
    }
}
