//! The records of a partition: [`Customer`] and [`License`], and their wire forms.
//!
//! Owns what one customer and one license hold. A customer's record is self-contained: its
//! licenses' windowed counts and cooldowns sit in each license's own record, and the
//! notifications decided for it in its own extras, so nothing about one customer is kept
//! in a partition-wide table. Guarantees: the rarely used parts of a customer and of a
//! license are boxed, so most pay one pointer for them.

use super::domains::DomainSet;
use super::emails::EmailRef;
use super::expiring::ExpiryIndex;
use super::kept::Kept;
use super::license_list::LicenseList;
use super::memory::heap_bytes;
use super::tickets::Tickets;
use super::watch::{UpgradeWatch, Watched};
use crate::codes::Status;
use crate::dedup::SeenIds;
use crate::time::{Micros, NEVER};
use crate::window::{DayBitmap, DayCounts};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// One customer (or, with id `""`, the events that carry none). Its licenses are records
/// of their own in the partition's license vector; its binary form (with them) is the
/// codec's customer record.
#[derive(Debug, Clone)]
pub(crate) struct Customer {
    /// Inline (serializes as a string): the lookup compares it without a pointer chase.
    pub(crate) id: CompactString,
    /// The largest `ts` applied, or the latest wall-clock midnight passed; `NEVER` before any.
    pub(crate) clock: Micros,
    /// `event_id` → `ts` of its latest application, kept for the de-duplication horizon.
    pub(super) seen_ids: SeenIds,
    /// The usual few are held inline (`license_list.rs`).
    pub(crate) licenses: LicenseList,
    pub(crate) active_licenses: u32,
    /// Active licenses with `mrr_cents` > 0: its MRR is above 0 exactly when this is, so
    /// an MRR movement is classified without summing its licenses (SPEC §8.2).
    pub(crate) paying_licenses: u32,
    /// Validations (not `invalid_format`) by day.
    pub(crate) validations: DayCounts,
    /// What few customers have: boxed, so most customers pay one pointer for it.
    pub(super) extras: Option<Box<CustomerExtras>>,
    pub(crate) payment_failed: bool,
    /// Whether its MRR was ever above 0 after an event (SPEC §8.2: a later rise from 0 is
    /// a reactivation, not new); it outlives the customer's last license.
    pub(super) ever_paid: bool,
    /// Whether any of its licenses may have an `expires_at`: set whenever one is given one
    /// (never cleared, so it may stay set after a re-issue without one). The daily expiry
    /// check skips the licenses of a customer without it, instead of reading every record.
    pub(super) may_expire: bool,
    /// Whether its extras hold an upgrade watch: the check after each event looks here,
    /// not into the box, for the many customers with extras and no watch.
    pub(super) watching: bool,
}

/// The parts of a customer that most customers never use (the cold side of the record:
/// nothing here is read by an event that doesn't need it, and the few checks made on
/// every event look only at whether the box exists).
#[derive(Debug, Clone)]
pub(crate) struct CustomerExtras {
    /// `team.member_invited` by day.
    pub(super) invites: DayCounts,
    /// Support tickets opened and not closed (`tickets.rs`: boxed, O(1) per event).
    pub(super) open_tickets: Tickets,
    /// Every notification decided for this customer, in decision order, in their kept
    /// form (`kept.rs`). Grown one at a time while short (see [`CustomerExtras::keep`]):
    /// most customers have one or two, and a `Vec`'s first growth would hold room for four.
    pub(super) notifications: Vec<Kept>,
    /// The latest churn warning, or `NEVER`.
    pub(super) last_churn_at: Micros,
    /// The notifications from this position on may read their recipient from their
    /// license (`kept.rs`); those before it hold their own.
    pub(super) borrowed_from: u32,
    /// Its licenses by expiry, once it has many (`expiring.rs`; derived, not written).
    pub(super) expiring: Option<Box<ExpiryIndex>>,
    /// The licenses that another license's event may make fire (`watch.rs`); boxed again,
    /// and dropped when empty; `Customer::watching` tells whether it is here.
    pub(super) upgrade_watch: Option<Box<UpgradeWatch>>,
}

impl Default for CustomerExtras {
    fn default() -> Self {
        Self {
            invites: DayCounts::default(),
            open_tickets: Tickets::default(),
            notifications: Vec::new(),
            last_churn_at: NEVER,
            borrowed_from: 0,
            expiring: None,
            upgrade_watch: None,
        }
    }
}

