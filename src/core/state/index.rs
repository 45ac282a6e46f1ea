//! The lookup tables of a state: customer by id, license by (customer, key), plan by name.
//!
//! Owns [`Index`] and everything that finds or inserts a customer, license or plan.
//! A license is found through its customer: among the customer's own licenses when it
//! has at most [`SCAN_MAX`] (no table, and no second random memory access for the usual
//! customer), in the partition's license table only for the customers with more (so a
//! customer with many licenses still costs O(1) per event).
//! Guarantees: the index is never serialized (a merge adds to every table as it goes; a
//! restore keeps the customer and plan tables as it adds customers, then fills the license
//! table once with [`PartitionState::index_licenses`]), and a license event for an unknown
//! license creates it on the fly (SPEC §1), active, with plan `unknown`.

use std::hash::{BuildHasher, Hash, Hasher};

use super::domains::DomainSet;
use super::records::{Customer, License};
use super::terms::Terms;
use super::{FastHasher, FastMap, PartitionState};
use crate::codes::Status;
use crate::time::{Micros, NEVER};
use crate::window::DayBitmap;

/// A customer with at most this many licenses has them looked up by a scan of its own
/// list (held inline in the customer record), and none of them in the license table.
pub(super) const SCAN_MAX: usize = super::license_list::INLINE;

/// Lookup tables rebuilt from the vectors after deserialization.
#[derive(Debug, Clone, Default)]
pub(super) struct Index {
    pub(super) customers: hashbrown::HashTable<u32>,
    /// The licenses of the customers with more than [`SCAN_MAX`].
    pub(super) licenses: hashbrown::HashTable<u32>,
    pub(super) plans: FastMap<Box<str>, u32>,
    pub(super) hasher: FastHasher,
}

pub(super) fn license_hash(hasher: &impl BuildHasher, customer: u32, key: &str) -> u64 {
    let mut h = hasher.build_hasher();
    customer.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}

/// A stable 64-bit hash of a domain name (stable across processes and machines, so a
/// serialized state moves between instances).
pub(super) fn domain_hash(domain: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(domain.as_bytes())
}

impl PartitionState {
    /// Room for `n` more customers in the record vector and the customer table (a restore
    /// knows how many records it adds).
    pub(super) fn reserve_customers(&mut self, n: usize) {
        self.customers.reserve(n);
        let (customers, hasher) = (&self.customers, &self.index.hasher);
        self.index
            .customers
            .reserve(n, |&j| hasher.hash_one(&*customers[j as usize].id));
    }

    /// Fills the license table (emptied first) from the license vector; the customer and
    /// plan tables are left as they are. A restore adds its customers and plans through
    /// their tables, so this is the one table it has left to build.
    pub(super) fn index_licenses(&mut self) {
        let (customers, licenses, index) = (&self.customers, &self.licenses, &mut self.index);
        index.licenses.clear();
        let hasher = &index.hasher;
        for (i, l) in licenses.iter().enumerate() {
            if customers[l.customer as usize].licenses.inline().is_some() {
                continue;
            }
            let h = license_hash(hasher, l.customer, l.key());
            index.licenses.insert_unique(h, i as u32, |&j| {
                let l = &licenses[j as usize];
                license_hash(hasher, l.customer, l.key())
            });
        }
    }

    /// The position of customer `id`, if this state holds it (a lookup, no insertion).
    pub(crate) fn customer_position(&self, id: &str) -> Option<u32> {
        self.find_customer(id)
    }

    pub(super) fn find_customer(&self, id: &str) -> Option<u32> {
        let h = self.index.hasher.hash_one(id);
        self.index
            .customers
            .find(h, |&j| {
                self.customers[j as usize].id.as_bytes() == id.as_bytes()
            })
            .copied()
    }

    pub(super) fn insert_customer(&mut self, c: Customer) -> u32 {
        let i = self.customers.len() as u32;
        let h = self.index.hasher.hash_one(&*c.id);
        self.customers.push(c);
        let customers = &self.customers;
        let hasher = &self.index.hasher;
        self.index
            .customers
            .insert_unique(h, i, |&j| hasher.hash_one(&*customers[j as usize].id));
        i
    }

    pub(super) fn customer_index(&mut self, id: &str) -> u32 {
        match self.find_customer(id) {
            Some(i) => i,
            None => self.insert_customer(Customer::new(id)),
        }
    }

    pub(super) fn plan_index(&mut self, plan: &str) -> u32 {
        if let Some(i) = self.index.plans.get(plan) {
            return *i;
        }
        let i = self.plans.len() as u32;
        self.plans.push(plan.into());
        self.index.plans.insert(plan.into(), i);
        i
    }

    pub(super) fn find_license(&self, customer: u32, key: &str) -> Option<u32> {
        if let Some(own) = self.customers[customer as usize].licenses.inline() {
            return own
                .iter()
                .copied()
                .find(|&j| self.licenses[j as usize].key.as_bytes() == key.as_bytes());
        }
        let h = license_hash(&self.index.hasher, customer, key);
        self.index
            .licenses
            .find(h, |&j| {
                let l = &self.licenses[j as usize];
                l.customer == customer && l.key.as_bytes() == key.as_bytes()
            })
            .copied()
    }

