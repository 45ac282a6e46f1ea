//! The MRR book: MRR changes booked by the day they happened.
//!
//! Owns [`MrrBook`]. Guarantees: `current` is the sum of every change booked; days older
//! than the retained window collapse into one base sum, so MRR a month ago stays exact
//! while the book keeps only the window's days.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Day;

/// MRR changes booked by day; days before the retained window collapse into `base`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MrrBook {
    pub(crate) base: i128,
    pub(crate) base_through: Option<Day>,
    pub(crate) days: BTreeMap<Day, i128>,
    pub(crate) current: i128,
}

impl MrrBook {
    pub(super) fn book(&mut self, day: Day, delta: i128) {
        if delta == 0 {
            return;
        }
        self.current += delta;
        match self.base_through {
            Some(through) if day <= through => self.base += delta,
            _ => *self.days.entry(day).or_insert(0) += delta,
        }
    }

    /// Collapses every day before `floor` into the base sum.
    pub(super) fn collapse_before(&mut self, floor: Day) {
        let keep = self.days.split_off(&floor);
        let old = std::mem::replace(&mut self.days, keep);
        self.base += old.values().sum::<i128>();
        self.base_through = Some(self.base_through.map_or(floor - 1, |t| t.max(floor - 1)));
    }

    /// Σ changes booked up to and including `day`.
    pub(crate) fn through(&self, day: Day) -> i128 {
        self.base + self.days.range(..=day).map(|(_, v)| *v).sum::<i128>()
    }
}
