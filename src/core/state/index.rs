//! The lookup tables of a state: customer by id, license by (customer, key), plan by name.
//!
//! Owns [`Index`] and everything that finds or inserts a customer, license or plan.
//! Guarantees: the index is never serialized (it is rebuilt by [`PartitionState::rebuild_index`]
//! after a restore or merge), and a license event for an unknown license creates it on
//! the fly (SPEC §1), active, with plan `unknown`.

use std::hash::{BuildHasher, Hash, Hasher};

use super::domains::DomainSet;
use super::records::{Customer, License};
use super::{FastHasher, FastMap, PartitionState};
use crate::codes::Status;
use crate::time::{Micros, NEVER};
use crate::window::DayBitmap;

/// Lookup tables rebuilt from the vectors after deserialization.
#[derive(Debug, Clone, Default)]
pub(super) struct Index {
    pub(super) customers: hashbrown::HashTable<u32>,
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
    pub(super) fn rebuild_index(&mut self) {
        let mut index = Index::default();
        for (i, c) in self.customers.iter().enumerate() {
            let customers = &self.customers;
            let hasher = &index.hasher;
            index
                .customers
                .insert_unique(hasher.hash_one(&*c.id), i as u32, |&j| {
                    hasher.hash_one(&*customers[j as usize].id)
                });
        }
        for (i, p) in self.plans.iter().enumerate() {
            index.plans.insert(p.clone(), i as u32);
        }
        for (i, l) in self.licenses.iter().enumerate() {
            let h = license_hash(&index.hasher, l.customer, l.key());
            let hasher = &index.hasher;
            let licenses = &self.licenses;
            index.licenses.insert_unique(h, i as u32, |&j| {
                let l = &licenses[j as usize];
                license_hash(hasher, l.customer, l.key())
            });
        }
        self.index = index;
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
        let h = license_hash(&self.index.hasher, customer, key);
        self.index
            .licenses
            .find(h, |&j| {
                let l = &self.licenses[j as usize];
                l.customer == customer && l.key.as_bytes() == key.as_bytes()
            })
            .copied()
    }

    /// Appends a license record (its customer already remapped) and indexes it: the
    /// merge's way in, without rebuilding the whole index.
    pub(super) fn push_license(&mut self, l: License) -> u32 {
        let i = self.licenses.len() as u32;
        let h = license_hash(&self.index.hasher, l.customer, l.key());
        self.licenses.push(l);
        let hasher = &self.index.hasher;
        let licenses = &self.licenses;
        self.index.licenses.insert_unique(h, i, |&j| {
            let l = &licenses[j as usize];
            license_hash(hasher, l.customer, l.key())
        });
        i
    }

    /// Room for `customers` and `licenses` more, in the records and their indexes.
    pub(super) fn reserve_records(&mut self, more_customers: usize, more_licenses: usize) {
        self.customers.reserve_exact(more_customers);
        self.licenses.reserve_exact(more_licenses);
        let customers = &self.customers;
        let hasher = &self.index.hasher;
        self.index.customers.reserve(more_customers, |&j| {
            hasher.hash_one(&*customers[j as usize].id)
        });
        let licenses = &self.licenses;
        self.index.licenses.reserve(more_licenses, |&j| {
            let l = &licenses[j as usize];
            license_hash(hasher, l.customer, l.key())
        });
    }

    /// The license of `customer` with `key`, created on the fly when never seen.
    pub(super) fn license_index(&mut self, customer: u32, key: &str, ts: Micros) -> (u32, bool) {
        if let Some(i) = self.find_license(customer, key) {
            return (i, false);
        }
        let plan = self.plan_index("unknown");
        let i = self.licenses.len() as u32;
        self.licenses.push(License {
            customer,
            key: key.into(),
            status: Status::Active,
            plan,
            domain_limit: 0,
            mrr_cents: 0,
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
        });
        let h = license_hash(&self.index.hasher, customer, key);
        let hasher = &self.index.hasher;
        let licenses = &self.licenses;
        self.index.licenses.insert_unique(h, i, |&j| {
            let l = &licenses[j as usize];
            license_hash(hasher, l.customer, l.key())
        });
        let c = &mut self.customers[customer as usize];
        c.licenses.push(i);
        c.active_licenses += 1;
        (i, true)
    }
}
