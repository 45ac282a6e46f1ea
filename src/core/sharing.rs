//! Key-sharing evidence of one license (SPEC §8.3): its `domain_mismatch` validations.
//!
//! Owns [`MismatchRecord`]: the mismatched domains of a license, each with the latest UTC
//! day it was seen on, bounded to the [`MAX_DOMAINS`] domains with the latest day (the
//! oldest evicted), and the count of every mismatch by day (those without a domain
//! included). A license that never had a mismatch has no record (the fold boxes it).
//!
//! Guarantees: for a window of days ending on or after the latest day recorded (as the
//! fold's windows do: they end on the customer's clock day or the report's today),
//! [`MismatchRecord::distinct_in`] is exactly min(distinct domains mismatched in the
//! window, 64): the kept set is always the top 64 by (latest day, then domain), whatever
//! the arrival order, so every domain of the window is kept unless 64 later ones are.

use serde::{Deserialize, Serialize};

use super::config::MAX_SHARING_DOMAINS;
use super::time::Day;
use super::window::DayCounts;

/// The most domains kept per license.
pub const MAX_DOMAINS: usize = MAX_SHARING_DOMAINS as usize;

/// How many mismatched domains an email names.
pub const NAMED_DOMAINS: usize = 10;

/// The mismatched domains and mismatch counts of one license.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MismatchRecord {
    /// (latest mismatch day, domain), at most [`MAX_DOMAINS`], in no particular order.
    domains: Vec<(Day, Box<str>)>,
    /// Every `domain_mismatch` validation, by day.
    mismatches: DayCounts,
}

/// Whether `(day_a, a)` ranks after `(day_b, b)` among the kept domains: a later day
/// ranks higher; on the same day the smaller string does.
fn outranks(day_a: Day, a: &str, day_b: Day, b: &str) -> bool {
    day_a > day_b || (day_a == day_b && a < b)
}

impl MismatchRecord {
    /// Records one `domain_mismatch` validation on `day`; `domain` `None` or empty counts
    /// as a mismatch but adds no domain. Days before `floor` are then forgotten.
    pub fn record(&mut self, day: Day, domain: Option<&str>, floor: Day) {
        self.mismatches.add(day, 1, floor);
        if let Some(domain) = domain.filter(|d| !d.is_empty()) {
            self.note_domain(day, domain);
        }
        self.prune(floor);
    }

    fn note_domain(&mut self, day: Day, domain: &str) {
        if let Some(e) = self.domains.iter_mut().find(|(_, d)| **d == *domain) {
            e.0 = e.0.max(day);
            return;
        }
        if self.domains.len() < MAX_DOMAINS {
            // One slot at a time (at most 64, one copy per new domain): most licenses
            // mismatch on one to three domains, where a `Vec`'s first growth holds four.
            self.domains.reserve_exact(1);
            self.domains.push((day, domain.into()));
            return;
        }
        // Full: the new domain replaces the lowest-ranked one if it outranks it.
        // The lowest rank: the earliest day, and on that day the largest string.
        let lowest = self
            .domains
            .iter()
            .enumerate()
            .min_by(|(_, (da, a)), (_, (db, b))| da.cmp(db).then_with(|| b.cmp(a)))
            .map(|(i, _)| i);
        if let Some(i) = lowest {
            let (ld, l) = &self.domains[i];
            if outranks(day, domain, *ld, l) {
                self.domains[i] = (day, domain.into());
            }
        }
    }

    /// Forgets the mismatches and domains before `floor`.
    pub fn prune(&mut self, floor: Day) {
        self.mismatches.prune(floor);
        let before = self.domains.len();
        self.domains.retain(|(d, _)| *d >= floor);
        if self.domains.len() < before && self.domains.len() * 2 < self.domains.capacity() {
            self.domains.shrink_to_fit();
        }
    }

