//! A decided notification as its customer's record keeps it: [`Kept`].
//!
//! Owns the kept form of a [`Notification`]. A state keeps every notification it decided
//! (the report lists them all, SPEC §3), so over months they outgrow the records they
//! belong to: on a 40-day log about one per license. The kept form leaves out what the
//! record already holds or what a byte says:
//! - the customer id (the record's own);
//! - the recipient, while it is the email of the license named (a renewal's, an upgrade's,
//!   an expiry reminder's): read from the license, until that license's email changes.
//!   Before any license of the customer changes its email, each notification kept since
//!   the last such change gets its own copy ([`PartitionState::unborrow_recipients`]), so
//!   each is copied at most once;
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
    /// license a copy of its own, before a license of the customer changes its email. Only
    /// those kept since the last call are looked at: each notification once.
    pub(super) fn unborrow_recipients(&mut self, ci: u32) {
        let Some(c) = self.customers.get_mut(ci as usize) else {
            return;
        };
        let Some(e) = c.extras.as_deref_mut() else {
            return;
        };
        let from = (e.borrowed_from as usize).min(e.notifications.len());
        let (own, licenses, emails) = (&c.licenses, &self.licenses, &self.emails);
        for k in &mut e.notifications[from..] {
            if k.to.is_none() {
                let li = own.get(k.license as usize).copied();
                let email = li.and_then(|li| licenses.get(li as usize)?.email);
                k.to = Some(email.map_or("", |r| emails.get(r)).into());
            }
        }
        e.borrowed_from = u32::try_from(e.notifications.len()).unwrap_or(u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [&str; 5] = [
        "LK-1",
        "LK-a-license-key-longer-than-twenty-four-bytes",
        "K",
        "LK-4",
        "LK-5",
    ];

    /// A state whose customer `cus_1` (position 0) holds the licenses of `KEYS`, in order.
    fn state() -> PartitionState {
        let mut s = PartitionState::new();
        let ci = s.customer_index("cus_1");
        for key in KEYS {
            s.license_index(ci, key, 0);
        }
        s
    }

    fn sample(reasons: &[&str], key: Option<&str>) -> Notification {
        Notification {
            kind: NotificationKind::Upgrade,
            to: "owner@customer.example".into(),
            customer_id: "cus_1".into(),
            license_key: key.map(str::to_string),
            at: 1_788_048_000_123_456,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            facts: Some(Facts::Renewal {
                plan: "starter".into(),
                expires_at: None,
            }),
        }
    }

    /// `n` kept by customer 0 of `s`, and given back (with and without its figures).
    fn round_trip(s: &mut PartitionState, n: &Notification) -> (Kept, Notification, Notification) {
        let kept = s.kept_form(0, n.clone());
        let names = s.names(&s.customers[0]);
        let (full, bare) = (
            kept.notification(&names, true),
            kept.notification(&names, false),
        );
        (kept, full, bare)
    }

    #[test]
    fn gives_back_what_it_kept() {
        let mut s = state();
        let triggers: Vec<&str> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
        for (reasons, key) in [
            (vec!["expired"], Some(KEYS[0])),
            (triggers.clone(), Some(KEYS[1])),
            (vec!["validation_decline"], None),
            (
                vec![
                    Spec8Reason::Revoked.as_str(),
                    Spec8Reason::PaymentFailed.as_str(),
                ],
                Some(KEYS[2]),
            ),
            (vec!["not a code name", "expired"], Some(KEYS[4])),
            (vec!["expired"; CODES_MAX + 1], Some(KEYS[3])),
            (vec![], None),
        ] {
            let n = sample(&reasons, key);
            let (kept, full, bare) = round_trip(&mut s, &n);
            assert_eq!(full, n, "{reasons:?}");
            let position = key.map(|k| KEYS.iter().position(|x| *x == k).unwrap() as u32);
            assert_eq!(kept.license, position.unwrap_or(NO_LICENSE));
            let mut without = n.clone();
            without.facts = None;
            assert_eq!(bare, without);
        }
    }

    #[test]
    fn gives_back_the_figures_it_kept() {
        let renewal = |plan: &str, expires_at: Option<&str>| {
            Some(Facts::Renewal {
                plan: plan.into(),
                expires_at: expires_at.map(str::to_string),
            })
        };
        let long_plan = "p".repeat(40);
        let cases = [
            // (figures, held inline as a renewal)
            (renewal("starter", None), true),
            (renewal("professional", Some("2026-10-01T00:00:00Z")), true),
            (
                renewal("starter", Some(&format_rfc3339(1_788_048_000_123_456))),
                true,
            ),
            // not as `format_rfc3339` writes it: kept as given
            (renewal("starter", Some("2026-10-01T02:00:00+02:00")), false),
            (renewal("starter", Some("not a time")), false),
            // any plan name: it is a position in the state's names
            (renewal(&long_plan, None), true),
            (
                Some(Facts::RevokedUse {
                    plan: "starter".into(),
                    status: "revoked".into(),
                    payment_failed: true,
                }),
                false,
            ),
            (None, false),
        ];
        let mut s = state();
        for (facts, inline) in cases {
            let mut n = sample(&["expired"], Some("K"));
            n.kind = NotificationKind::Renewal;
            n.facts = facts;
            let (kept, full, _) = round_trip(&mut s, &n);
            assert_eq!(full, n);
            assert_eq!(
                matches!(kept.facts, KeptFacts::Renewal { .. }),
                inline,
                "{n:?}"
            );
        }
    }

    /// A merge renumbers plan names and a customer's list may grow in front: the kept
    /// notification follows both.
    #[test]
    fn follows_its_plan_and_license_when_they_move() {
        let mut s = state();
        let mut n = sample(&["expired"], Some(KEYS[1]));
        n.kind = NotificationKind::Renewal;
        let mut kept = s.kept_form(0, n.clone());
        // Plan names renumbered: "starter" moves to the end of a longer list.
        let old = s.plan_index("starter") as usize;
        let mut plans: Vec<Box<str>> = vec!["a".into(), "b".into()];
        let mut map: Vec<u32> = Vec::new();
        for (i, p) in s.plans.iter().enumerate() {
            map.push(plans.len() as u32);
            plans.push(p.clone());
            assert_eq!(i == old, &**p == "starter");
        }
        kept.renumber_plan(&map);
        // Two licenses put in front of the customer's list.
        kept.shift_license(2);
        let own: Vec<u32> = [6, 5]
            .into_iter()
            .chain(s.customers[0].licenses.iter().copied())
            .collect();
        let mut licenses = s.licenses.clone();
        licenses.extend(s.licenses[..2].iter().cloned());
        let names = Names {
            customer_id: "cus_1",
            own: &own,
            licenses: &licenses,
            plans: &plans,
            emails: &s.emails,
        };
        assert_eq!(kept.notification(&names, true), n);
    }

    /// A recipient that is its license's email is read from the license, and stays what it
    /// was when the license's email changes later.
    #[test]
    fn a_recipient_read_from_its_license_outlives_a_change_of_email() {
        let mut s = state();
        let li = s.find_license(0, KEYS[0]).unwrap();
        s.set_email(li, Some("first@x.example"));
        let to = |to: &str| Notification {
            to: to.into(),
            ..sample(&["expired"], Some(KEYS[0]))
        };
        let kept = |s: &PartitionState| -> Vec<String> {
            s.notifications_of(&s.customers[0], true)
                .map(|n| n.to)
                .collect()
        };
        let borrowed = |s: &PartitionState| -> Vec<bool> {
            s.customers[0]
                .kept()
                .iter()
                .map(|k| k.to.is_none())
                .collect()
        };
        let mut out = Vec::new();
        s.push_decision(0, to("first@x.example"), &mut out);
        s.push_decision(0, to("team@x.example"), &mut out);
        assert_eq!(borrowed(&s), [true, false]);
        s.set_email(li, Some("second@x.example"));
        s.push_decision(0, to("second@x.example"), &mut out);
        assert_eq!(borrowed(&s), [false, false, true]);
        assert_eq!(
            kept(&s),
            ["first@x.example", "team@x.example", "second@x.example"]
        );
        // The same email again changes nothing; none at all leaves the kept one its own.
        s.set_email(li, Some("second@x.example"));
        assert_eq!(borrowed(&s), [false, false, true]);
        s.set_email(li, None);
        assert_eq!(borrowed(&s), [false, false, false]);
        assert_eq!(
            kept(&s),
            ["first@x.example", "team@x.example", "second@x.example"]
        );
        assert_eq!(
            out.iter().map(|n| n.to.clone()).collect::<Vec<_>>(),
            kept(&s)
        );
    }

    #[test]
    fn code_names_are_coded_and_others_are_not() {
        let mut s = state();
        let coded = s.kept_form(
            0,
            sample(&["domain_limit_approaching", "team_growth"], None),
        );
        assert!(matches!(coded.reasons, Reasons::Codes { len: 2, .. }));
        let other = s.kept_form(0, sample(&["domain_limit_approaching", "typo"], None));
        assert!(matches!(other.reasons, Reasons::Strings(_)));
        // A name in two enums (the same string) has one code, its first position, and
        // that code gives the name back.
        let names: Vec<_> = reason_names().collect();
        assert!(names.len() <= u8::MAX as usize);
        for name in &names {
            let k = s.kept_form(0, sample(&[name], None));
            assert!(matches!(k.reasons, Reasons::Codes { len: 1, .. }), "{name}");
            assert_eq!(k.reasons.to_strings(), vec![name.to_string()]);
        }
    }

    #[test]
    fn is_smaller_than_a_notification() {
        let (kept, full) = (size_of::<Kept>(), size_of::<Notification>());
        eprintln!("Kept {kept} Notification {full}");
        assert!(kept < full, "Kept {kept} >= Notification {full}");
        // A budget, as the records' (memory.rs): growing it must be a decision.
        // Issue 10: 104 -> 64 by naming the license by its position in the customer's
        // list and a renewal's plan by its position in the state's plan names.
        assert!(kept <= 64, "Kept grew: {kept}");
    }
}
