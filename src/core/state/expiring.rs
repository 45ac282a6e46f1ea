//! The expiry index of a customer with many licenses: which of them the daily check's
//! expiry reminders (SPEC §8.5, `reminders.rs`) look at.
//!
//! The daily check runs at the first event of each new day of a customer (and at each
//! wall-clock midnight). Reading every license of the customer there would make that event's
//! cost grow with the customer's licenses, so a customer with more than [`EXPIRY_SCAN`]
//! holds its licenses with an expiry in an ordered set by expiry (`CustomerExtras`, built
//! at its first daily check past that size), and a check takes out only those whose notice
//! window has opened by its last midnight. Owns [`ExpiryIndex`] and its upkeep.
//!
//! Why that is exact. Each license taken out is decided as the walk decides it, and leaves
//! the set for good unless an event of its own puts it back: it was reminded of this expiry,
//! or its window closed before the range or before the event's `ts` (later ranges start
//! later), or it was not active or had no email, and only its own `license.issued` or
//! return to `active` changes that, and both put it back. A license whose window opens
//! after the range stays, and so does every later one: the set is ordered by expiry, and
//! the window opens `notice` before it. A set built later than its customer's licenses got
//! their expiries holds a superset, which is decided alike. Guarantees: the reminders are
//! exactly the walk's (`reminders.rs`'s tests hold it on generated logs with ticks); a
//! daily check costs O(log n) per license it takes out, and the upkeep O(log n) per expiry
//! change or return to `active`.

use std::collections::BTreeSet;

use super::PartitionState;
use crate::expiry::notice_opens;
use crate::time::{Day, Micros, NEVER};

/// A customer with at most this many licenses has them all read by its daily check.
pub(super) const EXPIRY_SCAN: usize = 16;

/// A customer's licenses that may still be reminded, as (expiry, license), by expiry.
pub(crate) type ExpiryIndex = BTreeSet<(Micros, u32)>;

impl PartitionState {
    fn expiry_index_mut(&mut self, ci: u32) -> Option<&mut ExpiryIndex> {
        let e = self.customers[ci as usize].extras.as_deref_mut()?;
        e.expiring.as_deref_mut()
    }

    /// Keeps license `li` listed by its expiry after the expiry changed from `old`.
    pub(super) fn relist_expiry(&mut self, li: u32, old: Micros) {
        let (ci, expiry) = {
            let l = &self.licenses[li as usize];
            (l.customer, l.expires_at)
        };
        if let Some(index) = self.expiry_index_mut(ci) {
            index.remove(&(old, li));
            if expiry != NEVER {
                index.insert((expiry, li));
            }
        }
    }

    /// Lists license `li` again after it returned to `active`.
    pub(super) fn relist_active(&mut self, li: u32) {
        let l = &self.licenses[li as usize];
        let (ci, expiry) = (l.customer, l.expires_at);
        if expiry != NEVER {
            if let Some(index) = self.expiry_index_mut(ci) {
                index.insert((expiry, li));
            }
        }
    }

    /// The licenses of customer `ci` that its daily check over midnights up to `last` must
    /// decide, taken out of its index; `None` when it has too few licenses for one (the
    /// check reads them all). Builds the index at the first check that needs it.
    pub(super) fn take_due_expiries(
        &mut self,
        ci: u32,
        last: Day,
        notice_days: u32,
    ) -> Option<Vec<u32>> {
        let c = &self.customers[ci as usize];
        if c.licenses.len() <= EXPIRY_SCAN {
            return None;
        }
        if c.extras.as_ref().is_none_or(|e| e.expiring.is_none()) {
            let index: ExpiryIndex = c
                .licenses
                .iter()
                .map(|&li| (self.licenses[li as usize].expires_at, li))
                .filter(|(e, _)| *e != NEVER)
                .collect();
            self.customers[ci as usize].extras_mut().expiring = Some(Box::new(index));
        }
        let index = self.expiry_index_mut(ci)?;
        let mut due = Vec::new();
        while let Some(&(expiry, li)) = index.first() {
            if notice_opens(expiry, notice_days) > last as i64 {
                break;
            }
            index.pop_first();
            due.push(li);
        }
        Some(due)
    }
}

/// Heap bytes an index holds, the box included (B-tree nodes hold up to 11 entries; counted
/// at two thirds full).
pub(super) fn index_bytes(index: &ExpiryIndex) -> usize {
    std::mem::size_of::<ExpiryIndex>() + index.len() * 16 * 3 / 2
}
