//! MRR movements in the fold (SPEC §8.2): each applied event that changes a customer's
//! MRR is one movement, booked on the UTC day of its `ts`.
//!
//! Owns [`PartitionState::book_movement`], called by `apply` with the event's change of
//! MRR. Guarantees: the movements booked on a day sum to the MRR changes booked on it
//! (so `current = month_ago + net`), and a customer's "ever above 0" mark is set after
//! every event that leaves its MRR above 0.

use super::PartitionState;
use crate::codes::Status;
use crate::config::CoreConfig;
use crate::movements::classify_change;
use crate::time::Day;

impl PartitionState {
    /// Books the movement of customer `ci` whose MRR the event of `day` changed by
    /// `delta` (≠ 0), its MRR having been above 0 before the event when `paid_before`.
    /// Whether it is above 0 after comes from its count of paying active licenses, so an
    /// event costs the same however many licenses the customer has.
    pub(super) fn book_movement(
        &mut self,
        ci: u32,
        day: Day,
        paid_before: bool,
        delta: i128,
        cfg: &CoreConfig,
    ) {
        let c = &mut self.customers[ci as usize];
        let paid_after = c.paying_licenses > 0;
        let movement = classify_change(paid_before, paid_after, delta, c.ever_paid);
        c.ever_paid |= paid_after;
        // A day older than the per-day figures kept is before the month-ago day: its
        // change is in `month_ago_cents`, and no movement window reaches it.
        let kept = self
            .max_day
            .is_none_or(|max| day >= max - cfg.window_days as i32);
        if let (Some(m), true) = (movement, kept) {
            self.movements.book(day, m);
        }
    }

    /// Customer `ci`'s MRR: Σ `mrr_cents` over its active licenses.
    pub(super) fn active_mrr(&self, ci: u32) -> i128 {
        self.customers[ci as usize]
            .licenses
            .iter()
            .map(|&li| &self.licenses[li as usize])
            .filter(|l| l.status == Status::Active)
            .map(|l| self.terms_of(l).mrr_cents as i128)
            .sum()
    }
}
