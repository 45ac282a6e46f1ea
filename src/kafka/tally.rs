//! Per-batch tallies of the fold workers, added to the Prometheus counters once per batch.
//!
//! Owns [`Tally`]: plain integers bumped per message on the hot path (no atomics, no
//! label look-ups, no allocation), flushed into the labelled counters by [`Tally::flush`]
//! at the end of each batch and each clock tick.
//!
//! Guarantees: a flush adds exactly what was tallied since the last one, then starts from
//! zero; countries are labelled as `metrics::country_label` does (two upper-case ASCII
//! letters, else `other`).

use crate::core::country::{alpha2_code, alpha2_slot, ALPHA2};
use crate::core::event::{RejectReason, EVENT_TYPES};
use crate::core::NotificationKind;
use crate::metrics::Metrics;

/// Slots of the country tally: `AA`..`ZZ`, then `other`.
const COUNTRY_SLOTS: usize = ALPHA2 + 1;
const OTHER: usize = ALPHA2;

/// Per-batch tallies.
#[derive(Default)]
pub struct Tally {
    /// Messages folded (rebuilds included).
    pub folded: u64,
    /// Applied events by type, in [`EVENT_TYPES`] order.
    pub events: [u64; EVENT_TYPES.len()],
    /// Validations by result, in `ValidationResult::ALL` order.
    pub results: [u64; 6],
    /// Rejections by reason, in [`RejectReason::ALL`] order.
    pub rejected: [u64; RejectReason::ALL.len()],
    /// Duplicates.
    pub duplicates: u64,
    /// Events of excluded customers.
    pub excluded: u64,
    /// Decisions by kind, in [`NotificationKind::ALL`] order.
    pub decided: [u64; NotificationKind::ALL.len()],
    /// Validations by country slot (see [`Tally::country`]); sized at the first country,
    /// then kept (zeroed in place) across flushes.
    countries: Vec<u64>,
    /// Whether any country slot is non-zero.
    any_country: bool,
}

impl Tally {
    /// Counts a validation from `country`.
    #[inline]
    pub fn country(&mut self, country: &str) {
        let slot = alpha2_slot(country).unwrap_or(OTHER);
        if self.countries.is_empty() {
            self.countries.resize(COUNTRY_SLOTS, 0);
        }
        self.countries[slot] += 1;
        self.any_country = true;
    }

    /// Counts a decision of kind `k`.
    #[inline]
    pub fn decided(&mut self, k: NotificationKind) {
        self.decided[k.index()] += 1;
    }

    /// Counts a rejection for `reason`.
    #[inline]
    pub fn rejected(&mut self, reason: RejectReason) {
        self.rejected[reason.index()] += 1;
    }

    /// Adds the tallies to the counters and starts from zero.
    pub fn flush(&mut self, m: &Metrics) {
        if self.folded > 0 {
            m.messages_folded_total.inc_by(self.folded);
        }
        for (i, n) in self.events.iter().enumerate() {
            if *n > 0 {
                m.events_total
                    .with_label_values(&[EVENT_TYPES[i]])
                    .inc_by(*n);
            }
        }
        for (i, n) in self.results.iter().enumerate() {
            if *n > 0 {
                let r = crate::core::ValidationResult::ALL[i];
                m.validations_total
                    .with_label_values(&[r.as_str()])
                    .inc_by(*n);
            }
        }
        for (i, n) in self.rejected.iter().enumerate() {
            if *n > 0 {
                m.events_rejected_total
                    .with_label_values(&[RejectReason::ALL[i].as_str()])
                    .inc_by(*n);
            }
        }
        if self.duplicates > 0 {
            m.events_duplicate_total.inc_by(self.duplicates);
        }
        if self.excluded > 0 {
            m.events_excluded_total.inc_by(self.excluded);
        }
        for (i, n) in self.decided.iter().enumerate() {
            if *n > 0 {
                m.notifications_decided_total
                    .with_label_values(&[NotificationKind::ALL[i].as_str()])
                    .inc_by(*n);
            }
        }
        if self.any_country {
            for (slot, n) in self.countries.iter_mut().enumerate() {
                if *n > 0 {
                    let label = if slot == OTHER {
                        "other"
                    } else {
                        alpha2_code(slot)
                    };
                    m.validations_by_country_total
                        .with_label_values(&[label])
                        .inc_by(*n);
                    *n = 0;
                }
            }
        }
        // From zero: every count from `Default`, the country slots (zeroed above) kept.
        let countries = std::mem::take(&mut self.countries);
        *self = Self {
            countries,
            ..Self::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_are_labelled_as_the_metrics_label_them() {
        let m = Metrics::new().expect("metrics");
        let mut t = Tally::default();
        for c in ["FR", "FR", "de", "ZZ", "USA", ""] {
            t.country(c);
        }
        t.folded = 6;
        t.flush(&m);
        let get = |l: &str| m.validations_by_country_total.with_label_values(&[l]).get();
        assert_eq!((get("FR"), get("ZZ"), get("other")), (2, 1, 3));
        assert_eq!(m.messages_folded_total.get(), 6);
        t.folded = 1;
        t.flush(&m);
        assert_eq!(m.messages_folded_total.get(), 7);
        assert_eq!(get("FR"), 2);
    }

    #[test]
    fn a_flush_starts_every_count_from_zero() {
        let m = Metrics::new().expect("metrics");
        let mut t = Tally::default();
        t.events[0] = 3;
        t.duplicates = 2;
        t.rejected(RejectReason::ALL[0]);
        t.decided(NotificationKind::ALL[0]);
        t.country("FR");
        t.flush(&m);
        t.flush(&m);
        let events = m.events_total.with_label_values(&[EVENT_TYPES[0]]).get();
        let rejected = m
            .events_rejected_total
            .with_label_values(&[RejectReason::ALL[0].as_str()])
            .get();
        let decided = m
            .notifications_decided_total
            .with_label_values(&[NotificationKind::ALL[0].as_str()])
            .get();
        let fr = m
            .validations_by_country_total
            .with_label_values(&["FR"])
            .get();
        assert_eq!(
            (
                events,
                m.events_duplicate_total.get(),
                rejected,
                decided,
                fr
            ),
            (3, 2, 1, 1, 1)
        );
        assert!(!t.any_country && t.countries.iter().all(|&n| n == 0));
    }
}
