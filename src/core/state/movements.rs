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
use crate::movements::classify;
use crate::time::Day;

impl PartitionState {
    /// Books the movement of customer `ci` whose MRR the event of `day` changed by
    /// `delta` (≠ 0). Its MRR after the event is summed over its active licenses: only
    /// events that change MRR (rare next to validations) pay for that walk.
    pub(super) fn book_movement(&mut self, ci: u32, day: Day, delta: i128, cfg: &CoreConfig) {
        let m1 = self.active_mrr(ci);
        let m0 = m1 - delta;
        let movement = classify(m0, m1, self.customers[ci as usize].ever_paid);
        self.customers[ci as usize].ever_paid |= m1 > 0;
        // A day older than the per-day figures kept is before the month-ago day: its
        // change is in `month_ago_cents`, and no movement window reaches it.
        let kept = self
            .max_day
            .map_or(true, |max| day >= max - cfg.window_days as i32);
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
            .map(|l| l.mrr_cents as i128)
            .sum()
    }
}
