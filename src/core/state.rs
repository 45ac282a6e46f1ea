//! The fold: per-partition state, and how each event changes it (SPEC §1, §2, §5).
//!
//! Owns [`PartitionState`]: the customers and licenses of one partition (or of a whole
//! replay), that partition's share of the per-day figures, the MRR book, and every
//! notification decided so far. It has no I/O and no clock: time comes in only through
//! event timestamps and [`PartitionState::advance_to`].
//!
//! Guarantees:
//! - every decision for a customer depends only on that customer's own events in their
//!   own arrival order, so any interleaving of customers and any split of customers over
//!   states gives the same decisions;
//! - the state serializes with serde (see [`PartitionState::to_bytes`]) and two states
//!   over disjoint customers merge into one ([`PartitionState::merge`]);
//! - nothing here panics on any decoded event.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};

/// The hasher of every in-memory map and index of the state: fast, non-cryptographic,
/// seeded per process. Nothing is serialized by its hash (maps serialize as maps, the
/// indexes are rebuilt after `from_bytes`), so the seed never leaves the process.
pub(crate) type FastHasher = ahash::RandomState;
/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, FastHasher>;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::config::CoreConfig;
use super::dedup::SeenIds;
use super::event::{Event, EventKind, TicketCategory, ValidationResult};
use super::health::{self, Health, HealthInputs};
use super::signals::{cooldown_allows, Facts, LicenseFacts, Notification, NotificationKind};
use super::time::{day_of, format_rfc3339, midnight, Day, Micros, DAY, NEVER, SECOND};
use super::window::{DayBitmap, DayCounts};
use compact_str::CompactString;

/// A license's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Status {
    Active,
    Expired,
    Revoked,
    Canceled,
}

impl Status {
    pub const ALL: [Status; 4] = [Self::Active, Self::Expired, Self::Revoked, Self::Canceled];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Canceled => "canceled",
        }
    }
}

/// What became of one event handed to [`PartitionState::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    Duplicate,
}

/// Event counts of the report's `events` section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    pub applied: u64,
    pub rejected: u64,
    pub duplicates: u64,
}

/// One customer (or, with id `""`, the events that carry none).
///
/// Serializes as [`CustomerWire`], the form it has always had (the upgrade candidates
/// inside the extras); in memory the candidates are inline, since every customer with a
/// license has some.
#[derive(Debug, Clone)]
pub(crate) struct Customer {
    /// Inline (serializes as a string): the lookup compares it without a pointer chase.
    pub(crate) id: CompactString,
    /// The largest `ts` applied, or the latest wall-clock midnight passed; `NEVER` before any.
    pub(crate) clock: Micros,
    /// `event_id` → `ts` of its latest application, kept for the de-duplication horizon.
    seen_ids: SeenIds,
    /// The usual few are held inline.
    pub(crate) licenses: SmallVec<[u32; 4]>,
    pub(crate) active_licenses: u32,
    /// Validations (not `invalid_format`) by day.
    pub(crate) validations: DayCounts,
    /// Licenses that may have an upgrade trigger of their own (checked after each event).
    upgrade_candidates: SmallVec<[u32; 2]>,
    /// What few customers have: boxed, so most customers pay one pointer for it.
    extras: Option<Box<CustomerExtras>>,
    pub(crate) payment_failed: bool,
    last_churn_at: Micros,
}

/// The parts of a customer that most customers never use.
#[derive(Debug, Clone, Default)]
pub(crate) struct CustomerExtras {
    /// `team.member_invited` by day.
    invites: DayCounts,
    /// Support tickets opened and not closed.
    open_tickets: Vec<Box<str>>,
}

/// The serialized form of a [`Customer`].
#[derive(Serialize)]
#[serde(rename = "Customer")]
struct CustomerWireRef<'a> {
    id: &'a CompactString,
    clock: Micros,
    seen_ids: &'a SeenIds,
    licenses: &'a SmallVec<[u32; 4]>,
    active_licenses: u32,
    validations: &'a DayCounts,
    extras: Option<ExtrasWireRef<'a>>,
    payment_failed: bool,
    last_churn_at: Micros,
}

#[derive(Serialize)]
#[serde(rename = "CustomerExtras")]
struct ExtrasWireRef<'a> {
    upgrade_candidates: &'a [u32],
    invites: &'a DayCounts,
    open_tickets: &'a [Box<str>],
}

#[derive(Deserialize)]
#[serde(rename = "Customer")]
struct CustomerWire {
    id: CompactString,
    clock: Micros,
    seen_ids: SeenIds,
    licenses: SmallVec<[u32; 4]>,
    active_licenses: u32,
    validations: DayCounts,
    extras: Option<ExtrasWire>,
    payment_failed: bool,
    last_churn_at: Micros,
}

#[derive(Deserialize)]
#[serde(rename = "CustomerExtras")]
struct ExtrasWire {
    upgrade_candidates: SmallVec<[u32; 2]>,
    invites: DayCounts,
    open_tickets: Vec<Box<str>>,
}

