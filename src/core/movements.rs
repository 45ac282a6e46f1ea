//! MRR movements (SPEC §8.2): how each change of a customer's MRR is classified, and the
//! per-day book of the classified movements.
//!
//! Owns the classification table (m0, m1, "ever above 0") → `new`, `expansion`,
//! `contraction`, `churn` or `reactivation` with its amount, and [`MovementBook`]: the
//! movements of a partition summed per UTC day of the event's `ts`.
//! Guarantees: for every classified change, `m1 − m0` equals the signed amount
//! ([`Movement::signed`]), so the movements summed over any set of days equal the MRR
//! changes booked on those days; books of disjoint customers add up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::codes::MovementKind;
use super::time::Day;

/// One classified change of a customer's MRR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Movement {
    pub kind: MovementKind,
    /// Always > 0.
    pub amount: i128,
}

impl Movement {
    /// The change it stands for: `+amount` for a gain, `−amount` otherwise.
    pub fn signed(self) -> i128 {
        if self.kind.is_gain() {
            self.amount
        } else {
            -self.amount
        }
    }
}

/// Classifies a change of a customer's MRR from `m0` (just before the event) to `m1`
/// (just after), given whether its MRR was ever above 0 before the event.
/// `None` when the MRR did not change. MRR is never negative (prices are ≥ 0).
pub fn classify(m0: i128, m1: i128, ever_positive: bool) -> Option<Movement> {
    classify_change(m0 > 0, m1 > 0, m1 - m0, ever_positive)
}

/// [`classify`] from what the fold knows without summing a customer's licenses: whether
/// its MRR was above 0 before and after the event, and the change `delta = m1 − m0`.
/// Every amount follows: with `m0 = 0`, `m1 = delta`; with `m1 = 0`, `m0 = −delta`.
pub fn classify_change(
    before_positive: bool,
    after_positive: bool,
    delta: i128,
    ever_positive: bool,
) -> Option<Movement> {
    let (kind, amount) = match (before_positive, after_positive) {
        _ if delta == 0 => return None,
        (false, true) if ever_positive => (MovementKind::Reactivation, delta),
        (false, true) => (MovementKind::New, delta),
        (true, false) => (MovementKind::Churn, -delta),
        (true, true) if delta > 0 => (MovementKind::Expansion, delta),
        (true, true) => (MovementKind::Contraction, -delta),
        (false, false) => return None,
    };
    Some(Movement { kind, amount })
}

/// Movement sums and counts of one day (or of a range of days).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovementSums {
    /// Cents by kind, in [`MovementKind::ALL`] order (each ≥ 0).
    pub cents: [i128; 5],
    /// Movements by kind, in [`MovementKind::ALL`] order.
    pub counts: [u64; 5],
}

impl MovementSums {
    /// Adds one movement.
    pub fn add_movement(&mut self, m: Movement) {
        self.cents[m.kind.index()] += m.amount;
        self.counts[m.kind.index()] += 1;
    }

    /// Adds another sum.
    pub fn add(&mut self, o: &MovementSums) {
        for i in 0..5 {
            self.cents[i] += o.cents[i];
            self.counts[i] += o.counts[i];
        }
    }

    /// new + expansion + reactivation − contraction − churn.
    pub fn net(&self) -> i128 {
        MovementKind::ALL
            .iter()
            .map(|k| {
                let c = self.cents[k.index()];
                if k.is_gain() {
                    c
                } else {
                    -c
                }
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|c| *c == 0)
    }
}

/// Movements by UTC day of the event's `ts`. Days older than the retained window are
/// forgotten (the report sums only the days after `month_ago_cents`'s last day).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MovementBook {
    pub days: BTreeMap<Day, MovementSums>,
}

impl MovementBook {
    /// Books one movement on `day`.
    pub fn book(&mut self, day: Day, m: Movement) {
        self.days.entry(day).or_default().add_movement(m);
    }

    /// Forgets the days before `floor`.
    pub fn prune(&mut self, floor: Day) {
        if self.days.first_key_value().is_some_and(|(d, _)| *d < floor) {
            self.days = self.days.split_off(&floor);
        }
    }

    /// The sums over every day after `day` (future days included).
    pub fn after(&self, day: Day) -> MovementSums {
        let mut s = MovementSums::default();
        if let Some(from) = day.checked_add(1) {
            for v in self.days.range(from..).map(|(_, v)| v) {
                s.add(v);
            }
        }
        s
    }

    /// Adds another book (of disjoint customers).
    pub fn merge(&mut self, o: MovementBook) {
        for (d, v) in o.days {
            self.days.entry(d).or_default().add(&v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MovementKind::*;

    fn k(m0: i128, m1: i128, ever: bool) -> Option<(MovementKind, i128)> {
        classify(m0, m1, ever).map(|m| (m.kind, m.amount))
    }

    #[test]
    fn each_kind_of_the_table() {
        assert_eq!(k(0, 2900, false), Some((New, 2900)));
        assert_eq!(k(0, 2900, true), Some((Reactivation, 2900)));
        assert_eq!(k(2900, 0, true), Some((Churn, 2900)));
        assert_eq!(k(1000, 3900, true), Some((Expansion, 2900)));
        assert_eq!(k(13800, 6900, true), Some((Contraction, 6900)));
    }

    #[test]
    fn no_change_is_no_movement() {
        assert_eq!(k(0, 0, false), None);
        assert_eq!(k(0, 0, true), None);
        assert_eq!(k(2900, 2900, true), None);
    }

    #[test]
    fn the_ever_mark_only_matters_from_zero() {
        assert_eq!(k(100, 200, false), Some((Expansion, 100)));
        assert_eq!(k(100, 0, false), Some((Churn, 100)));
    }

    #[test]
    fn signed_amount_is_the_change() {
        for (m0, m1, ever) in [
            (0, 5, false),
            (0, 5, true),
            (5, 0, true),
            (5, 9, true),
            (9, 5, true),
            (1, i64::MAX as i128 * 3, true),
        ] {
            let m = classify(m0, m1, ever).unwrap();
            assert_eq!(m.signed(), m1 - m0, "{m0} -> {m1}");
            assert!(m.amount > 0);
        }
    }

    #[test]
    fn book_sums_the_days_after_the_month_ago_day() {
        let mut b = MovementBook::default();
        b.book(
            10,
            Movement {
                kind: New,
                amount: 500,
            },
        ); // a late change before the window
        b.book(
            11,
            Movement {
                kind: Expansion,
                amount: 300,
            },
        );
        b.book(
            12,
            Movement {
                kind: Churn,
                amount: 100,
            },
        );
        b.book(
            40,
            Movement {
                kind: Reactivation,
                amount: 100,
            },
        ); // a future-stamped day
        let s = b.after(10);
        assert_eq!(s.cents, [0, 300, 0, 100, 100]);
        assert_eq!(s.counts, [0, 1, 0, 1, 1]);
        assert_eq!(s.net(), 300);
        assert_eq!(b.after(9).net(), 800);
        b.prune(12);
        assert_eq!(b.after(0).net(), 0);
        assert_eq!(b.after(i32::MAX), MovementSums::default());
    }

    #[test]
    fn books_of_disjoint_customers_add_up() {
        let mut a = MovementBook::default();
        let mut b = MovementBook::default();
        let m = Movement {
            kind: Contraction,
            amount: 7,
        };
        a.book(3, m);
        b.book(3, m);
        b.book(4, m);
        a.merge(b);
        assert_eq!(a.after(0).counts[Contraction.index()], 3);
        assert_eq!(a.after(0).net(), -21);
    }
}
