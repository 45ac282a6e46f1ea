//! The fold: per-partition state, and how each event changes it (SPEC §1, §2, §5).
//!
//! Owns [`PartitionState`]: the customers and licenses of one partition (or of a whole
//! replay), that partition's share of the per-day figures, the MRR book, and the event
//! counts; and [`PartitionState::apply`], the entry of each event. Everything about one
//! customer (its licenses' windowed counts and cooldowns, the notifications decided for
//! it) lives in its own records, not in partition-wide tables.
//! It has no I/O and no clock: time comes in only through event timestamps and
//! [`PartitionState::advance_to`].
//!
//! The parts, one idea each: `records` (customer and license), `kept` (a decided
//! notification as its customer keeps it), `license_list` (a customer's licenses),
//! `tickets` (its open tickets), `terms` (the licenses' plans, limits and prices, each
//! distinct one once), `index` (lookups), `effects` (what each event does),
//! `decisions` (renewal, churn, midnights, cooldowns, health inputs), `countries` (a
//! day's validations by country), `upgrade` (triggers), `mrr` (the MRR book), `merge`,
//! `aggregate` (the report's sums), `codec` (versioned records and bytes), `wire` (the
//! records' V1 form) and `memory` (byte accounting); and SPEC §8's: `spec8` (the
//! per-license record), `movements` (MRR movements), `sharing` (key sharing and revoked
//! use) and `reminders` (expiry reminders).
//!
//! Guarantees:
//! - every decision for a customer depends only on that customer's own events in their
//!   own arrival order, so any interleaving of customers and any split of customers over
//!   states gives the same decisions;
//! - the state serializes as versioned records, one per customer plus one for the
//!   partition (see [`PartitionState::to_bytes`]), and two states
//!   over disjoint customers merge into one ([`PartitionState::merge`]);
//! - nothing here panics on any decoded event.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::config::CoreConfig;
use crate::event::Event;
use crate::expiry::CheckRun;
use crate::movements::MovementBook;
use crate::signals::Notification;
use crate::time::{day_of, Day, Micros, NEVER, SECOND};

mod aggregate;
mod codec;
mod countries;
mod decisions;
mod dirty;
mod domains;
mod effects;
mod emails;
mod expiring;
mod index;
mod kept;
mod license_list;
mod memory;
mod merge;
mod movements;
mod mrr;
mod prefetch;
mod records;
mod reminders;
mod sharing;
mod spec8;
mod terms;
#[cfg(test)]
mod test_fold;
mod tickets;
mod upgrade;
mod watch;
mod wire;

pub use crate::codes::Status;
pub use codec::{StateError, FORMAT_VERSION};
pub(crate) use mrr::MrrBook;
pub use prefetch::Lookahead;
pub(crate) use records::{Customer, License};

use index::Index;

/// The hasher of every in-memory map and index of the state: fast, non-cryptographic,
/// seeded per process. Nothing is serialized by its hash (maps serialize as maps, the
/// indexes are rebuilt after `from_bytes`), so the seed never leaves the process.
pub(crate) type FastHasher = ahash::RandomState;
/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, FastHasher>;

/// What became of one event handed to [`PartitionState::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    Duplicate,
    /// Its customer is excluded by `core.exclude` (SPEC §8.1): counted, nothing else.
    Excluded,
}

/// Event counts of the report's `events` section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    pub applied: u64,
    pub rejected: u64,
    pub duplicates: u64,
    /// Accepted events of excluded customers (SPEC §8.1).
    pub excluded: u64,
}

impl std::ops::AddAssign for EventCounts {
    fn add_assign(&mut self, o: Self) {
        self.applied += o.applied;
        self.rejected += o.rejected;
        self.duplicates += o.duplicates;
        self.excluded += o.excluded;
    }
}

/// One day's figures, over every customer of the partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DayStats {
    /// `license.validated` by result, in [`ValidationResult::ALL`] order.
    pub(crate) by_result: [u64; 6],
    /// Distinct licenses validated (not `invalid_format`).
    pub(crate) dav: u64,
    pub(crate) countries: countries::CountryCounts,
}

/// The state of one partition: its customers, licenses and per-day figures. Its binary
/// form is the codec's (`codec.rs`), not a serde derive of this struct.
#[derive(Debug, Clone, Default)]
pub struct PartitionState {
    pub(crate) customers: Vec<Customer>,
    pub(crate) licenses: Vec<License>,
    pub(crate) plans: Vec<Box<str>>,
    /// The licenses' plans, limits and prices, each distinct one once (`terms.rs`).
    terms: terms::TermsTable,
    /// The licenses' emails (`emails.rs`).
    emails: emails::Emails,
    pub(crate) days: BTreeMap<Day, DayStats>,
    pub(crate) mrr: MrrBook,
    /// MRR movements by day (SPEC §8.2), kept for the same days as `days`.
    pub(crate) movements: MovementBook,
    pub(crate) counts: EventCounts,
    /// The latest customer clock day seen; per-day figures older than the window are dropped.
    pub(crate) max_day: Option<Day>,
    index: Index,
    /// The customers changed since the last [`PartitionState::take_dirty`] (see `dirty.rs`).
    dirty: dirty::DirtySet,
}

