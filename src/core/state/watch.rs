//! The upgrade watch: which licenses the upgrade check after an event looks at (SPEC §5).
//!
//! SPEC §5 checks every active license of a customer after each of its events. Walking them
//! all would make an event's cost grow with the customer's licenses, so this module keeps,
//! per customer, the few licenses that another license's event could make fire, and the
//! check looks only at those and at the event's own license. Owns [`Watched`],
//! [`UpgradeWatch`] and [`PartitionState::check_upgrades`]; the decision for one license is
//! `upgrade.rs`'s.
//!
//! Why that is exact. Between two events of its own, a license keeps its status, email and
//! cooldown (the cooldown moves only when it fires, which needs a check), and its own
//! triggers can only fall: its windowed counts sit on days up to its customer's clock, and
//! the window only moves forward. So a license that was checked and did not fire can fire at
//! a later event that is not its own only when:
//! - its cooldown held it, or it just fired: it waits in the customer's due queue, keyed by
//!   its latest upgrade, and is checked at the first event whose `at` the cooldown allows;
//! - it lacked `team_growth` alone (its own triggers reach `upgrade_min_triggers` − 1): it
//!   waits in the customer's team watch, checked at an invite that may have turned
//!   `team_growth` on. Only an invite in the trigger window raises the count, so if the
//!   count was below the threshold before such an invite, it now equals the threshold.
//!
//! Every other license waits for an event of its own. Guarantees: the licenses that fire
//! are exactly those a walk over all of them would fire (`tests` holds it against that walk
//! on generated logs and configurations); each license is checked at most once per event,
//! in license order; an event costs O(1), plus O(log n) for each license that comes due,
//! fires or leaves a watch, and each entry was put there by an earlier check and leaves
//! once. A restored customer's watched licenses are all checked at its next event.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use smallvec::SmallVec;

use super::PartitionState;
use crate::config::CoreConfig;
use crate::signals::{cooldown_allows, Notification};
use crate::time::{day_of, Micros, DAY, NEVER};

/// A customer's upgrade watches (`CustomerExtras::upgrade_watch`, boxed and dropped when
/// empty).
#[derive(Debug, Clone, Default)]
pub(crate) struct UpgradeWatch {
    /// Licenses waiting on their upgrade cooldown, as (latest upgrade, license), the
    /// earliest first. An entry's instant may be older than its license's (the license fired
    /// again, at an event of its own): it then comes due early, is checked and waits again.
    due: BinaryHeap<Reverse<(Micros, u32)>>,
    /// Licenses whose one missing trigger is `team_growth` (entries may be stale).
    team: Vec<u32>,
}

impl UpgradeWatch {
    pub(super) fn is_empty(&self) -> bool {
        self.due.is_empty() && self.team.is_empty()
    }

    /// Moves the license indexes it holds by `by` (a merge renumbers licenses).
    pub(super) fn shift(&mut self, by: u32) {
        self.team.iter_mut().for_each(|li| *li += by);
        self.due = std::mem::take(&mut self.due)
            .into_iter()
            .map(|Reverse((t, li))| Reverse((t, li + by)))
            .collect();
    }

    /// Heap bytes it holds, the box included.
    pub(super) fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.due.capacity() * 16 + self.team.capacity() * 4
    }
}

/// Which of its customer's watches hold an entry for a license (at most one each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Watched(u8);

impl Watched {
    const DUE: u8 = 1;
    const TEAM: u8 = 2;

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.0 |= bit;
        } else {
            self.0 &= !bit;
        }
    }
}

/// Where a checked license waits for a check by another license's event.
pub(super) enum Wait {
    /// Only an event of its own can make it fire.
    Own,
    /// Its cooldown, from this latest upgrade, holds it.
    Due(Micros),
    /// `team_growth` is the one trigger it lacks.
    Team,
}

impl PartitionState {
    /// SPEC §5's upgrade check after an applied event of customer `ci` at `at`: of the
    /// event's own license `own`, of the licenses whose cooldown `at` allows, and, when
    /// `team_on` (the event is an invite that turned `team_growth` on), of the team watch.
    pub(super) fn check_upgrades(
        &mut self,
        ci: u32,
        own: Option<u32>,
        team_on: bool,
        at: Micros,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        #[cfg(test)]
        if tests::reference_on() {
            return self.check_every_license(ci, at, cfg, out);
        }
        let cooldown = cfg.notify.upgrade_cooldown_days as i64 * DAY;
        let mut todo: SmallVec<[u32; 4]> = own.into_iter().collect();
        if let Some(w) = self.customers[ci as usize].watch_mut() {
            while let Some(&Reverse((last, li))) = w.due.peek() {
                if !cooldown_allows(last, at, cooldown) {
                    break;
                }
                w.due.pop();
                self.licenses[li as usize].watched.set(Watched::DUE, false);
                todo.push(li);
            }
            if team_on {
                for li in w.team.drain(..) {
                    self.licenses[li as usize].watched.set(Watched::TEAM, false);
                    todo.push(li);
                }
            }
        }
        if todo.len() > 1 {
            todo.sort_unstable();
            todo.dedup();
        }
        let end_day = day_of(self.customers[ci as usize].clock);
        for li in todo {
            #[cfg(test)]
            tests::count_check();
            match self.check_upgrade(ci, li, at, end_day, cfg, out) {
                Wait::Own => {}
                Wait::Due(last) => self.watch_due(ci, li, last),
                Wait::Team => self.watch_team(ci, li),
            }
        }
        self.customers[ci as usize].drop_watch_if_empty();
    }

    fn watch_due(&mut self, ci: u32, li: u32, last: Micros) {
        let w = &mut self.licenses[li as usize].watched;
        if !w.has(Watched::DUE) {
            w.set(Watched::DUE, true);
            let w = self.customers[ci as usize].watch_or_insert();
            w.due.push(Reverse((last, li)));
        }
    }

    fn watch_team(&mut self, ci: u32, li: u32) {
        let w = &mut self.licenses[li as usize].watched;
        if !w.has(Watched::TEAM) {
            w.set(Watched::TEAM, true);
            self.customers[ci as usize].watch_or_insert().team.push(li);
        }
    }

    /// The licenses of customer `ci` that a watch holds, in license order, each once (the
    /// codec's `upgrade_candidates`).
    pub(super) fn watched_licenses(&self, ci: u32) -> Vec<u32> {
        let Some(w) = self.customers[ci as usize].watch() else {
            return Vec::new();
        };
        let due = w.due.iter().map(|r| r.0 .1);
        let mut lis: Vec<u32> = w.team.iter().copied().chain(due).collect();
        lis.sort_unstable();
        lis.dedup();
        lis
    }

    /// Has customer `ci`'s next event check licenses `lis` (a restored watch: a superset of
    /// what the watches held is exact, as any license checked is decided in full).
    pub(super) fn check_at_next_event(&mut self, ci: u32, lis: impl IntoIterator<Item = u32>) {
        for li in lis {
            self.watch_due(ci, li, NEVER);
        }
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