/// Notifications kept with exact room up to this many; growing by a quarter beyond.
const EXACT_NOTIFICATIONS: usize = 4;

impl CustomerExtras {
    /// Whether they hold nothing (so the customer needs no extras).
    pub(super) fn is_unused(&self) -> bool {
        self.invites.is_empty()
            && self.open_tickets.is_empty()
            && self.notifications.is_empty()
            && self.last_churn_at == NEVER
            && self.expiring.is_none()
            && self.upgrade_watch.is_none()
    }

    /// Keeps a decided notification, without a `Vec`'s slack while the list is short, and
    /// with at most a quarter of it beyond (growth by 5/4: amortized O(1) copies per
    /// notification, where doubling would leave half the room of a long list unused).
    pub(super) fn keep(&mut self, kept: Kept) {
        let v = &mut self.notifications;
        if v.len() == v.capacity() {
            v.reserve_exact(if v.len() < EXACT_NOTIFICATIONS {
                1
            } else {
                v.len() / 4
            });
        }
        v.push(kept);
    }
}

impl Customer {
    pub(super) fn new(id: &str) -> Self {
        Self {
            id: id.into(),
            clock: NEVER,
            seen_ids: SeenIds::default(),
            licenses: LicenseList::new(),
            active_licenses: 0,
            paying_licenses: 0,
            validations: DayCounts::default(),
            extras: None,
            payment_failed: false,
            ever_paid: false,
            may_expire: false,
            watching: false,
        }
    }

    /// Its upgrade watch, if it has one.
    pub(super) fn watch(&self) -> Option<&UpgradeWatch> {
        if !self.watching {
            return None;
        }
        self.extras.as_ref()?.upgrade_watch.as_deref()
    }

    /// Its upgrade watch, if it has one.
    pub(super) fn watch_mut(&mut self) -> Option<&mut UpgradeWatch> {
        if !self.watching {
            return None;
        }
        self.extras.as_mut()?.upgrade_watch.as_deref_mut()
    }

    /// Its upgrade watch, made when it has none.
    pub(super) fn watch_or_insert(&mut self) -> &mut UpgradeWatch {
        self.watching = true;
        self.extras_mut()
            .upgrade_watch
            .get_or_insert_with(Default::default)
    }

    /// Drops its upgrade watch when it holds nothing, and the extras with it when the
    /// watch was all they held.
    pub(super) fn drop_watch_if_empty(&mut self) {
        if self.watch().is_some_and(UpgradeWatch::is_empty) {
            if let Some(e) = self.extras.as_mut() {
                e.upgrade_watch = None;
                if e.is_unused() {
                    self.extras = None;
                }
            }
            self.watching = false;
        }
    }

    pub(super) fn is_duplicate(&self, id: &str, horizon: Micros) -> bool {
        self.seen_ids
            .is_duplicate(id, self.clock.saturating_sub(horizon))
    }

    pub(super) fn remember_id(&mut self, id: &str, ts: Micros, horizon: Micros) {
        self.seen_ids
            .remember(id, ts, self.clock.saturating_sub(horizon));
    }

    pub(super) fn extras_mut(&mut self) -> &mut CustomerExtras {
        self.extras.get_or_insert_with(Default::default)
    }

    pub(crate) fn invites(&self) -> Option<&DayCounts> {
        self.extras.as_ref().map(|e| &e.invites)
    }

    /// Open support tickets.
    pub(crate) fn open_tickets(&self) -> usize {
        self.extras.as_ref().map_or(0, |e| e.open_tickets.len())
    }

    /// The notifications decided for this customer, in decision order, as kept.
    pub(super) fn kept(&self) -> &[Kept] {
        self.extras.as_ref().map_or(&[], |e| &e.notifications)
    }

    /// The latest churn warning decided for it, or `NEVER`.
    pub(super) fn last_churn_at(&self) -> Micros {
        self.extras.as_ref().map_or(NEVER, |e| e.last_churn_at)
    }
}

