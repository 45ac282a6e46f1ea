//! A decided notification as its customer's record keeps it: [`Kept`].
//!
//! Owns the kept form of a [`Notification`]. A state keeps every notification it decided
//! (the report lists them all, SPEC §3), so over months they outgrow the records they
//! belong to: on a 40-day log about one per license. The kept form leaves out what the
//! record already holds or what a byte says:
//! - the customer id (the record's own);
//! - the recipient, while it is the email of the license named (a renewal's, an upgrade's,
//!   an expiry reminder's): read from the license, until that license's email changes.
//!   Before a license of the customer that has an email changes it, each notification
//!   kept since the last such change gets its own copy
//!   ([`PartitionState::unborrow_recipients`]), so each is copied at most once; a
//!   license's first email copies nothing (none can read from it before);
//! - the license key, as the license's position in its customer's own list (4 bytes: a
//!   notification only ever names a license of its customer, and a customer's list only
//!   grows at its end, so the position holds through merges and restores);
//! - the reasons, which are code names, one byte each;
//! - a renewal's figures (the most common kind's), as a position in the state's plan
//!   names and an instant; any other kind's figures are boxed.
//!
//! Guarantees: [`Kept::notification`] with the owning customer's [`Names`] gives back
//! exactly the notification kept, whatever it holds: a reason that is not a code name (or
//! more of them than fit), or an expiry that does not read back as written, is kept as it
//! was given. A kept notification is 64 bytes, and its recipient when not its license's.

use super::emails::Emails;
use super::records::{Customer, License};
use super::PartitionState;
use crate::codes::{ChurnSignal, NotificationKind, RenewalReason, Spec8Reason, Trigger};
use crate::signals::{Facts, Notification};
use crate::time::{format_rfc3339, parse_rfc3339, Micros, NEVER};

/// One notification without its customer id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Kept {
    at: Micros,
    /// The recipient; `None` while it is the current email of the license named.
    to: Option<Box<str>>,
    reasons: Reasons,
    facts: KeptFacts,
    /// The license it names: its position in the customer's own list, or [`NO_LICENSE`].
    license: u32,
    kind: NotificationKind,
}

/// [`Kept::license`] of a notification that names no license (a churn warning).
const NO_LICENSE: u32 = u32::MAX;

/// What a customer's kept notifications name, to give them back whole: the customer's id,
/// its own list of licenses, the state's license records and plan names.
pub(crate) struct Names<'a> {
    pub(crate) customer_id: &'a str,
    pub(crate) own: &'a [u32],
    pub(crate) licenses: &'a [License],
    pub(crate) plans: &'a [Box<str>],
    pub(crate) emails: &'a Emails,
}

impl Names<'_> {
    /// The key of the license at `position` in the customer's list.
    fn key(&self, position: u32) -> Option<&str> {
        Some(self.license(position)?.key())
    }

    /// The email of the license at `position` in the customer's list.
    fn email(&self, position: u32) -> Option<&str> {
        Some(self.emails.get(self.license(position)?.email?))
    }

    fn license(&self, position: u32) -> Option<&License> {
        let li = *self.own.get(position as usize)?;
        self.licenses.get(li as usize)
    }
}

/// The email's figures: a renewal's held inline, any other's boxed.
#[derive(Debug, Clone, PartialEq)]
enum KeptFacts {
    None,
    /// `Facts::Renewal`: its expiry as the instant it was formatted from (`NEVER`: none),
    /// and its plan as a position in the state's plan names (16 bytes with the tag).
    Renewal {
        expires_at: Micros,
        plan: u32,
    },
    Other(Box<Facts>),
}

impl KeptFacts {
    fn new(facts: Option<Facts>, plan_index: &mut impl FnMut(&str) -> u32) -> Self {
        match facts {
            None => Self::None,
            Some(Facts::Renewal { plan, expires_at }) => {
                // Held as an instant only when formatting it gives the same string back.
                let instant = match &expires_at {
                    None => Some(NEVER),
                    Some(s) => parse_rfc3339(s).filter(|&t| t != NEVER && format_rfc3339(t) == *s),
                };
                match instant {
                    Some(expires_at) => Self::Renewal {
                        expires_at,
                        plan: plan_index(&plan),
                    },
                    None => Self::Other(Box::new(Facts::Renewal { plan, expires_at })),
                }
            }
            Some(f) => Self::Other(Box::new(f)),
        }
    }

