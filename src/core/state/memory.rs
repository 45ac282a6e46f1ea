//! Memory accounting: the approximate bytes a state holds.
//!
//! Owns [`PartitionState::approx_bytes`] and its byte helpers. Guarantees: the figure
//! counts the structs and their heap allocations (not the allocator's overhead), so it
//! grows and shrinks with the state; it is an estimate for metrics, never a limit.

use compact_str::CompactString;

use super::expiring::index_bytes;
use super::kept::Kept;
use super::records::{Customer, CustomerExtras, License, LicenseExtras};
use super::{DayStats, PartitionState};

/// Heap bytes of an id or key (none when it is short enough to be held inline).
pub(super) fn heap_bytes(s: &CompactString) -> usize {
    if s.is_heap_allocated() {
        s.capacity()
    } else {
        0
    }
}

impl PartitionState {
    /// Approximate bytes held by the state (structs and their heap allocations).
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        let lic: usize = self
            .licenses
            .iter()
            .map(|l| {
                size_of::<License>()
                    + l.text_bytes()
                    + l.license8().map_or(0, |r| r.bytes())
                    + l.domains.heap_bytes()
                    + l.extras.as_ref().map_or(0, |e| {
                        size_of::<LicenseExtras>()
                            + e.rate_limited.heap_bytes()
                            + e.features_denied.heap_bytes()
                    })
            })
            .sum();
        let cust: usize = self
            .customers
            .iter()
            .map(|c| {
                size_of::<Customer>()
                    + heap_bytes(&c.id)
                    + c.seen_ids.heap_bytes()
                    + c.licenses.heap_bytes()
                    + c.validations.heap_bytes()
                    + c.extras.as_ref().map_or(0, |e| {
                        size_of::<CustomerExtras>()
                            + e.invites.heap_bytes()
                            + e.open_tickets.heap_bytes()
                            + e.notifications.capacity() * size_of::<Kept>()
                            + e.notifications.iter().map(Kept::heap_bytes).sum::<usize>()
                            + e.expiring.as_deref().map_or(0, index_bytes)
                            + e.upgrade_watch.as_ref().map_or(0, |w| w.bytes())
                    })
            })
            .sum();
        let index = self.index.customers.capacity() * 5 + self.index.licenses.capacity() * 5;
        let days: usize = self
            .days
            .values()
            .map(|s| size_of::<DayStats>() + s.countries.heap_bytes())
            .sum();
        lic + cust + index + days + self.emails.heap_bytes() + self.terms.heap_bytes()
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use std::mem::size_of;

    /// The records' sizes are a budget (issue 10 wants at most 256 B per license in all):
    /// growing one must be a decision, not an accident. Run with `--nocapture` to see them.
    #[test]
    fn records_stay_within_their_budget() {
        eprintln!(
            "License {} LicenseExtras {} Customer {} CustomerExtras {}",
            size_of::<License>(),
            size_of::<LicenseExtras>(),
            size_of::<Customer>(),
            size_of::<CustomerExtras>()
        );
        // Issue 10: 160 -> 152 by holding the issue time and the first sight in one field.
        // Issue 10: 152 -> 144 by holding the email in the state's buffer (`emails.rs`).
        // Issue 10: 144 -> 128 by holding the plan, domain limit and MRR as one position
        // in the state's terms table (`terms.rs`).
        assert!(size_of::<License>() <= 128, "License grew");
        // Issue 10: 200 -> 168 by moving the churn cooldown to the extras and holding one
        // remembered id inline instead of two.
        // Issue 10: 168 -> 152 by boxing the upgrade watch (`watch.rs`), which most
        // customers never need.
        // Issue 10: 152 -> 144 by moving the watch's box into the extras, behind a flag
        // in the record (`Customer::watching`).
        // Issue 10: 144 -> 136 by keeping no `oldest` beside a short list of seen ids
        // (`dedup.rs`: it is read whole at each remember, which takes its minimum).
        // Issue 10: 136 -> 128 by holding the seen ids as none, one, an exact boxed slice
        // or a boxed map, in one 24-byte enum (`dedup.rs`).
        // Issue 10: 128 -> 120 by holding a customer's license positions in 16 bytes, three
        // inline (`license_list.rs`), instead of a 24-byte `SmallVec` with four.
        assert!(size_of::<Customer>() <= 120, "Customer grew");
        assert_eq!(size_of::<Option<Box<LicenseExtras>>>(), size_of::<usize>());
        // Issue 10: 136 -> 80 by boxing the open tickets' set (`tickets.rs`), which most
        // customers with extras never need.
        // Issue 10: 80 -> 88 for the position from which kept notifications may read their
        // recipient from their license (`kept.rs`): glibc's chunk for the box is 96 bytes
        // either way (the request and 8 bytes, rounded up to 16).
        assert!(size_of::<CustomerExtras>() <= 88, "CustomerExtras grew");
    }

    /// A customer's kept notifications: exact room for the first four, then growth by a
    /// quarter, never doubling.
    #[test]
    fn kept_notifications_leave_at_most_a_quarter_unused() {
        use crate::codes::NotificationKind;
        use crate::signals::Notification;
        let mut e = CustomerExtras::default();
        for i in 0..200usize {
            let n = Notification {
                kind: NotificationKind::Upgrade,
                to: "owner@customer.example".into(),
                customer_id: "cus_1".into(),
                license_key: Some(format!("LK-{i}")),
                at: i as i64,
                reasons: vec!["domain_utilization".into()],
                facts: None,
            };
            e.keep(Kept::new(n, Some(i as u32), false, |_| 0));
            let (len, cap) = (e.notifications.len(), e.notifications.capacity());
            if len <= 4 {
                assert_eq!(cap, len);
            } else {
                assert!(cap * 4 <= len * 5 + 4, "{len} kept in room for {cap}");
            }
        }
    }
}
