//! The serialized forms of format version 1: one customer record, one partition record.
//!
//! Owns the V1 wire structs and their conversion from and to the in-memory records. A
//! customer record is self-contained: the customer, its licenses in its own order, plan
//! *names* (not the partition's plan positions), the licenses its upgrade watch holds
//! (`upgrade_candidates`, as positions in its own license list; `watch.rs`), and the
//! notifications decided for it. The partition record holds
//! what is the partition's own: per-day figures, the MRR book, the event counts.
//!
//! Guarantees: converting a state's records back gives a state that folds on and reports
//! exactly as the original; a record that does not hold together (a candidate position
//! out of range, a license key twice, a notification naming a license the customer does
//! not hold) is an error, never a panic, and adds nothing. Counters that can be derived (a
//! customer's active licenses) are derived, not trusted.

use std::collections::BTreeMap;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::codec::StateError;
use super::domains::DomainSet;
use super::kept::{Kept, Names};
use super::records::{Customer, CustomerExtras, License, LicenseExtras};
use super::terms::Terms;
use super::{DayStats, EventCounts, MrrBook, PartitionState};
use crate::codes::{NotificationKind, Status};
use crate::dedup::SeenIds;
use crate::movements::MovementBook;
use crate::signals::{Facts, Notification};
use crate::time::{Day, Micros, NEVER};
use crate::window::{DayBitmap, DayCounts};

/// A notification inside its customer's record (the customer id is the record's).
#[derive(Serialize, Deserialize)]
struct NotificationV1 {
    kind: NotificationKind,
    to: String,
    license_key: Option<String>,
    at: Micros,
    reasons: Vec<String>,
    facts: Option<Facts>,
}

/// One license, as written (owned: for decoding).
#[derive(Serialize, Deserialize)]
struct LicenseV1 {
    key: CompactString,
    status: Status,
    plan: Box<str>,
    domain_limit: u64,
    mrr_cents: u64,
    email: Option<Box<str>>,
    issued_at: Micros,
    first_sight: Micros,
    expires_at: Micros,
    first_activation: Micros,
    first_valid: Micros,
    last_validation: Micros,
    validated_days: DayBitmap,
    /// A sorted list of `u64` on the wire (as the `SmallVec<[u64; 2]>` it was).
    domains: DomainSet,
    extras: Option<LicenseExtras>,
}

/// One customer with its licenses: the record that the changelog keys by customer id.
#[derive(Serialize, Deserialize)]
pub(super) struct CustomerV1 {
    id: CompactString,
    clock: Micros,
    seen_ids: SeenIds,
    validations: DayCounts,
    /// Positions in `licenses` of the licenses its upgrade watch holds (before issue 10's
    /// watch, the licenses that might have a trigger of their own: a superset, read alike).
    upgrade_candidates: Vec<u32>,
    invites: DayCounts,
    open_tickets: Vec<Box<str>>,
    notifications: Vec<NotificationV1>,
    payment_failed: bool,
    last_churn_at: Micros,
    /// Whether its MRR was ever above 0 (SPEC §8.2).
    ever_paid: bool,
    licenses: Vec<LicenseV1>,
}

/// What belongs to the partition as a whole.
#[derive(Serialize, Deserialize)]
pub(super) struct PartitionV1 {
    days: BTreeMap<Day, DayStats>,
    mrr: MrrBook,
    /// MRR movements by day (SPEC §8.2).
    movements: MovementBook,
    counts: EventCounts,
    max_day: Option<Day>,
}