impl PartitionState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Event counts so far.
    pub fn counts(&self) -> EventCounts {
        self.counts
    }

    /// Counts one rejected event (decoding happens outside the fold).
    pub fn record_rejected(&mut self) {
        self.counts.rejected += 1;
    }

    /// Every notification decided so far: customer by customer (in the order the state
    /// first saw them), each customer's in decision order. The report sorts them.
    pub fn notifications(&self) -> impl Iterator<Item = Notification> + '_ {
        self.decided(true)
    }

    /// As [`Self::notifications`], without the email's figures when `with_facts` is false.
    fn decided(&self, with_facts: bool) -> impl Iterator<Item = Notification> + '_ {
        self.customers
            .iter()
            .flat_map(move |c| self.notifications_of(c, with_facts))
    }

    /// A license's plan, domain limit and MRR.
    pub(crate) fn terms_of(&self, l: &License) -> terms::Terms {
        self.terms.get(l.terms)
    }

    /// A license's plan name.
    pub(crate) fn plan_of(&self, l: &License) -> &str {
        self.plan_name(self.terms.get(l.terms).plan)
    }

    /// The name of plan `plan` (a position in the state's plan names, as `Terms` holds it).
    pub(crate) fn plan_name(&self, plan: u32) -> &str {
        &self.plans[plan as usize]
    }

    /// Number of customers (the no-customer group included when present) and licenses.
    pub fn sizes(&self) -> (usize, usize) {
        (self.customers.len(), self.licenses.len())
    }

    /// The ids of the customers this state holds (the no-customer group as `""`).
    pub fn customer_ids(&self) -> impl Iterator<Item = &str> {
        self.customers.iter().map(|c| &*c.id)
    }

    /// The largest clock over the partition's customers (its watermark), if any event applied.
    pub fn watermark(&self) -> Option<Micros> {
        self.customers
            .iter()
            .map(|c| c.clock)
            .filter(|c| *c != NEVER)
            .max()
    }

    /// Folds one decoded event. Decisions it makes are pushed to `out` (and kept for the
    /// report). Returns whether it was applied, ignored as a duplicate, or excluded.
    /// Checks run in SPEC §8.1's order: the decoder rejected first, then exclusion (which
    /// leaves no trace but its count: no customer record, clock or remembered id), then
    /// the duplicate check.
    pub fn apply(
        &mut self,
        ev: &Event<'_>,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) -> Applied {
        if cfg.exclude.excludes(ev.customer_id.as_deref()) {
            self.counts.excluded += 1;
            return Applied::Excluded;
        }
        let horizon = cfg.dedup_horizon_secs as i64 * SECOND;
        let cid = ev.customer_id.as_deref().unwrap_or("");
        let ci = self.customer_index(cid);
        self.dirty.mark(ci);
        if let Some(id) = ev.event_id.as_deref() {
            if self.customers[ci as usize].is_duplicate(id, horizon) {
                self.counts.duplicates += 1;
                return Applied::Duplicate;
            }
        }
        let day = day_of(ev.ts);
        let clock = self.customers[ci as usize].clock;
        if clock != NEVER && day > day_of(clock) {
            let run = CheckRun::Event(ev.ts);
            self.run_midnights(ci, day_of(clock) + 1, day, run, cfg, out);
        }
        let c = &mut self.customers[ci as usize];
        c.clock = c.clock.max(ev.ts);
        let clock_day = day_of(c.clock);
        if let Some(id) = ev.event_id.as_deref() {
            c.remember_id(id, ev.ts, horizon);
        }
        self.counts.applied += 1;
        self.advance_max_day(clock_day, cfg);
        let floor = clock_day - cfg.window_days as i32 + 1;
        let in_window = day >= floor;
        let mrr_before = self.mrr.current;
        let paid_before = self.customers[ci as usize].paying_licenses > 0;
        self.fold_effect(ci, ev, day, floor, in_window, cfg, out);
        let delta = self.mrr.current - mrr_before;
        if delta != 0 {
            self.book_movement(ci, day, paid_before, delta, cfg);
        }
        Applied::Applied
    }

    fn advance_max_day(&mut self, day: Day, cfg: &CoreConfig) {
        if self.max_day.is_some_and(|m| m >= day) {
            return;
        }
        self.max_day = Some(day);
        let floor = day - cfg.window_days as i32;
        if self.days.first_key_value().is_some_and(|(d, _)| *d < floor) {
            self.days = self.days.split_off(&floor);
        }
        if self
            .mrr
            .days
            .first_key_value()
            .is_some_and(|(d, _)| *d < floor)
        {
            self.mrr.collapse_before(floor);
        }
        self.movements.prune(floor);
    }

    /// The per-day figures of `day`, unless the day is older than the partition keeps.
    fn day_stats(&mut self, day: Day, cfg: &CoreConfig) -> Option<&mut DayStats> {
        let floor = self.max_day? - cfg.window_days as i32;
        (day >= floor).then(|| self.days.entry(day).or_default())
    }
}