impl Serialize for Customer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        static NO_DAYS: DayCounts = DayCounts::new();
        let extras =
            (self.extras.is_some() || !self.upgrade_candidates.is_empty()).then(|| ExtrasWireRef {
                upgrade_candidates: &self.upgrade_candidates,
                invites: self.extras.as_ref().map_or(&NO_DAYS, |e| &e.invites),
                open_tickets: self.open_tickets(),
            });
        CustomerWireRef {
            id: &self.id,
            clock: self.clock,
            seen_ids: &self.seen_ids,
            licenses: &self.licenses,
            active_licenses: self.active_licenses,
            validations: &self.validations,
            extras,
            payment_failed: self.payment_failed,
            last_churn_at: self.last_churn_at,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Customer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = CustomerWire::deserialize(d)?;
        let (upgrade_candidates, extras) = match w.extras {
            None => (SmallVec::new(), None),
            Some(e) => {
                let rest = (!e.invites.is_empty() || !e.open_tickets.is_empty()).then(|| {
                    Box::new(CustomerExtras {
                        invites: e.invites,
                        open_tickets: e.open_tickets,
                    })
                });
                (e.upgrade_candidates, rest)
            }
        };
        Ok(Customer {
            id: w.id,
            clock: w.clock,
            seen_ids: w.seen_ids,
            licenses: w.licenses,
            active_licenses: w.active_licenses,
            validations: w.validations,
            upgrade_candidates,
            extras,
            payment_failed: w.payment_failed,
            last_churn_at: w.last_churn_at,
        })
    }
}

impl Customer {
    fn new(id: &str) -> Self {
        Self {
            id: id.into(),
            clock: NEVER,
            seen_ids: SeenIds::default(),
            licenses: SmallVec::new(),
            active_licenses: 0,
            validations: DayCounts::default(),
            upgrade_candidates: SmallVec::new(),
            extras: None,
            payment_failed: false,
            last_churn_at: NEVER,
        }
    }

    fn is_duplicate(&self, id: &str, horizon: Micros) -> bool {
        self.seen_ids
            .is_duplicate(id, self.clock.saturating_sub(horizon))
    }

    fn remember_id(&mut self, id: &str, ts: Micros, horizon: Micros) {
        self.seen_ids
            .remember(id, ts, self.clock.saturating_sub(horizon));
    }

    fn extras_mut(&mut self) -> &mut CustomerExtras {
        self.extras.get_or_insert_with(Default::default)
    }

    pub(crate) fn invites(&self) -> Option<&DayCounts> {
        self.extras.as_ref().map(|e| &e.invites)
    }

    pub(crate) fn open_tickets(&self) -> &[Box<str>] {
        self.extras.as_ref().map_or(&[], |e| &e.open_tickets)
    }
}

/// One license.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct License {
    pub(crate) customer: u32,
    /// Inline (serializes as a string): the lookup compares it without a pointer chase.
    key: CompactString,
    pub(crate) status: Status,
    pub(crate) plan: u32,
    pub(crate) domain_limit: u64,
    pub(crate) mrr_cents: u64,
    email: Option<Box<str>>,
    /// Set by the first `license.issued` to arrive; `NEVER` for a license created on the fly.
    pub(crate) issued_at: Micros,
    pub(crate) first_sight: Micros,
    pub(crate) expires_at: Micros,
    pub(crate) first_activation: Micros,
    pub(crate) first_valid: Micros,
    /// Latest validation by `ts`, any result but `invalid_format`.
    pub(crate) last_validation: Micros,
    validated_days: DayBitmap,
    /// Registered domains, as 64-bit hashes, sorted (two kept inline).
    pub(crate) domains: SmallVec<[u64; 2]>,
    /// Which side tables hold an entry for this license ([`IN_RATE_LIMITED`],
    /// [`IN_FEATURES_DENIED`]), so that most events skip those lookups. Not serialized:
    /// rebuilt with the index.
    #[serde(skip)]
    side: u8,
}

/// [`License::side`]: the license has an entry in `rate_limited`.
const IN_RATE_LIMITED: u8 = 1;
/// [`License::side`]: the license has an entry in `features_denied`.
const IN_FEATURES_DENIED: u8 = 2;

impl License {
    /// The issue time, or the first sight of a license never issued.
    pub(crate) fn issued_or_seen(&self) -> Micros {
        if self.issued_at != NEVER {
            self.issued_at
        } else {
            self.first_sight
        }
    }

    pub(crate) fn key(&self) -> &str {
        self.key.as_str()
    }

    pub(crate) fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    fn set_email(&mut self, email: Option<&str>) {
        if self.email() != email {
            self.email = email.map(Into::into);
        }
    }

    /// Heap bytes held by the key and email.
    fn text_bytes(&self) -> usize {
        heap_bytes(&self.key) + self.email.as_ref().map_or(0, |e| e.len())
    }
}

/// What the upgrade triggers of one license are computed from.
struct TriggerInputs<'a> {
    license: &'a License,
    rate_limited: Option<&'a DayCounts>,
    features_denied: Option<&'a DayCounts>,
    invites: Option<&'a DayCounts>,
}

/// A set of upgrade triggers (SPEC §5), listed in the fixed order of [`Triggers::NAMES`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Triggers(u8);

impl Triggers {
    const NAMES: [&'static str; 4] = [
        "domain_limit_approaching",
        "rate_limit_frequent",
        "feature_interest",
        "team_growth",
    ];
    const DOMAIN_LIMIT_APPROACHING: u8 = 0;
    const RATE_LIMIT_FREQUENT: u8 = 1;
    const FEATURE_INTEREST: u8 = 2;
    const TEAM_GROWTH: u8 = 3;

    fn insert(&mut self, t: u8) {
        self.0 |= 1 << t;
    }

    pub(crate) fn len(self) -> u32 {
        self.0.count_ones()
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The trigger names, in order.
    pub(crate) fn names(self) -> impl Iterator<Item = &'static str> {
        (0..Self::NAMES.len())
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(|i| Self::NAMES[i])
    }

    pub(crate) fn to_strings(self) -> Vec<String> {
        self.names().map(str::to_string).collect()
    }
}