impl PartitionState {
    /// The V1 form of customer `ci`.
    pub(super) fn customer_v1(&self, ci: u32) -> CustomerV1 {
        let c = &self.customers[ci as usize];
        // A customer's licenses are listed in ascending index (each is appended as it is
        // created, and a merge shifts them all alike).
        debug_assert!(
            c.licenses.windows(2).all(|w| w[0] < w[1]),
            "licenses out of order"
        );
        let position = |li: u32| c.licenses.binary_search(&li).ok().map(|p| p as u32);
        let licenses = c
            .licenses
            .iter()
            .map(|&li| {
                let l = &self.licenses[li as usize];
                let terms = self.terms_of(l);
                LicenseV1 {
                    key: l.key.clone(),
                    status: l.status,
                    plan: self.plan_name(terms.plan).into(),
                    domain_limit: terms.domain_limit,
                    mrr_cents: terms.mrr_cents,
                    email: self.email_of(li).map(Into::into),
                    // One instant in memory (`since`): the first sight of an issued
                    // license is never read again, so it is written as its issue time.
                    issued_at: l.issued_at(),
                    first_sight: l.since,
                    expires_at: l.expires_at,
                    first_activation: l.first_activation,
                    first_valid: l.first_valid,
                    last_validation: l.last_validation,
                    validated_days: l.validated_days,
                    domains: l.domains.clone(),
                    extras: l.extras.as_deref().cloned(),
                }
            })
            .collect();
        // The wire carries no customer id (the record's is its own), so none is built:
        // an empty id allocates nothing.
        let names = Names {
            customer_id: "",
            ..self.names(c)
        };
        let notifications = c
            .kept()
            .iter()
            .map(|k| k.notification(&names, true))
            .map(|n| NotificationV1 {
                kind: n.kind,
                to: n.to,
                license_key: n.license_key,
                at: n.at,
                reasons: n.reasons,
                facts: n.facts,
            })
            .collect();
        CustomerV1 {
            id: c.id.clone(),
            clock: c.clock,
            seen_ids: c.seen_ids.clone(),
            validations: c.validations.clone(),
            upgrade_candidates: self
                .watched_licenses(ci)
                .into_iter()
                .filter_map(position)
                .collect(),
            invites: c.invites().cloned().unwrap_or_default(),
            open_tickets: {
                let mut t: Vec<Box<str>> = c
                    .extras
                    .as_ref()
                    .map_or_else(Vec::new, |e| e.open_tickets.iter().cloned().collect());
                t.sort_unstable();
                t
            },
            notifications,
            payment_failed: c.payment_failed,
            last_churn_at: c.last_churn_at(),
            ever_paid: c.ever_paid,
            licenses,
        }
    }

    /// The V1 form of the partition's own figures.
    pub(super) fn partition_v1(&self) -> PartitionV1 {
        PartitionV1 {
            days: self.days.clone(),
            mrr: self.mrr.clone(),
            movements: self.movements.clone(),
            counts: self.counts,
            max_day: self.max_day,
        }
    }

    /// Sets the partition's own figures (before or after its customers are added).
    pub(super) fn set_partition_v1(&mut self, p: PartitionV1) {
        self.days = p.days;
        self.mrr = p.mrr;
        self.movements = p.movements;
        self.counts = p.counts;
        self.max_day = p.max_day;
    }