    fn facts(&self, plans: &[Box<str>]) -> Option<Facts> {
        match self {
            Self::None => None,
            Self::Renewal { plan, expires_at } => Some(Facts::Renewal {
                plan: plans
                    .get(*plan as usize)
                    .map_or_else(String::new, |p| p.to_string()),
                expires_at: (*expires_at != NEVER).then(|| format_rfc3339(*expires_at)),
            }),
            Self::Other(f) => Some((**f).clone()),
        }
    }
}

/// Reasons held as codes (positions in [`reason_names`]) while every one is a code name
/// and they fit; else as the strings given.
#[derive(Debug, Clone, PartialEq)]
enum Reasons {
    Codes {
        len: u8,
        codes: [u8; CODES_MAX],
    },
    /// Boxed on purpose: a thin pointer keeps the enum at 16 bytes (a bare `Vec` is 24).
    #[allow(clippy::box_collection)]
    Strings(Box<Vec<String>>),
}

/// Reasons held as codes, at most (an upgrade has at most one per trigger).
const CODES_MAX: usize = 6;

/// Every reason a decision names, in one sequence: a reason's code is its position.
fn reason_names() -> impl Iterator<Item = &'static str> {
    let renewal = RenewalReason::ALL.into_iter().map(RenewalReason::as_str);
    let churn = ChurnSignal::ALL.into_iter().map(ChurnSignal::as_str);
    let upgrade = Trigger::ALL.into_iter().map(Trigger::as_str);
    let spec8 = Spec8Reason::ALL.into_iter().map(Spec8Reason::as_str);
    renewal.chain(churn).chain(upgrade).chain(spec8)
}

impl Reasons {
    fn new(reasons: Vec<String>) -> Self {
        let mut codes = [0u8; CODES_MAX];
        if reasons.len() <= CODES_MAX {
            let coded = reasons.iter().zip(codes.iter_mut()).all(|(r, code)| {
                match reason_names().position(|name| name == r) {
                    Some(i) => u8::try_from(i).map(|i| *code = i).is_ok(),
                    None => false,
                }
            });
            if coded {
                let len = reasons.len() as u8;
                return Self::Codes { len, codes };
            }
        }
        Self::Strings(Box::new(reasons))
    }

    fn to_strings(&self) -> Vec<String> {
        match self {
            Self::Codes { len, codes } => codes[..*len as usize]
                .iter()
                .filter_map(|&c| reason_names().nth(c as usize))
                .map(str::to_string)
                .collect(),
            Self::Strings(s) => s.to_vec(),
        }
    }
}

impl Kept {
    /// The kept form of `n`, whose license (if it names one) is at `position` in its
    /// customer's list; `plan_index` gives a plan name's position in the state's names.
    /// Its customer id and license key are dropped: the customer's [`Names`] give them;
    /// so is its recipient when `borrow` says it is that license's current email.
    pub(crate) fn new(
        n: Notification,
        position: Option<u32>,
        borrow: bool,
        mut plan_index: impl FnMut(&str) -> u32,
    ) -> Self {
        debug_assert_eq!(position.is_some(), n.license_key.is_some());
        Self {
            at: n.at,
            to: (!(borrow && position.is_some())).then(|| n.to.into_boxed_str()),
            reasons: Reasons::new(n.reasons),
            facts: KeptFacts::new(n.facts, &mut plan_index),
            license: position.unwrap_or(NO_LICENSE),
            kind: n.kind,
        }
    }

    /// The notification, as its customer's `names` name it; the email's figures left out
    /// when `with_facts` is false (the report never reads them).
    pub(crate) fn notification(&self, names: &Names<'_>, with_facts: bool) -> Notification {
        let license_key = match self.license {
            NO_LICENSE => None,
            p => names.key(p).map(str::to_string),
        };
        let to = match &self.to {
            Some(to) => to,
            None => names.email(self.license).unwrap_or_default(),
        };
        Notification {
            kind: self.kind,
            to: to.to_string(),
            customer_id: names.customer_id.to_string(),
            license_key,
            at: self.at,
            reasons: self.reasons.to_strings(),
            facts: if with_facts {
                self.facts.facts(names.plans)
            } else {
                None
            },
        }
    }

