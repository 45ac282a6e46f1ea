//! A license's subscription terms (its plan, domain limit and MRR), interned.
//!
//! Owns [`TermsTable`]: each distinct [`Terms`] that some license holds is stored once, and
//! a license holds its 4-byte position instead of the three fields (20 bytes), which makes
//! the license record 16 bytes smaller. A fleet sells a handful of plans at a handful of
//! prices, so the table stays a few entries long and in cache.
//!
//! Guarantees: interning and releasing are O(1); an entry lives exactly as long as some
//! license holds it (its references are counted, and a freed slot is reused), so the table
//! never holds more entries than the state has licenses, whatever sequence of terms the
//! events carry. Where every license has terms of its own (say, a price per seat), an entry
//! costs about 32 bytes beside the 16 saved: the layout bets on shared terms, and the
//! worst case stays bounded. Never serialized: a license's wire form names its terms in
//! full, and a restore interns them again.

use super::FastHasher;

/// What a license is sold at: its plan (a position in the state's plan names), its domain
/// limit and its monthly recurring revenue in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Terms {
    pub(crate) plan: u32,
    pub(crate) domain_limit: u64,
    pub(crate) mrr_cents: u64,
}

/// One entry: the terms, with the count of licenses holding them in what would otherwise
/// be [`Terms`]' padding (24 bytes in all).
#[derive(Debug, Clone)]
struct Slot {
    plan: u32,
    /// Licenses holding these terms; 0 for a free slot.
    refs: u32,
    domain_limit: u64,
    mrr_cents: u64,
}

impl Slot {
    fn terms(&self) -> Terms {
        Terms {
            plan: self.plan,
            domain_limit: self.domain_limit,
            mrr_cents: self.mrr_cents,
        }
    }
}

/// The distinct terms held by a state's licenses.
#[derive(Debug, Clone, Default)]
pub(crate) struct TermsTable {
    slots: Vec<Slot>,
    /// Slots with no reference, reused before the vector grows.
    free: Vec<u32>,
    /// The live slots by their terms.
    index: hashbrown::HashTable<u32>,
    hasher: FastHasher,
}

impl TermsTable {
    /// The terms at `i` (a position some license holds).
    pub(crate) fn get(&self, i: u32) -> Terms {
        self.slots[i as usize].terms()
    }

    /// One more license holds `t`: its position, found or made.
    pub(crate) fn intern(&mut self, t: Terms) -> u32 {
        let h = self.hasher.hash_one(t);
        let slots = &self.slots;
        if let Some(&i) = self.index.find(h, |&j| slots[j as usize].terms() == t) {
            self.slots[i as usize].refs += 1;
            return i;
        }
        let slot = Slot {
            plan: t.plan,
            refs: 1,
            domain_limit: t.domain_limit,
            mrr_cents: t.mrr_cents,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(h, i, |&j| hasher.hash_one(slots[j as usize].terms()));
        i
    }

    /// One license holds `i` no more; the entry goes when none does.
    pub(crate) fn release(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        slot.refs -= 1;
        if slot.refs > 0 {
            return;
        }
        let h = self.hasher.hash_one(slot.terms());
        if let Ok(e) = self.index.find_entry(h, |&j| j == i) {
            e.remove();
        }
        self.free.push(i);
    }

    /// A license moves from `old` to `t`: its new position (the same when equal). The old
    /// entry is released first, so a license alone on its terms keeps its slot.
    pub(crate) fn replace(&mut self, old: u32, t: Terms) -> u32 {
        if self.get(old) == t {
            return old;
        }
        self.release(old);
        self.intern(t)
    }

    /// Live entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Heap bytes held (the byte accounting of `memory.rs`).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.free.capacity() * 4
            + self.index.allocation_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn t(plan: u32, mrr: u64) -> Terms {
        Terms {
            plan,
            domain_limit: 3,
            mrr_cents: mrr,
        }
    }

    #[test]
    fn a_slot_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }

    #[test]
    fn equal_terms_share_one_entry_and_it_goes_with_its_last_holder() {
        let mut table = TermsTable::default();
        let a = table.intern(t(0, 2900));
        let b = table.intern(t(0, 2900));
        assert_eq!(a, b);
        assert_eq!(table.len(), 1);
        let c = table.intern(t(1, 9900));
        assert_ne!(a, c);
        assert_eq!(table.get(c), t(1, 9900));
        table.release(a);
        assert_eq!(table.len(), 2, "one holder of {a} is left");
        table.release(b);
        assert_eq!(table.len(), 1);
        // The freed slot is reused, and the old terms are not found there any more.
        let d = table.intern(t(2, 100));
        assert_eq!(d, a);
        assert_eq!(table.get(d), t(2, 100));
        assert_eq!(table.intern(t(0, 2900)), 2);
    }

    #[test]
    fn one_license_changing_price_at_every_event_holds_one_entry() {
        let mut table = TermsTable::default();
        let mut at = table.intern(t(0, 0));
        for mrr in 1..10_000 {
            at = table.replace(at, t(0, mrr));
            assert_eq!(table.get(at), t(0, mrr));
        }
        assert_eq!(table.len(), 1);
        assert_eq!(table.slots.len(), 1);
    }

    proptest! {
        /// Against a model: licenses moving between random terms always read back their
        /// own, and the table holds exactly the distinct terms held.
        #[test]
        fn holds_exactly_the_terms_its_licenses_hold(
            moves in prop::collection::vec((0usize..20, 0u32..3, 0u64..4), 1..300),
        ) {
            let mut table = TermsTable::default();
            let mut held: HashMap<usize, (u32, Terms)> = HashMap::new();
            for (license, plan, mrr) in moves {
                let terms = t(plan, mrr);
                let at = match held.get(&license) {
                    Some(&(old, _)) => table.replace(old, terms),
                    None => table.intern(terms),
                };
                held.insert(license, (at, terms));
                for &(at, terms) in held.values() {
                    prop_assert_eq!(table.get(at), terms);
                }
                let distinct: std::collections::HashSet<Terms> =
                    held.values().map(|v| v.1).collect();
                prop_assert_eq!(table.len(), distinct.len());
                prop_assert!(table.slots.len() <= held.len());
            }
        }
    }
}