    /// Adds one customer record. The customer and plan tables are kept; the license table
    /// must be filled once all are added ([`Self::index_licenses`]).
    pub(super) fn add_customer_v1(&mut self, w: CustomerV1) -> Result<(), StateError> {
        let bad = |why: &str| StateError::Decode(format!("customer `{}`: {why}", w.id));
        if self.find_customer(&w.id).is_some() {
            return Err(bad("present twice"));
        }
        let n = w.licenses.len() as u32;
        if let Some(p) = w.upgrade_candidates.iter().find(|&&p| p >= n) {
            return Err(bad(&format!("upgrade candidate {p} of {n} licenses")));
        }
        let mut keys: Vec<(&str, u32)> = (w.licenses.iter().enumerate())
            .map(|(p, l)| (l.key.as_str(), p as u32))
            .collect();
        keys.sort_unstable();
        if keys.windows(2).any(|k| k[0].0 == k[1].0) {
            return Err(bad("a license key twice"));
        }
        // Each notification's license, as its position in the customer's list (`kept.rs`).
        let mut positions = Vec::with_capacity(w.notifications.len());
        for n in &w.notifications {
            positions.push(match &n.license_key {
                None => None,
                Some(k) => match keys.binary_search_by(|(key, _)| (*key).cmp(k.as_str())) {
                    Ok(i) => Some(keys[i].1),
                    Err(_) => return Err(bad("a notification names a license it does not hold")),
                },
            });
        }
        drop(keys);
        let ci = self.customers.len() as u32;
        let first = self.licenses.len() as u32;
        let (mut active, mut paying) = (0, 0);
        let mut may_expire = false;
        for l in w.licenses {
            may_expire |= l.expires_at != NEVER;
            let plan = self.plan_index(&l.plan);
            let terms = self.terms.intern(Terms {
                plan,
                domain_limit: l.domain_limit,
                mrr_cents: l.mrr_cents,
            });
            active += (l.status == Status::Active) as u32;
            paying += (l.status == Status::Active && l.mrr_cents > 0) as u32;
            let (since, issued) = License::since_and_issued(l.issued_at, l.first_sight);
            self.licenses.push(License {
                customer: ci,
                key: l.key,
                status: l.status,
                terms,
                email: l.email.as_deref().map(|e| self.emails.push(e)),
                since,
                issued,
                expires_at: l.expires_at,
                first_activation: l.first_activation,
                first_valid: l.first_valid,
                last_validation: l.last_validation,
                validated_days: l.validated_days,
                domains: l.domains,
                extras: l.extras.map(Box::new),
                watched: Default::default(),
            });
        }
        // The kept form holds no customer id (the record's is its own): none is built.
        let notifications: Vec<Kept> = (w.notifications.into_iter().zip(positions))
            .map(|(n, position)| {
                let n = Notification {
                    kind: n.kind,
                    to: n.to,
                    customer_id: String::new(),
                    license_key: n.license_key,
                    at: n.at,
                    reasons: n.reasons,
                    facts: n.facts,
                };
                // Read from the license while it is the license's email (`kept.rs`).
                let borrow = position.is_some_and(|p| self.email_of(first + p) == Some(&*n.to));
                Kept::new(n, position, borrow, |plan| self.plan_index(plan))
            })
            .collect();
        let extras = CustomerExtras {
            invites: w.invites,
            open_tickets: w.open_tickets.into_iter().collect(),
            notifications,
            last_churn_at: w.last_churn_at,
            borrowed_from: 0,
            expiring: None,
            upgrade_watch: None,
        };
        let extras = (!extras.is_unused()).then(|| Box::new(extras));
        let mut c = Customer::new(&w.id);
        c.clock = w.clock;
        c.seen_ids = w.seen_ids;
        c.licenses = (first..first + n).collect();
        c.active_licenses = active;
        c.paying_licenses = paying;
        c.validations = w.validations;
        c.extras = extras;
        c.payment_failed = w.payment_failed;
        c.ever_paid = w.ever_paid;
        c.may_expire = may_expire;
        let ci = self.insert_customer(c);
        // Checked in full at the customer's next event, which places each where it waits.
        self.check_at_next_event(ci, w.upgrade_candidates.iter().map(|p| first + p));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CoreConfig;
    use crate::event::decode;

    /// A customer `b` with one license and a renewal decided for it.
    fn renewed() -> PartitionState {
        let mut s = PartitionState::new();
        for l in [
            r#"{"type":"license.issued","ts":"2026-10-01T00:00:00Z","customer_id":"b","license_key":"k1","plan":"starter","domain_limit":1,"mrr_cents":100,"email":"b@x.example","expires_at":"2026-10-20T00:00:00Z"}"#,
            r#"{"type":"license.validated","ts":"2026-10-21T00:00:00Z","customer_id":"b","license_key":"k1","result":"expired"}"#,
        ] {
            let e = decode(l.as_bytes()).expect("sample event");
            s.apply(&e, &CoreConfig::default(), &mut Vec::new());
        }
        s
    }

    /// A kept notification names its license by position (`kept.rs`): a record whose
    /// notification names a license the customer does not hold does not hold together.
    #[test]
    fn a_notification_naming_a_license_not_held_is_refused() {
        let s = renewed();
        let ci = s.find_customer("b").unwrap();
        let w = s.customer_v1(ci);
        assert_eq!(w.notifications.len(), 1);
        assert_eq!(w.notifications[0].license_key.as_deref(), Some("k1"));
        PartitionState::new().add_customer_v1(w).unwrap();
        let mut w = s.customer_v1(ci);
        w.notifications[0].license_key = Some("k2".into());
        let mut fresh = PartitionState::new();
        let e = fresh.add_customer_v1(w).unwrap_err();
        assert!(e.to_string().contains("does not hold"), "{e}");
        assert_eq!(fresh.sizes(), (0, 0), "nothing added before the refusal");
    }

    /// A restored notification whose recipient is its license's email reads it from the
    /// license (`kept.rs`), and keeps it when the email changes after the restore.
    #[test]
    fn a_restored_recipient_outlives_a_change_of_email() {
        let s = renewed();
        let before: Vec<Notification> = s.notifications().collect();
        assert_eq!(before[0].to, "b@x.example");
        let mut restored = PartitionState::new();
        restored
            .add_customer_v1(s.customer_v1(s.find_customer("b").unwrap()))
            .unwrap();
        let ci = restored.find_customer("b").unwrap();
        let li = restored.find_license(ci, "k1").unwrap();
        restored.set_email(li, Some("new@x.example"));
        assert_eq!(restored.email_of(li), Some("new@x.example"));
        assert_eq!(restored.notifications().collect::<Vec<_>>(), before);
    }
}