/// One license.
#[derive(Debug, Clone)]
pub(crate) struct License {
    pub(crate) customer: u32,
    /// Inline (serializes as a string): the lookup compares it without a pointer chase.
    pub(super) key: CompactString,
    pub(crate) status: Status,
    /// Its plan, domain limit and MRR: a position in the state's terms table (`terms.rs`),
    /// read with `PartitionState::terms_of`.
    pub(super) terms: u32,
    /// In the state's email buffer (`emails.rs`): read with `PartitionState::email_of`.
    pub(super) email: Option<EmailRef>,
    /// The `ts` of the first `license.issued` to arrive when `issued`; else the license's
    /// first sight (it was created on the fly). One field for both: the first sight is
    /// only read while the license was never issued.
    pub(super) since: Micros,
    pub(super) issued: bool,
    /// Written only by the expiry setter (`reminders.rs`), which also marks the customer
    /// `may_expire`; read outside the state through [`License::expires_at`].
    pub(super) expires_at: Micros,
    pub(crate) first_activation: Micros,
    pub(crate) first_valid: Micros,
    /// Latest validation by `ts`, any result but `invalid_format`.
    pub(crate) last_validation: Micros,
    pub(super) validated_days: DayBitmap,
    /// Registered domains, as 64-bit hashes (two kept inline; O(1) per operation).
    pub(crate) domains: DomainSet,
    /// What few licenses have: boxed, so most licenses pay one pointer for it.
    pub(super) extras: Option<Box<LicenseExtras>>,
    /// Which of its customer's upgrade watches hold an entry for it (`watch.rs`).
    pub(super) watched: Watched,
}

/// The parts of a license that most licenses never use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct LicenseExtras {
    /// `rate_limited` validations by day.
    pub(super) rate_limited: DayCounts,
    /// `feature.access_denied` by day.
    pub(super) features_denied: DayCounts,
    /// The latest upgrade and renewal decisions, for the cooldowns.
    pub(super) cooldowns: LicenseCooldowns,
    /// SPEC §8: mismatched domains, the §8 cooldowns, the expiry last reminded (boxed
    /// again: most licenses with extras never need it).
    pub(super) spec8: Option<Box<super::spec8::License8>>,
}

/// The latest decision instants of one license, for the cooldowns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LicenseCooldowns {
    pub(super) upgrade: Micros,
    pub(super) renewal: Micros,
}

impl Default for LicenseCooldowns {
    fn default() -> Self {
        Self {
            upgrade: NEVER,
            renewal: NEVER,
        }
    }
}

impl License {
    /// The issue time, or the first sight of a license never issued.
    pub(crate) fn issued_or_seen(&self) -> Micros {
        self.since
    }

    /// Set by the first `license.issued` to arrive; `NEVER` for a license created on the fly.
    pub(crate) fn issued_at(&self) -> Micros {
        if self.issued {
            self.since
        } else {
            NEVER
        }
    }

    /// The field and flag that hold an issue time (`NEVER` for none) and a first sight: the
    /// inverse of [`License::issued_at`] with the first sight the codec keeps.
    pub(super) fn since_and_issued(issued_at: Micros, first_sight: Micros) -> (Micros, bool) {
        if issued_at != NEVER {
            (issued_at, true)
        } else {
            (first_sight, false)
        }
    }

    /// Marks the license issued at `ts`, unless an earlier `license.issued` arrived.
    pub(super) fn mark_issued(&mut self, ts: Micros) {
        if !self.issued {
            self.issued = true;
            self.since = ts;
        }
    }

    /// The license's `expires_at`, or `NEVER`.
    pub(crate) fn expires_at(&self) -> Micros {
        self.expires_at
    }

    pub(crate) fn key(&self) -> &str {
        self.key.as_str()
    }

    pub(super) fn extras_mut(&mut self) -> &mut LicenseExtras {
        self.extras.get_or_insert_with(Default::default)
    }

    /// `rate_limited` validations by day, if the license ever had one in the window.
    pub(super) fn rate_limited(&self) -> Option<&DayCounts> {
        self.extras.as_ref().map(|e| &e.rate_limited)
    }

    /// `feature.access_denied` by day, if the license ever had one in the window.
    pub(super) fn features_denied(&self) -> Option<&DayCounts> {
        self.extras.as_ref().map(|e| &e.features_denied)
    }

    /// The latest upgrade and renewal decisions (`NEVER` when none).
    pub(super) fn cooldowns(&self) -> LicenseCooldowns {
        self.extras
            .as_ref()
            .map(|e| e.cooldowns)
            .unwrap_or_default()
    }

    /// Heap bytes held by the key (the email's are the state's, `emails.rs`).
    pub(super) fn text_bytes(&self) -> usize {
        heap_bytes(&self.key)
    }
}