/// The latest decision instants of one license, for the cooldowns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LicenseCooldowns {
    upgrade: Micros,
    renewal: Micros,
}

impl Default for LicenseCooldowns {
    fn default() -> Self {
        Self {
            upgrade: NEVER,
            renewal: NEVER,
        }
    }
}

/// One day's figures, over every customer of the partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DayStats {
    /// `license.validated` by result, in [`ValidationResult::ALL`] order.
    pub(crate) by_result: [u64; 6],
    /// Distinct licenses validated (not `invalid_format`).
    pub(crate) dav: u64,
    pub(crate) countries: BTreeMap<String, u64>,
}

/// MRR changes booked by day; days before the retained window collapse into `base`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MrrBook {
    pub(crate) base: i128,
    pub(crate) base_through: Option<Day>,
    pub(crate) days: BTreeMap<Day, i128>,
    pub(crate) current: i128,
}

impl MrrBook {
    fn book(&mut self, day: Day, delta: i128) {
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
    fn collapse_before(&mut self, floor: Day) {
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

/// The state of one partition: its customers, licenses and per-day figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionState {
    pub(crate) customers: Vec<Customer>,
    pub(crate) licenses: Vec<License>,
    pub(crate) plans: Vec<Box<str>>,
    pub(crate) days: BTreeMap<Day, DayStats>,
    pub(crate) mrr: MrrBook,
    pub(crate) counts: EventCounts,
    pub(crate) notifications: Vec<Notification>,
    /// Per license: `rate_limited` validations and `feature.access_denied` by day (sparse).
    pub(crate) rate_limited: FastMap<u32, DayCounts>,
    pub(crate) features_denied: FastMap<u32, DayCounts>,
    /// Per license that was ever emailed: the latest `at` of its upgrade and renewal decisions.
    pub(crate) license_cooldowns: FastMap<u32, LicenseCooldowns>,
    /// The latest customer clock day seen; per-day figures older than the window are dropped.
    pub(crate) max_day: Option<Day>,
    #[serde(skip)]
    index: Index,
}

/// Lookup tables rebuilt from the vectors after deserialization.
#[derive(Debug, Clone, Default)]
struct Index {
    customers: hashbrown::HashTable<u32>,
    licenses: hashbrown::HashTable<u32>,
    plans: FastMap<Box<str>, u32>,
    hasher: FastHasher,
}

fn license_hash(hasher: &impl BuildHasher, customer: u32, key: &str) -> u64 {
    let mut h = hasher.build_hasher();
    customer.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}

/// Heap bytes of a small vector of `u32` (none while inline).
fn spilled_bytes<const N: usize>(v: &SmallVec<[u32; N]>) -> usize {
    if v.spilled() {
        v.capacity() * 4
    } else {
        0
    }
}

/// A stable 64-bit hash of a domain name (stable across processes and machines, so a
/// serialized state moves between instances).
fn domain_hash(domain: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(domain.as_bytes())
}

/// Heap bytes of an id or key (none when it is short enough to be held inline).
fn heap_bytes(s: &CompactString) -> usize {
    if s.is_heap_allocated() {
        s.capacity()
    } else {
        0
    }
}

/// A serialization or restore failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot encode state: {0}")]
    Encode(String),
    #[error("cannot decode state: {0}")]
    Decode(String),
}

impl PartitionState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serializes the state into its compact binary form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, StateError> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| StateError::Encode(e.to_string()))
    }

    /// Restores a state written by [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let (mut state, _): (Self, usize) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard())
                .map_err(|e| StateError::Decode(e.to_string()))?;
        state.rebuild_index();
        Ok(state)
    }

    fn rebuild_index(&mut self) {
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
        for l in &mut self.licenses {
            l.side = 0;
        }
        for (tables, bit) in [
            (&self.rate_limited, IN_RATE_LIMITED),
            (&self.features_denied, IN_FEATURES_DENIED),
        ] {
            for &li in tables.keys() {
                if let Some(l) = self.licenses.get_mut(li as usize) {
                    l.side |= bit;
                }
            }
        }
    }

    /// Event counts so far.
    pub fn counts(&self) -> EventCounts {
        self.counts
    }

    /// Counts one rejected event (decoding happens outside the fold).
    pub fn record_rejected(&mut self) {
        self.counts.rejected += 1;
    }

    /// Every notification decided so far, in decision order.
    pub fn notifications(&self) -> &[Notification] {
        &self.notifications
    }

    /// Number of customers (the no-customer group included when present) and licenses.
    pub fn sizes(&self) -> (usize, usize) {
        (self.customers.len(), self.licenses.len())
    }

    /// The ids of the customers this state holds (the no-customer group as `""`).
    pub fn customer_ids(&self) -> impl Iterator<Item = &str> {
        self.customers.iter().map(|c| &*c.id)
    }

    /// The largest clock over the partition's customers (its watermark), if any event applied.
    pub fn watermark(&self) -> Option<Micros> {
        self.customers
            .iter()
            .map(|c| c.clock)
            .filter(|c| *c != NEVER)
            .max()
    }

    /// Approximate bytes held by the state (structs and their heap allocations).
    pub fn approx_bytes(&self) -> usize {
        use std::mem::size_of;
        let lic: usize = self
            .licenses
            .iter()
            .map(|l| {
                size_of::<License>()
                    + l.text_bytes()
                    + if l.domains.spilled() {
                        l.domains.capacity() * 8
                    } else {
                        0
                    }
            })
            .sum();
        let cust: usize = self
            .customers
            .iter()
            .map(|c| {
                size_of::<Customer>()
                    + heap_bytes(&c.id)
                    + c.seen_ids.heap_bytes()
                    + spilled_bytes(&c.licenses)
                    + c.validations.heap_bytes()
                    + spilled_bytes(&c.upgrade_candidates)
                    + c.extras
                        .as_ref()
                        .map_or(0, |e| size_of::<CustomerExtras>() + e.invites.heap_bytes())
            })
            .sum();
        let sparse: usize = self
            .rate_limited
            .values()
            .chain(self.features_denied.values())
            .map(|d| d.heap_bytes() + 40)
            .sum();
        let index = self.index.customers.capacity() * 5 + self.index.licenses.capacity() * 5;
        lic + cust + sparse + index + self.days.len() * size_of::<DayStats>()
    }

    /// The position of customer `id`, if this state holds it (a lookup, no insertion).
    pub(crate) fn customer_position(&self, id: &str) -> Option<u32> {
        self.find_customer(id)
    }

    fn find_customer(&self, id: &str) -> Option<u32> {
        let h = self.index.hasher.hash_one(id);
        self.index
            .customers
            .find(h, |&j| {
                self.customers[j as usize].id.as_bytes() == id.as_bytes()
            })
            .copied()
    }

    fn insert_customer(&mut self, c: Customer) -> u32 {
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

    fn customer_index(&mut self, id: &str) -> u32 {
        match self.find_customer(id) {
            Some(i) => i,
            None => self.insert_customer(Customer::new(id)),
        }
    }

    fn plan_index(&mut self, plan: &str) -> u32 {
        if let Some(i) = self.index.plans.get(plan) {
            return *i;
        }
        let i = self.plans.len() as u32;
        self.plans.push(plan.into());
        self.index.plans.insert(plan.into(), i);
        i
    }

    fn find_license(&self, customer: u32, key: &str) -> Option<u32> {
        let h = license_hash(&self.index.hasher, customer, key);
        self.index
            .licenses
            .find(h, |&j| {
                let l = &self.licenses[j as usize];
                l.customer == customer && l.key.as_bytes() == key.as_bytes()
            })
            .copied()
    }

    /// The license of `customer` with `key`, created on the fly when never seen.
    fn license_index(&mut self, customer: u32, key: &str, ts: Micros) -> (u32, bool) {
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
            issued_at: NEVER,
            first_sight: ts,
            expires_at: NEVER,
            first_activation: NEVER,
            first_valid: NEVER,
            last_validation: NEVER,
            validated_days: DayBitmap::default(),
            domains: SmallVec::new(),
            side: 0,
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

    /// Folds one decoded event. Decisions it makes are pushed to `out` (and kept for the
    /// report). Returns whether it was applied or ignored as a duplicate.
    pub fn apply(
        &mut self,
        ev: &Event<'_>,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) -> Applied {
        let horizon = cfg.dedup_horizon_secs as i64 * SECOND;
        let cid = ev.customer_id.as_deref().unwrap_or("");
        let ci = self.customer_index(cid);
        if let Some(id) = ev.event_id.as_deref() {
            if self.customers[ci as usize].is_duplicate(id, horizon) {
                self.counts.duplicates += 1;
                return Applied::Duplicate;
            }
        }
        let day = day_of(ev.ts);
        let clock = self.customers[ci as usize].clock;
        if clock != NEVER && day > day_of(clock) {
            self.run_midnights(ci, day_of(clock) + 1, day, cfg, out);
        }
        let c = &mut self.customers[ci as usize];
        c.clock = c.clock.max(ev.ts);
        let clock_day = day_of(c.clock);
        if let Some(id) = ev.event_id.as_deref() {
            c.remember_id(id, ev.ts, horizon);
        }
        self.counts.applied += 1;
        self.advance_max_day(clock_day, cfg);
        let floor = clock_day - cfg.window_days as i32 + 1;
        let in_window = day >= floor;
        self.fold_effect(ci, ev, day, floor, in_window, cfg, out);
        Applied::Applied
    }

    fn advance_max_day(&mut self, day: Day, cfg: &CoreConfig) {
        if self.max_day.is_some_and(|m| m >= day) {
            return;
        }
        self.max_day = Some(day);
        let floor = day - cfg.window_days as i32;
        if self.days.first_key_value().is_some_and(|(d, _)| *d < floor) {
            self.days = self.days.split_off(&floor);
        }
        if self
            .mrr
            .days
            .first_key_value()
            .is_some_and(|(d, _)| *d < floor)
        {
            self.mrr.collapse_before(floor);
        }
    }

    /// The per-day figures of `day`, unless the day is older than the partition keeps.
    fn day_stats(&mut self, day: Day, cfg: &CoreConfig) -> Option<&mut DayStats> {
        let floor = self.max_day? - cfg.window_days as i32;
        (day >= floor).then(|| self.days.entry(day).or_default())
    }

    #[allow(clippy::too_many_arguments)]
    fn fold_effect(
        &mut self,
        ci: u32,
        ev: &Event<'_>,
        day: Day,
        floor: Day,
        in_window: bool,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let ts = ev.ts;
        let mut churn_signal: Option<&'static str> = None;
        let mut check_upgrade = true;
        match &ev.kind {
            EventKind::Issued {
                license_key,
                plan,
                domain_limit,
                mrr_cents,
                email,
                expires_at,
            } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                let plan = self.plan_index(plan);
                let l = &mut self.licenses[li as usize];
                if l.issued_at == NEVER {
                    l.issued_at = ts;
                }
                l.set_email(email.as_deref());
                if let Some(e) = expires_at {
                    l.expires_at = *e;
                }
                self.change_subscription(li, plan, *domain_limit, *mrr_cents, day);
                self.set_status(li, Status::Active, day);
                self.note_upgrade_candidate(li);
            }
            EventKind::Activated {
                license_key,
                domain,
            } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                let l = &mut self.licenses[li as usize];
                if l.first_activation == NEVER || ts < l.first_activation {
                    l.first_activation = ts;
                }
                if let Some(d) = domain {
                    self.add_domain(li, d);
                }
            }
            EventKind::Validated {
                license_key,
                result,
                country,
                ..
            } => {
                if in_window {
                    if let Some(stats) = self.day_stats(day, cfg) {
                        stats.by_result[result.index()] += 1;
                        if let Some(country) = country {
                            // Look up by `&str` first: a country is allocated once per day.
                            match stats.countries.get_mut(&**country) {
                                Some(n) => *n += 1,
                                None => {
                                    stats.countries.insert(country.to_string(), 1);
                                }
                            }
                        }
                    }
                }
                if *result == ValidationResult::InvalidFormat {
                    check_upgrade = false;
                } else {
                    let (li, _) = self.license_index(ci, license_key, ts);
                    let l = &mut self.licenses[li as usize];
                    if l.last_validation == NEVER || ts > l.last_validation {
                        l.last_validation = ts;
                    }
                    if *result == ValidationResult::Valid
                        && (l.first_valid == NEVER || ts < l.first_valid)
                    {
                        l.first_valid = ts;
                    }
                    if in_window {
                        let fresh = l.validated_days.mark(day);
                        if fresh {
                            if let Some(stats) = self.day_stats(day, cfg) {
                                stats.dav += 1;
                            }
                        }
                        self.customers[ci as usize].validations.add(day, 1, floor);
                        if *result == ValidationResult::RateLimited {
                            self.rate_limited.entry(li).or_default().add(day, 1, floor);
                            self.licenses[li as usize].side |= IN_RATE_LIMITED;
                            self.note_upgrade_candidate(li);
                        }
                    }
                    if *result == ValidationResult::Expired {
                        self.decide_renewal(li, ts, cfg, out);
                    }
                }
            }
            EventKind::Renewed {
                license_key,
                expires_at,
            } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                if let Some(e) = expires_at {
                    self.licenses[li as usize].expires_at = *e;
                }
                self.set_status(li, Status::Active, day);
                self.note_upgrade_candidate(li);
            }
            EventKind::Expired { license_key } => {
                self.end_license(ci, license_key, ts, Status::Expired, day)
            }
            EventKind::Revoked { license_key } => {
                self.end_license(ci, license_key, ts, Status::Revoked, day)
            }
            EventKind::SubscriptionCanceled { license_key } => {
                self.end_license(ci, license_key, ts, Status::Canceled, day)
            }
            EventKind::SubscriptionChanged {
                license_key,
                plan,
                domain_limit,
                mrr_cents,
            } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                let plan = self.plan_index(plan);
                self.change_subscription(li, plan, *domain_limit, *mrr_cents, day);
                self.note_upgrade_candidate(li);
            }
            EventKind::DomainAdded {
                license_key,
                domain,
            } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                self.add_domain(li, domain);
            }
            EventKind::DomainRemoved {
                license_key,
                domain,
            } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                let h = domain_hash(domain);
                let domains = &mut self.licenses[li as usize].domains;
                if let Ok(pos) = domains.binary_search(&h) {
                    domains.remove(pos);
                }
                churn_signal = Some("domain_deactivation");
            }
            EventKind::ApiKeyCreated { .. } => {}
            EventKind::ApiKeyDeleted { .. } => churn_signal = Some("api_key_deletion"),
            EventKind::DowngradeInquiry => churn_signal = Some("downgrade_inquiry"),
            EventKind::TicketOpened {
                ticket_id,
                category,
            } => {
                let tickets = &mut self.customers[ci as usize].extras_mut().open_tickets;
                if !tickets.iter().any(|t| **t == **ticket_id) {
                    tickets.push((**ticket_id).into());
                }
                if *category == TicketCategory::Cancellation {
                    churn_signal = Some("cancellation_ticket");
                }
            }
            EventKind::TicketClosed { ticket_id } => {
                self.customers[ci as usize]
                    .extras_mut()
                    .open_tickets
                    .retain(|t| **t != **ticket_id);
            }
            EventKind::PaymentFailed => {
                self.customers[ci as usize].payment_failed = true;
                churn_signal = Some("payment_failed");
            }
            EventKind::PaymentSucceeded => self.customers[ci as usize].payment_failed = false,
            EventKind::MemberInvited => {
                if in_window {
                    self.customers[ci as usize]
                        .extras_mut()
                        .invites
                        .add(day, 1, floor);
                }
            }
            EventKind::FeatureDenied { license_key, .. } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                if in_window {
                    self.features_denied
                        .entry(li)
                        .or_default()
                        .add(day, 1, floor);
                    self.licenses[li as usize].side |= IN_FEATURES_DENIED;
                    self.note_upgrade_candidate(li);
                }
            }
        }
        if let Some(signal) = churn_signal {
            self.decide_churn(ci, signal, ts, cfg, out);
        }
        if check_upgrade {
            self.check_upgrades(ci, ts, cfg, out);
        }
    }

    fn add_domain(&mut self, li: u32, domain: &str) {
        let h = domain_hash(domain);
        let domains = &mut self.licenses[li as usize].domains;
        if let Err(pos) = domains.binary_search(&h) {
            domains.insert(pos, h);
        }
        self.note_upgrade_candidate(li);
    }

    fn end_license(&mut self, ci: u32, key: &str, ts: Micros, status: Status, day: Day) {
        let (li, _) = self.license_index(ci, key, ts);
        self.set_status(li, status, day);
    }

    /// Moves a license to `status`, booking its MRR in or out of the total.
    fn set_status(&mut self, li: u32, status: Status, day: Day) {
        let l = &mut self.licenses[li as usize];
        let was_active = l.status == Status::Active;
        let now_active = status == Status::Active;
        l.status = status;
        let mrr = l.mrr_cents as i128;
        let c = &mut self.customers[l.customer as usize];
        match (was_active, now_active) {
            (true, false) => {
                c.active_licenses -= 1;
                self.mrr.book(day, -mrr);
            }
            (false, true) => {
                c.active_licenses += 1;
                self.mrr.book(day, mrr);
            }
            _ => {}
        }
    }

    /// Changes plan, limit and price, booking the difference when the license is active.
    fn change_subscription(&mut self, li: u32, plan: u32, limit: u64, mrr: u64, day: Day) {
        let l = &mut self.licenses[li as usize];
        let delta = mrr as i128 - l.mrr_cents as i128;
        l.plan = plan;
        l.domain_limit = limit;
        l.mrr_cents = mrr;
        if l.status == Status::Active {
            self.mrr.book(day, delta);
        }
    }

    fn note_upgrade_candidate(&mut self, li: u32) {
        let c = &mut self.customers[self.licenses[li as usize].customer as usize];
        let candidates = &mut c.upgrade_candidates;
        if !candidates.contains(&li) {
            candidates.push(li);
        }
    }

    /// The upgrade triggers of a license over the window ending on `end_day`.
    pub(crate) fn triggers(&self, li: u32, end_day: Day, cfg: &CoreConfig) -> Triggers {
        let inputs = self.trigger_inputs(li);
        self.triggers_of(&inputs, end_day, cfg)
    }

    /// What the triggers of license `li` are computed from (one lookup per side table).
    fn trigger_inputs(&self, li: u32) -> TriggerInputs<'_> {
        let l = &self.licenses[li as usize];
        TriggerInputs {
            license: l,
            rate_limited: if l.side & IN_RATE_LIMITED != 0 {
                self.rate_limited.get(&li)
            } else {
                None
            },
            features_denied: if l.side & IN_FEATURES_DENIED != 0 {
                self.features_denied.get(&li)
            } else {
                None
            },
            invites: self.customers[l.customer as usize].invites(),
        }
    }

    fn triggers_of(&self, t: &TriggerInputs<'_>, end_day: Day, cfg: &CoreConfig) -> Triggers {
        let l = t.license;
        let from = end_day - cfg.upgrade.window_days as i32 + 1;
        let sum = |d: Option<&DayCounts>| d.map_or(0, |d| d.sum(from, end_day));
        let mut out = Triggers::default();
        if l.domain_limit > 0
            && l.domains.len() as f64 / l.domain_limit as f64 >= cfg.upgrade.domain_ratio
        {
            out.insert(Triggers::DOMAIN_LIMIT_APPROACHING);
        }
        if sum(t.rate_limited) > cfg.upgrade.rate_limited_more_than as u64 {
            out.insert(Triggers::RATE_LIMIT_FREQUENT);
        }
        if sum(t.features_denied) > cfg.upgrade.feature_denied_more_than as u64 {
            out.insert(Triggers::FEATURE_INTEREST);
        }
        if sum(t.invites) >= cfg.upgrade.invites_at_least as u64 {
            out.insert(Triggers::TEAM_GROWTH);
        }
        out
    }

    /// An upper bound of the number of triggers [`Self::triggers_of`] can find for a window
    /// ending on `end_day`: a windowed trigger needs a count on a day of the window (unless
    /// its threshold is met by zero), so a table with no recent day cannot give it.
    fn max_triggers(t: &TriggerInputs<'_>, end_day: Day, cfg: &CoreConfig) -> u32 {
        let from = end_day - cfg.upgrade.window_days as i32 + 1;
        let recent =
            |d: Option<&DayCounts>| d.and_then(|d| d.last_day()).is_some_and(|d| d >= from);
        let l = t.license;
        let domains = l.domain_limit > 0
            && l.domains.len() as f64 / l.domain_limit as f64 >= cfg.upgrade.domain_ratio;
        domains as u32
            + recent(t.rate_limited) as u32
            + recent(t.features_denied) as u32
            + (cfg.upgrade.invites_at_least == 0 || recent(t.invites)) as u32
    }

    /// Whether a license can have a trigger of its own (not counting `team_growth`) in a
    /// window ending on `end_day` or later.
    fn may_trigger(t: &TriggerInputs<'_>, end_day: Day, cfg: &CoreConfig) -> bool {
        let from = end_day - cfg.upgrade.window_days as i32 + 1;
        let recent =
            |d: Option<&DayCounts>| d.and_then(|d| d.last_day()).is_some_and(|d| d >= from);
        let l = t.license;
        (l.domain_limit > 0 && !l.domains.is_empty())
            || recent(t.rate_limited)
            || recent(t.features_denied)
    }

    fn check_upgrades(
        &mut self,
        ci: u32,
        at: Micros,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let end_day = day_of(self.customers[ci as usize].clock);
        let c = &mut self.customers[ci as usize];
        if c.upgrade_candidates.is_empty() {
            return;
        }
        // Filtered in place (no allocation per event); the order of candidates is kept.
        let mut candidates = std::mem::take(&mut c.upgrade_candidates);
        let mut kept = 0;
        for i in 0..candidates.len() {
            let li = candidates[i];
            let inputs = self.trigger_inputs(li);
            if !Self::may_trigger(&inputs, end_day, cfg) {
                continue; // re-noted by the next event that touches the license
            }
            candidates[kept] = li;
            kept += 1;
            let l = inputs.license;
            if l.status != Status::Active || l.email.is_none() {
                continue;
            }
            if Self::max_triggers(&inputs, end_day, cfg) < cfg.notify.upgrade_min_triggers {
                continue;
            }
            if !cooldown_allows(
                self.cooldowns_of(li).upgrade,
                at,
                cfg.notify.upgrade_cooldown_days as i64 * DAY,
            ) {
                continue;
            }
            let triggers = self.triggers_of(&inputs, end_day, cfg);
            if triggers.len() < cfg.notify.upgrade_min_triggers {
                continue;
            }
            let facts = self.upgrade_facts(li, end_day, cfg);
            self.license_cooldowns.entry(li).or_default().upgrade = at;
            let l = &self.licenses[li as usize];
            let n = Notification {
                kind: NotificationKind::Upgrade,
                to: l.email().unwrap_or_default().to_string(),
                customer_id: self.customers[ci as usize].id.to_string(),
                license_key: Some(l.key().to_string()),
                at,
                reasons: triggers.to_strings(),
                facts: Some(facts),
            };
            self.push_decision(n, out);
        }
        candidates.truncate(kept);
        self.customers[ci as usize].upgrade_candidates = candidates;
    }

    fn upgrade_facts(&self, li: u32, end_day: Day, cfg: &CoreConfig) -> Facts {
        let l = &self.licenses[li as usize];
        let from = end_day - cfg.upgrade.window_days as i32 + 1;
        let sum = |m: &FastMap<u32, DayCounts>| m.get(&li).map_or(0, |d| d.sum(from, end_day));
        Facts::Upgrade {
            plan: self.plans[l.plan as usize].to_string(),
            domains_used: l.domains.len() as u64,
            domain_limit: l.domain_limit,
            rate_limited_30d: sum(&self.rate_limited),
            features_denied_30d: sum(&self.features_denied),
            invites_30d: self.customers[l.customer as usize]
                .invites()
                .map_or(0, |i| i.sum(from, end_day)),
        }
    }

    fn cooldowns_of(&self, li: u32) -> LicenseCooldowns {
        self.license_cooldowns.get(&li).copied().unwrap_or_default()
    }

    fn decide_renewal(
        &mut self,
        li: u32,
        at: Micros,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let l = &self.licenses[li as usize];
        let Some(email) = l.email() else {
            return;
        };
        if !cooldown_allows(
            self.cooldowns_of(li).renewal,
            at,
            cfg.notify.renewal_cooldown_days as i64 * DAY,
        ) {
            return;
        }
        let n = Notification {
            kind: NotificationKind::Renewal,
            to: email.to_string(),
            customer_id: self.customers[l.customer as usize].id.to_string(),
            license_key: Some(l.key().to_string()),
            at,
            reasons: vec!["expired".to_string()],
            facts: Some(Facts::Renewal {
                plan: self.plans[l.plan as usize].to_string(),
                expires_at: (l.expires_at != NEVER).then(|| format_rfc3339(l.expires_at)),
            }),
        };
        self.license_cooldowns.entry(li).or_default().renewal = at;
        self.push_decision(n, out);
    }

    fn decide_churn(
        &mut self,
        ci: u32,
        signal: &'static str,
        at: Micros,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let c = &self.customers[ci as usize];
        if c.active_licenses == 0 {
            return;
        }
        if !cooldown_allows(
            c.last_churn_at,
            at,
            cfg.notify.churn_cooldown_days as i64 * DAY,
        ) {
            return;
        }
        let health = self.customer_health(ci, at, cfg);
        let c = &self.customers[ci as usize];
        let licenses = c
            .licenses
            .iter()
            .map(|&li| {
                let l = &self.licenses[li as usize];
                LicenseFacts {
                    license_key: l.key().to_string(),
                    plan: self.plans[l.plan as usize].to_string(),
                    status: l.status.as_str().to_string(),
                    mrr_cents: l.mrr_cents,
                }
            })
            .collect::<Vec<_>>();
        let mrr_cents: i128 = c
            .licenses
            .iter()
            .map(|&li| &self.licenses[li as usize])
            .filter(|l| l.status == Status::Active)
            .map(|l| l.mrr_cents as i128)
            .sum();
        let mrr_cents = mrr_cents.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        let n = Notification {
            kind: NotificationKind::ChurnWarning,
            to: cfg.notify.team_address.clone(),
            customer_id: c.id.to_string(),
            license_key: None,
            at,
            reasons: vec![signal.to_string()],
            facts: Some(Facts::ChurnWarning {
                score: health.score,
                penalties: health
                    .penalties
                    .iter()
                    .map(|(r, p)| (r.to_string(), *p))
                    .collect(),
                licenses,
                mrr_cents,
            }),
        };
        self.customers[ci as usize].last_churn_at = at;
        self.push_decision(n, out);
    }

    fn push_decision(&mut self, n: Notification, out: &mut Vec<Notification>) {
        out.push(n.clone());
        self.notifications.push(n);
    }

    /// Runs the daily check of customer `ci` at each midnight from `first` to `last`.
    fn run_midnights(
        &mut self,
        ci: u32,
        first: Day,
        last: Day,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        // With no validation in the 14 days before a midnight the check cannot fire, so the
        // loop stops there however far the clock jumps.
        let Some(last_validation_day) = self.customers[ci as usize].validations.last_day() else {
            return;
        };
        let last = last.min(last_validation_day.saturating_add(15));
        for d in first..=last {
            let c = &self.customers[ci as usize];
            if c.active_licenses == 0 {
                continue;
            }
            let last7 = c.validations.sum(d - 7, d - 1);
            let prev7 = c.validations.sum(d - 14, d - 8);
            if prev7 >= cfg.notify.decline_min_previous as u64
                && (last7 as f64) <= cfg.notify.decline_at_most_ratio * prev7 as f64
            {
                self.decide_churn(ci, "validation_decline", midnight(d), cfg, out);
            }
        }
    }

    /// Moves every customer's clock to the latest wall-clock midnight at or before `now`,
    /// running the daily checks it passes (SPEC §5, live mode only).
    pub fn advance_to(&mut self, now: Micros, cfg: &CoreConfig, out: &mut Vec<Notification>) {
        let today = day_of(now);
        for ci in 0..self.customers.len() as u32 {
            let clock = self.customers[ci as usize].clock;
            if clock == NEVER || day_of(clock) >= today {
                continue;
            }
            self.run_midnights(ci, day_of(clock) + 1, today, cfg, out);
            self.customers[ci as usize].clock = midnight(today);
        }
        self.advance_max_day(today, cfg);
    }

    /// The health of customer `ci` at `as_of`, or `None` without an active license.
    pub(crate) fn customer_health(&self, ci: u32, as_of: Micros, cfg: &CoreConfig) -> Health {
        let c = &self.customers[ci as usize];
        let mut last_validation = NEVER;
        let mut earliest_seen = i64::MAX;
        let (mut used, mut limits) = (0u64, 0u64);
        for &li in &c.licenses {
            let l = &self.licenses[li as usize];
            last_validation = last_validation.max(l.last_validation);
            earliest_seen = earliest_seen.min(l.issued_or_seen());
            if l.status == Status::Active && l.domain_limit > 0 {
                used = used.saturating_add(l.domains.len() as u64);
                limits = limits.saturating_add(l.domain_limit);
            }
        }
        let today = day_of(as_of);
        let inputs = HealthInputs {
            last_activity: if last_validation != NEVER {
                last_validation
            } else {
                earliest_seen
            },
            domains_used: used,
            domain_limits: limits,
            validations_last_7d: c.validations.sum(today - 6, today),
            validations_prev_7d: c.validations.sum(today - 13, today - 7),
            open_ticket: !c.open_tickets().is_empty(),
            payment_failed: c.payment_failed,
        };
        health::score(&inputs, as_of, &cfg.health)
    }

    /// Moves every customer of `other` into this state. The two must hold disjoint
    /// customers (as two partitions do); per-day figures and the MRR book add up.
    pub fn merge(&mut self, other: PartitionState) {
        let lic_base = self.licenses.len() as u32;
        let plan_map: Vec<u32> = other.plans.iter().map(|p| self.plan_index(p)).collect();
        let mut customer_map = Vec::with_capacity(other.customers.len());
        for mut c in other.customers {
            for li in c.licenses.iter_mut().chain(c.upgrade_candidates.iter_mut()) {
                *li += lic_base;
            }
            if let Some(existing) = self.find_customer(&c.id) {
                // Only the no-customer group may be on both sides (it owns no license):
                // keep the later clock and every remembered id.
                let mine = &mut self.customers[existing as usize];
                mine.clock = mine.clock.max(c.clock);
                mine.seen_ids.absorb(c.seen_ids);
                mine.licenses.extend(c.licenses);
                mine.active_licenses += c.active_licenses;
                customer_map.push(existing);
                continue;
            }
            customer_map.push(self.insert_customer(c));
        }
        for mut l in other.licenses {
            l.plan = plan_map[l.plan as usize];
            l.customer = customer_map[l.customer as usize];
            self.licenses.push(l);
        }
        for (li, d) in other.rate_limited {
            self.rate_limited.insert(li + lic_base, d);
        }
        for (li, d) in other.features_denied {
            self.features_denied.insert(li + lic_base, d);
        }
        for (li, c) in other.license_cooldowns {
            self.license_cooldowns.insert(li + lic_base, c);
        }
        for (day, s) in other.days {
            let mine = self.days.entry(day).or_default();
            for (a, b) in mine.by_result.iter_mut().zip(s.by_result) {
                *a += b;
            }
            mine.dav += s.dav;
            for (k, v) in s.countries {
                *mine.countries.entry(k).or_insert(0) += v;
            }
        }
        self.mrr.current += other.mrr.current;
        self.mrr.base += other.mrr.base;
        self.mrr.base_through = self.mrr.base_through.max(other.mrr.base_through);
        for (d, v) in other.mrr.days {
            *self.mrr.days.entry(d).or_insert(0) += v;
        }
        self.counts.applied += other.counts.applied;
        self.counts.rejected += other.counts.rejected;
        self.counts.duplicates += other.counts.duplicates;
        self.notifications.extend(other.notifications);
        self.max_day = self.max_day.max(other.max_day);
        self.rebuild_index();
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn print_sizes() {
        eprintln!(
            "License {} Customer {} DayCounts {} HashMap {}",
            std::mem::size_of::<License>(),
            std::mem::size_of::<Customer>(),
            std::mem::size_of::<DayCounts>(),
            std::mem::size_of::<HashMap<Box<str>, Micros>>()
        );
    }
}