    /// Moves the plan it names to `map[plan]` (a merge renumbers the plan names).
    pub(super) fn renumber_plan(&mut self, map: &[u32]) {
        if let KeptFacts::Renewal { plan, .. } = &mut self.facts {
            if let Some(&p) = map.get(*plan as usize) {
                *plan = p;
            }
        }
    }

    /// Moves the license it names by `by` positions (its customer's list grew in front).
    pub(super) fn shift_license(&mut self, by: u32) {
        if self.license != NO_LICENSE {
            self.license = self.license.saturating_add(by);
        }
    }

    /// Heap bytes held outside the record (the recipient, uncoded reasons, a boxed
    /// figures' record; the strings inside those figures are not counted).
    pub(super) fn heap_bytes(&self) -> usize {
        let facts = match &self.facts {
            KeptFacts::Other(_) => size_of::<Facts>(),
            _ => 0,
        };
        let reasons = match &self.reasons {
            Reasons::Codes { .. } => 0,
            Reasons::Strings(s) => s.iter().map(|r| r.len() + 24).sum::<usize>() + 24,
        };
        self.to.as_ref().map_or(0, |t| t.len()) + reasons + facts
    }
}

impl PartitionState {
    /// What customer `c`'s kept notifications name.
    pub(super) fn names<'a>(&'a self, c: &'a Customer) -> Names<'a> {
        Names {
            customer_id: &c.id,
            own: &c.licenses,
            licenses: &self.licenses,
            plans: &self.plans,
            emails: &self.emails,
        }
    }

    /// The notifications decided for customer `c`, in decision order (without the email's
    /// figures when `with_facts` is false).
    pub(crate) fn notifications_of<'a>(
        &'a self,
        c: &'a Customer,
        with_facts: bool,
    ) -> impl Iterator<Item = Notification> + 'a {
        let names = self.names(c);
        c.kept()
            .iter()
            .map(move |k| k.notification(&names, with_facts))
    }

    /// The kept form of `n`, a decision of customer `ci` (which names, if any, a license of
    /// that customer: decisions are made from its own licenses).
    pub(super) fn kept_form(&mut self, ci: u32, n: Notification) -> Kept {
        let license = n.license_key.as_deref().and_then(|key| {
            let li = self.find_license(ci, key)?;
            let own = &self.customers[ci as usize].licenses;
            own.binary_search(&li).ok().map(|p| (li, p as u32))
        });
        let borrow = license.is_some_and(|(li, _)| self.email_of(li) == Some(&*n.to));
        Kept::new(n, license.map(|(_, p)| p), borrow, |plan| {
            self.plan_index(plan)
        })
    }

    /// Gives each kept notification of customer `ci` that reads its recipient from its
    /// license a copy of its own, before a license of the customer that has an email
    /// changes it. Only those kept since the last call are looked at: each notification
    /// once.
    pub(super) fn unborrow_recipients(&mut self, ci: u32) {
        let Some(c) = self.customers.get_mut(ci as usize) else {
            return;
        };
        let Some(e) = c.extras.as_deref_mut() else {
            return;
        };
        let from = (e.borrowed_from as usize).min(e.notifications.len());
        // `names` without its borrow of the whole customer: the extras are borrowed apart.
        let names = Names {
            customer_id: &c.id,
            own: &c.licenses,
            licenses: &self.licenses,
            plans: &self.plans,
            emails: &self.emails,
        };
        for k in &mut e.notifications[from..] {
            if k.to.is_none() {
                k.to = Some(names.email(k.license).unwrap_or_default().into());
            }
        }
        e.borrowed_from = u32::try_from(e.notifications.len()).unwrap_or(u32::MAX);
    }
}

#[cfg(test)]
#[path = "kept_tests.rs"]
mod tests;