    /// Appends a license record (its customer already remapped, and already listing it)
    /// and indexes it: the merge's way in, without rebuilding the whole index.
    pub(super) fn push_license(&mut self, l: License) -> u32 {
        let i = self.licenses.len() as u32;
        let big = self.customers[l.customer as usize]
            .licenses
            .inline()
            .is_none();
        self.licenses.push(l);
        if big {
            self.table_license(i);
        }
        i
    }

    /// Puts license `i` into the license table.
    fn table_license(&mut self, i: u32) {
        let l = &self.licenses[i as usize];
        let h = license_hash(&self.index.hasher, l.customer, l.key());
        let hasher = &self.index.hasher;
        let licenses = &self.licenses;
        self.index.licenses.insert_unique(h, i, |&j| {
            let l = &licenses[j as usize];
            license_hash(hasher, l.customer, l.key())
        });
    }

    /// Room for `customers` and `licenses` more, in the records and the customer index.
    pub(super) fn reserve_records(&mut self, more_customers: usize, more_licenses: usize) {
        self.customers.reserve_exact(more_customers);
        self.licenses.reserve_exact(more_licenses);
        let customers = &self.customers;
        let hasher = &self.index.hasher;
        self.index.customers.reserve(more_customers, |&j| {
            hasher.hash_one(&*customers[j as usize].id)
        });
        // The license table only holds the licenses of customers with many: not reserved.
    }

    /// The license of `customer` with `key`, created on the fly when never seen.
    pub(super) fn license_index(&mut self, customer: u32, key: &str, ts: Micros) -> (u32, bool) {
        if let Some(i) = self.find_license(customer, key) {
            return (i, false);
        }
        let plan = self.plan_index("unknown");
        let terms = self.terms.intern(Terms {
            plan,
            domain_limit: 0,
            mrr_cents: 0,
        });
        let i = self.licenses.len() as u32;
        self.licenses.push(License {
            customer,
            key: key.into(),
            status: Status::Active,
            terms,
            email: None,
            since: ts,
            issued: false,
            expires_at: NEVER,
            first_activation: NEVER,
            first_valid: NEVER,
            last_validation: NEVER,
            validated_days: DayBitmap::default(),
            domains: DomainSet::default(),
            extras: None,
            watched: Default::default(),
        });
        let c = &mut self.customers[customer as usize];
        c.licenses.push(i);
        c.active_licenses += 1;
        match c.licenses.len() {
            n if n <= SCAN_MAX => {}
            // Just past the scan: the customer's licenses move into the table.
            n if n == SCAN_MAX + 1 => {
                for j in self.customers[customer as usize].licenses.clone() {
                    self.table_license(j);
                }
            }
            _ => self.table_license(i),
        }
        (i, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        (0..3 * SCAN_MAX).map(|i| format!("K{i}")).collect()
    }

    /// Licenses of customers `a` and `b`, the same keys in each, as many as to outgrow
    /// the scan; each found by its own customer, before and after the move to the table.
    fn state_with(a: &str, b: &str) -> PartitionState {
        let mut s = PartitionState::new();
        let (ca, cb) = (s.customer_index(a), s.customer_index(b));
        for (n, k) in keys().iter().enumerate() {
            let (i, new) = s.license_index(ca, k, 0);
            let (j, new_b) = s.license_index(cb, k, 0);
            assert!(new && new_b && i != j);
            for (m, k) in keys().iter().enumerate().take(n + 1) {
                assert_eq!(
                    s.find_license(ca, k),
                    Some(s.customers[ca as usize].licenses[m])
                );
            }
        }
        s
    }

    fn assert_found(s: &PartitionState, a: &str, b: &str) {
        let ca = s.find_customer(a).unwrap();
        let cb = s.find_customer(b).unwrap();
        for (m, k) in keys().iter().enumerate() {
            let i = s.find_license(ca, k).unwrap();
            assert_eq!(i, s.customers[ca as usize].licenses[m]);
            assert_eq!(s.licenses[i as usize].customer, ca);
            assert_eq!(
                s.licenses[s.find_license(cb, k).unwrap() as usize].customer,
                cb
            );
        }
        assert_eq!(s.find_license(ca, "K-none"), None);
    }

    #[test]
    fn licenses_are_found_through_their_customer_before_and_after_the_table() {
        let mut s = state_with("a", "b");
        assert_eq!(s.index.licenses.len(), 2 * keys().len());
        assert_found(&s, "a", "b");
        s.index_licenses();
        assert_found(&s, "a", "b");
        s.merge(state_with("c", "d"));
        assert_found(&s, "a", "b");
        assert_found(&s, "c", "d");
        // A customer with few licenses puts none in the table.
        let mut few = PartitionState::new();
        let c = few.customer_index("e");
        for k in keys().iter().take(SCAN_MAX) {
            few.license_index(c, k, 0);
        }
        assert_eq!(few.index.licenses.len(), 0);
        assert!(keys()
            .iter()
            .take(SCAN_MAX)
            .all(|k| few.find_license(c, k).is_some()));
    }
}
