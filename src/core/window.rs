//! Day-bucketed windows: small sparse per-day counters and a per-license day bitmap.
//!
//! Owns how "on day d" state is kept for a bounded number of days. Both structures are
//! keyed by absolute UTC day, so a late event lands on its own day and a stale slot is
//! recognised by its day rather than by position. Guarantees: sums over a day range are
//! exact for every day not older than the pruning floor passed to `add`.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::time::Day;

/// Counts per UTC day, sparse: only days with a count are stored, oldest first.
/// Most customers and licenses have a handful of days, so a sorted vector beats a ring;
/// the first two days are held inline (no allocation). Serializes as a sequence, as a
/// `Vec` does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounts(SmallVec<[(Day, u32); 2]>);

impl DayCounts {
    /// No day.
    pub const fn new() -> Self {
        Self(SmallVec::new_const())
    }

    /// Adds `n` on `day` and forgets the days before `floor` (a day before `floor` adds
    /// nothing).
    ///
    /// Spilled, the days grow one slot at a time, never by doubling: a customer that
    /// validates daily holds a window's worth of days for months (35 by default, 280
    /// bytes), where doubling would hold room for 64. The days before `floor` go first, so
    /// at a steady window a new day takes the slot the oldest left, without growing.
    pub fn add(&mut self, day: Day, n: u32, floor: Day) {
        self.prune(floor);
        if day < floor {
            return;
        }
        match self.0.binary_search_by_key(&day, |(d, _)| *d) {
            Ok(i) => self.0[i].1 = self.0[i].1.saturating_add(n),
            Err(i) => {
                if self.0.spilled() && self.0.len() == self.0.capacity() {
                    // Bounded by the window (at most 60 days): one copy per new day.
                    self.0.reserve_exact(1);
                }
                self.0.insert(i, (day, n));
            }
        }
    }

    /// Forgets days before `floor`; gives back the room of the days forgotten once they
    /// were more than half of it.
    pub fn prune(&mut self, floor: Day) {
        let keep_from = self.0.partition_point(|(d, _)| *d < floor);
        if keep_from > 0 {
            self.0.drain(..keep_from);
            if self.0.spilled() && self.0.len() * 2 < self.0.capacity() {
                self.0.shrink_to_fit();
            }
        }
    }

    /// The sum over days `from..=to`.
    pub fn sum(&self, from: Day, to: Day) -> u64 {
        let start = self.0.partition_point(|(d, _)| *d < from);
        self.0[start..]
            .iter()
            .take_while(|(d, _)| *d <= to)
            .map(|(_, n)| *n as u64)
            .sum()
    }

    /// The days with a count and their counts, oldest first.
    pub fn days(&self) -> &[(Day, u32)] {
        &self.0
    }

    /// The latest day with a count.
    pub fn last_day(&self) -> Option<Day> {
        self.0.last().map(|(d, _)| *d)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        if self.0.spilled() {
            self.0.capacity() * std::mem::size_of::<(Day, u32)>()
        } else {
            0
        }
    }
}

/// Which of the last 64 days a license was seen on, as one bitmap.
/// Bit `d % 64` stands for day `d` while `d` is within 64 days of `top`.
///
/// The 64 bits are held as two `u32` halves (low, high): with 4-byte alignment the bitmap
/// is 12 bytes and packs beside a record's other 4-byte fields (a `License` stays at 160
/// bytes with its boxed extras).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayBitmap {
    bits: [u32; 2],
    top: Day,
}

impl DayBitmap {
    fn bits(&self) -> u64 {
        self.bits[0] as u64 | (self.bits[1] as u64) << 32
    }

    /// Marks `day`; returns true when it was not marked before.
    /// Days 64 or more before the latest marked day are ignored (returns false).
    pub fn mark(&mut self, day: Day) -> bool {
        let mut bits = self.bits();
        if bits == 0 {
            self.top = day;
        } else if day > self.top {
            let gap = (day as i64 - self.top as i64).min(64);
            for i in 1..=gap {
                let d = self.top as i64 + i;
                bits &= !(1u64 << d.rem_euclid(64));
            }
            self.top = day;
        } else if (self.top as i64 - day as i64) >= 64 {
            return false;
        }
        let bit = 1u64 << (day as i64).rem_euclid(64);
        let fresh = bits & bit == 0;
        bits |= bit;
        self.bits = [bits as u32, (bits >> 32) as u32];
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_counts_sum_ranges_and_prune() {
        let mut c = DayCounts::default();
        c.add(10, 2, 0);
        c.add(12, 1, 0);
        c.add(10, 1, 0);
        c.add(11, 5, 0);
        assert_eq!(c.sum(10, 10), 3);
        assert_eq!(c.sum(10, 12), 9);
        assert_eq!(c.sum(11, 100), 6);
        assert_eq!(c.sum(13, 100), 0);
        c.add(40, 1, 12);
        assert_eq!(c.sum(0, 11), 0);
        assert_eq!(c.sum(0, 100), 2);
        assert_eq!(c.last_day(), Some(40));
    }

    #[test]
    fn a_daily_window_holds_exactly_its_days() {
        // 100 days of daily counts through a 35-day window: the room stays the window's.
        let mut c = DayCounts::default();
        for day in 0..100 {
            c.add(day, 1, day - 34);
            assert_eq!(c.days().len(), (day + 1).min(35) as usize);
            assert!(c.heap_bytes() <= 35 * 8, "day {day}: {}", c.heap_bytes());
        }
        assert_eq!(c.heap_bytes(), 35 * 8);
        // A day before the floor adds nothing (as it always did: it was pruned at once).
        c.add(10, 7, 65);
        assert_eq!(c.sum(0, 100), 35);
        // Most days forgotten: the room shrinks with them, back inline at two.
        c.prune(98);
        assert_eq!(c.days(), &[(98, 1), (99, 1)]);
        assert_eq!(c.heap_bytes(), 0);
    }

    proptest::proptest! {
        /// Against a map that keeps every day: the same days and counts after every step,
        /// and never more room than twice the days held (or the first spill's four).
        #[test]
        fn day_counts_match_a_map(ops in proptest::collection::vec((0i32..90, 1u32..5, 0i32..90), 1..200)) {
            let mut c = DayCounts::default();
            let mut m = std::collections::BTreeMap::<Day, u32>::new();
            for (day, n, floor) in ops {
                c.add(day, n, floor);
                *m.entry(day).or_default() += n;
                m.retain(|d, _| *d >= floor);
                let want: Vec<(Day, u32)> = m.iter().map(|(d, n)| (*d, *n)).collect();
                proptest::prop_assert_eq!(c.days(), &want[..]);
                let room = c.heap_bytes() / 8;
                proptest::prop_assert!(room <= (2 * want.len()).max(4), "room {} for {}", room, want.len());
            }
        }
    }

    #[test]
    fn bitmap_marks_each_day_once_and_recycles_slots() {
        let mut b = DayBitmap::default();
        assert!(b.mark(100));
        assert!(!b.mark(100));
        assert!(b.mark(99));
        assert!(b.mark(164)); // slot of day 100 is recycled
        assert!(!b.mark(100)); // too old now
        assert!(b.mark(163));
        assert!(!b.mark(164));
        assert!(b.mark(1000));
        assert!(b.mark(999));
    }
}