    /// Whether nothing is left (the fold can drop the record).
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.mismatches.is_empty()
    }

    /// Distinct mismatched domains over days `from..=to` (at most [`MAX_DOMAINS`]).
    pub fn distinct_in(&self, from: Day, to: Day) -> u32 {
        self.domains
            .iter()
            .filter(|(d, _)| (from..=to).contains(d))
            .count() as u32
    }

    /// Every `domain_mismatch` validation over days `from..=to`.
    pub fn mismatches_in(&self, from: Day, to: Day) -> u64 {
        self.mismatches.sum(from, to)
    }

    /// The first `n` mismatched domains of days `from..=to`, sorted.
    pub fn domains_in(&self, from: Day, to: Day, n: usize) -> Vec<String> {
        let mut v: Vec<&str> = self
            .domains
            .iter()
            .filter(|(d, _)| (from..=to).contains(d))
            .map(|(_, s)| &**s)
            .collect();
        v.sort_unstable();
        v.truncate(n);
        v.into_iter().map(str::to_string).collect()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.domains.capacity() * std::mem::size_of::<(Day, Box<str>)>()
            + self.domains.iter().map(|(_, s)| s.len()).sum::<usize>()
            + self.mismatches.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatch_without_a_domain_counts_but_adds_no_domain() {
        let mut r = MismatchRecord::default();
        r.record(10, Some("x1.example"), 0);
        r.record(11, None, 0);
        r.record(11, Some(""), 0);
        r.record(12, Some("x1.example"), 0);
        assert_eq!(r.distinct_in(0, 20), 1);
        assert_eq!(r.mismatches_in(0, 20), 4);
        assert_eq!(r.mismatches_in(11, 11), 2);
    }

    #[test]
    fn domains_compare_as_exact_strings() {
        let mut r = MismatchRecord::default();
        for d in ["a.example", "A.example", "a.example.", " a.example"] {
            r.record(5, Some(d), 0);
        }
        assert_eq!(r.distinct_in(5, 5), 4);
    }

    #[test]
    fn window_counts_a_domain_by_its_latest_day() {
        let mut r = MismatchRecord::default();
        r.record(1, Some("old"), 0);
        r.record(20, Some("x"), 0);
        r.record(31, Some("y"), 0);
        // A late mismatch of an old domain inside the window brings it in.
        r.record(25, Some("old"), 0);
        assert_eq!(r.distinct_in(2, 31), 3);
        assert_eq!(r.distinct_in(21, 31), 2);
        assert_eq!(r.domains_in(2, 31, 10), ["old", "x", "y"]);
        assert_eq!(r.mismatches_in(2, 31), 3);
    }

    #[test]
    fn keeps_the_64_latest_and_evicts_the_oldest() {
        let mut r = MismatchRecord::default();
        for i in 0..100 {
            r.record(i, Some(&format!("d{i:03}")), 0);
        }
        assert_eq!(r.domains.len(), MAX_DOMAINS);
        assert_eq!(r.distinct_in(0, 99), 64);
        assert_eq!(r.distinct_in(36, 99), 64);
        assert_eq!(r.distinct_in(37, 99), 63);
        assert_eq!(r.distinct_in(90, 99), 10);
        assert_eq!(r.mismatches_in(0, 99), 100);
        // A late mismatch older than every kept domain is not kept.
        r.record(3, Some("late"), 0);
        assert_eq!(r.distinct_in(0, 99), 64);
        assert!(r.domains_in(0, 99, 64).iter().all(|d| d != "late"));
        // A new one on the latest day evicts the oldest (d036).
        r.record(99, Some("zz"), 0);
        assert_eq!(r.distinct_in(36, 36), 0);
        assert_eq!(r.distinct_in(37, 99), 64);
    }

    #[test]
    fn the_kept_set_does_not_depend_on_arrival_order() {
        let mut events: Vec<(Day, String)> = (0..150)
            .map(|i| ((i * 7919 % 40) as Day, format!("d{}", i % 90)))
            .collect();
        let fold = |ev: &[(Day, String)]| {
            let mut r = MismatchRecord::default();
            for (d, s) in ev {
                r.record(*d, Some(s), 0);
            }
            let mut kept: Vec<(Day, String)> =
                r.domains.iter().map(|(d, s)| (*d, s.to_string())).collect();
            kept.sort();
            kept
        };
        let a = fold(&events);
        events.reverse();
        let b = fold(&events);
        events.sort_by_key(|(d, s)| (s.clone(), *d));
        let c = fold(&events);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn names_the_first_ten_sorted_of_the_window() {
        let mut r = MismatchRecord::default();
        for i in (0..15).rev() {
            r.record(10 + i, Some(&format!("s{i:02}.example")), 0);
        }
        r.record(2, Some("a-old.example"), 0);
        let named = r.domains_in(5, 30, NAMED_DOMAINS);
        assert_eq!(named.len(), 10);
        assert_eq!(named[0], "s00.example");
        assert_eq!(named[9], "s09.example");
    }

    #[test]
    fn prune_forgets_days_before_the_floor() {
        let mut r = MismatchRecord::default();
        r.record(1, Some("a"), 0);
        r.record(1, None, 0);
        assert!(!r.is_empty());
        r.record(50, Some("b"), 40);
        assert_eq!(r.distinct_in(0, 50), 1);
        assert_eq!(r.mismatches_in(0, 50), 1);
        r.prune(51);
        assert!(r.is_empty());
    }

    #[test]
    fn holds_room_for_its_domains_only() {
        let entry = std::mem::size_of::<(Day, Box<str>)>();
        let mut r = MismatchRecord::default();
        for i in 0..10 {
            r.record(i, Some(&format!("d{i}")), 0);
            assert_eq!(r.domains.capacity(), i as usize + 1);
        }
        r.prune(8); // two domains left of ten: the room shrinks to them
        assert_eq!(r.domains.capacity(), 2);
        assert_eq!(r.heap_bytes(), 2 * entry + 4 + r.mismatches.heap_bytes());
    }
}
